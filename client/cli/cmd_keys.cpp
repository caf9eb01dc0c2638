// Key and token tooling: keygen, token mint, token inspect.
// Formats: docs/TOKENS.md.
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "cli_common.hpp"
#include "commands.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/encoding.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/permissions.hpp"
#include "gpulease/capability/token.hpp"

namespace gpulease::cli {
namespace {

namespace cap = gpulease::capability;

struct KeygenOptions {
  std::string out;
};

struct MintOptions {
  std::string key;
  std::string tenant;
  std::string audience;
  std::string perms;
  uint64_t ttl_s = 0;
  uint64_t lease_id = 0;
  std::string max_vram = "0";
  int64_t not_before = -1;  // -1: now
};

struct InspectOptions {
  std::string token;
  std::string pub;
};

std::string format_time(uint64_t t) {
  if (t > static_cast<uint64_t>(INT64_MAX / 2)) return std::to_string(t);
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&tt, &tm) == nullptr ||
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(t);
  }
  return std::to_string(t) + " (" + buf + ")";
}

void run_keygen(const KeygenOptions& o) {
  const cap::SecretKey key = cap::SecretKey::generate();
  if (auto r = cap::write_key_pair(o.out, key); !r) fail(r.error().message);
  std::printf("wrote %s.key (secret, mode 0600) and %s.pub\nkey id: %s\n", o.out.c_str(),
              o.out.c_str(), cap::key_id_hex(key.key_id()).c_str());
}

void run_mint(const MintOptions& o) {
  auto key = cap::load_secret_key_file(o.key);
  if (!key) fail(key.error().message);
  auto perms = cap::parse_permissions(o.perms);
  if (!perms) fail(perms.error().message);
  const auto max_vram = parse_size(o.max_vram);
  if (!max_vram) fail("--max-vram: expected a byte count such as 1073741824 or 1GiB");
  if (o.ttl_s == 0) fail("--ttl must be positive");

  cap::Claims c;
  c.tenant = o.tenant;
  c.audience = o.audience;
  c.lease_id = o.lease_id;
  c.perms = *perms;
  const int64_t nb = o.not_before >= 0 ? o.not_before : now_unix_s();
  c.not_before = static_cast<uint64_t>(nb);
  if (o.ttl_s > UINT64_MAX - c.not_before) fail("--ttl too large");
  c.expires_at = c.not_before + o.ttl_s;
  c.token_id = cap::random_token_id();
  c.max_vram = *max_vram;

  const cap::Authority authority(std::move(key).value());
  auto token = authority.mint(std::move(c));
  if (!token) fail(token.error().message);
  std::printf("%s\n", cap::encode_token_text(*token).c_str());
}

void run_inspect(const InspectOptions& o) {
  std::string text = o.token;
  if (text == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  auto bin = cap::decode_token_text(text);
  if (!bin) fail(bin.error().message);
  auto parsed = cap::parse_token(*bin);
  if (!parsed) fail(parsed.error().message);
  const cap::TokenView& t = *parsed;
  static constexpr cap::TokenId kZero{};
  const int64_t now = now_unix_s();
  const uint64_t unow = now < 0 ? 0 : static_cast<uint64_t>(now);

  std::printf("version:     %u\n", unsigned{cap::kTokenVersion});
  std::printf("algorithm:   ed25519\n");
  std::printf("key id:      %s\n", cap::key_id_hex(t.key_id).c_str());
  std::printf("tenant:      %.*s\n", static_cast<int>(t.tenant.size()), t.tenant.data());
  std::printf("audience:    %.*s\n", static_cast<int>(t.audience.size()), t.audience.data());
  if (t.lease_id == 0) {
    std::printf("lease id:    0 (any lease of the tenant)\n");
  } else {
    std::printf("lease id:    %" PRIu64 "\n", t.lease_id);
  }
  std::printf("permissions: %s (0x%08x)\n", cap::format_permissions(t.perms).c_str(), t.perms);
  std::printf("not before:  %s\n", format_time(t.not_before).c_str());
  std::printf("expires at:  %s\n", format_time(t.expires_at).c_str());
  const char* window = unow < t.not_before    ? "not yet valid"
                       : unow >= t.expires_at ? "expired"
                                              : "within validity window";
  std::printf("time:        %s (now %" PRId64 ", no clock skew applied)\n", window, now);
  std::printf("token id:    %s\n",
              cap::to_hex({reinterpret_cast<const std::byte*>(t.token_id.data()), 16}).c_str());
  if (t.origin_id == kZero) {
    std::printf("origin id:   none (minted by an authority)\n");
  } else {
    std::printf("origin id:   %s\n",
                cap::to_hex({reinterpret_cast<const std::byte*>(t.origin_id.data()), 16}).c_str());
  }
  if (t.max_vram == 0) {
    std::printf("max vram:    0 (no ceiling)\n");
  } else {
    std::printf("max vram:    %" PRIu64 " bytes\n", t.max_vram);
  }
  std::printf("size:        %zu bytes\n", bin->size());

  if (o.pub.empty()) {
    std::printf("signature:   not checked (pass --pub KEY.pub)\n");
    return;
  }
  auto pub = cap::load_public_key_file(o.pub);
  if (!pub) fail(pub.error().message);
  if (pub->key_id != t.key_id) {
    std::printf("signature:   invalid (token names key id %s, %s has key id %s)\n",
                cap::key_id_hex(t.key_id).c_str(), o.pub.c_str(),
                cap::key_id_hex(pub->key_id).c_str());
    throw CLI::RuntimeError(1);
  }
  if (!cap::verify_signature(pub->key, cap::signing_message(t.body), t.signature)) {
    std::printf("signature:   invalid\n");
    throw CLI::RuntimeError(1);
  }
  std::printf("signature:   valid\n");
}

}  // namespace

void register_key_commands(CLI::App& app) {
  {
    auto o = std::make_shared<KeygenOptions>();
    CLI::App* cmd = app.add_subcommand(
        "keygen", "Create an Ed25519 authority key pair: NAME.key (secret, 0600) and NAME.pub");
    cmd->add_option("--out,-o", o->out, "Path prefix NAME of the files to create")->required();
    cmd->callback([o] { run_keygen(*o); });
  }

  CLI::App* token = app.add_subcommand("token", "Mint and inspect capability tokens");
  token->require_subcommand(1);
  {
    auto o = std::make_shared<MintOptions>();
    CLI::App* cmd = token->add_subcommand("mint", "Sign a token with a secret key and print it");
    cmd->add_option("--key,-k", o->key, "Secret key file (NAME.key)")->required();
    cmd->add_option("--tenant,-t", o->tenant, "Tenant (subject) id")->required();
    cmd->add_option("--audience,-a", o->audience,
                    "Node id the token is for, or fleet:NAME for every node of a fleet "
                    "started with --accept-fleet-audience")
        ->required();
    cmd->add_option("--perms,-p", o->perms,
                    "Comma-separated permissions: lease_acquire, lease_query, lease_renew, "
                    "lease_release, mem, module, tasklet_submit, cap_request, admin; or all")
        ->required();
    cmd->add_option("--ttl", o->ttl_s, "Seconds the token stays valid")->required();
    cmd->add_option("--lease", o->lease_id, "Bind to one lease id (default 0: any lease)");
    cmd->add_option("--max-vram", o->max_vram,
                    "LEASE_ACQUIRE ceiling in bytes, e.g. 2GiB (default 0: none)");
    cmd->add_option("--not-before", o->not_before,
                    "Unix time the token becomes valid (default now)");
    cmd->callback([o] { run_mint(*o); });
  }
  {
    auto o = std::make_shared<InspectOptions>();
    CLI::App* cmd = token->add_subcommand(
        "inspect",
        "Print a token's fields and, with --pub, whether its signature verifies "
        "(exit status 1 when it does not)");
    cmd->add_option("token", o->token, "The token text (glt1....), or - to read stdin")->required();
    cmd->add_option("--pub", o->pub, "Public key file (NAME.pub) to verify the signature with");
    cmd->callback([o] { run_inspect(*o); });
  }
}

}  // namespace gpulease::cli
