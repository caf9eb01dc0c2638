// Writes the token vectors in vectors/tokens/ (spec: docs/TOKENS.md).
//
//   gen_tokens --out DIR     write DIR/valid.json and DIR/invalid.json
//   gen_tokens --check DIR   exit 1 unless DIR holds exactly what --out writes
//   gen_tokens --corpus DIR  write binary seeds for the token fuzzer
//
// Everything is deterministic: Ed25519 keys come from fixed seeds, token ids
// from BLAKE2b of the case name, and the clock is fixed. Change the vectors by
// changing this file and rerunning --out; never edit the JSON by hand.
#include <sodium.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/encoding.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/permissions.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/capability/verifier.hpp"
#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/status.hpp"

namespace cap = gpulease::capability;
namespace wire = gpulease::wire;
using json = nlohmann::ordered_json;

namespace {

constexpr int64_t kNow = 1700000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kSkew = cap::kDefaultClockSkewS;
constexpr const char* kNode = "node-a";
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::array<uint8_t, 32> seed_from(uint8_t first) {
  std::array<uint8_t, 32> s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(first + i);
  return s;
}

std::string hex(wire::ByteSpan b) {
  return cap::to_hex(b);
}
std::string hex(const uint8_t* p, size_t n) {
  return cap::to_hex({reinterpret_cast<const std::byte*>(p), n});
}

cap::TokenId id_for(std::string_view name) {
  cap::TokenId id;
  crypto_generichash(id.data(), id.size(), reinterpret_cast<const unsigned char*>(name.data()),
                     name.size(), nullptr, 0);
  return id;
}

struct Keys {
  cap::Authority authority{cap::SecretKey::from_seed(seed_from(0x00))};  // trusted
  cap::Authority untrusted{cap::SecretKey::from_seed(seed_from(0x20))};  // not in the ring
  cap::Authority node{cap::SecretKey::from_seed(seed_from(0x40))};       // the node's own, trusted
};

json key_json(const cap::Authority& a, uint8_t seed_first, const char* role) {
  const auto seed = seed_from(seed_first);
  return json{{"role", role},
              {"seed_hex", hex(seed.data(), seed.size())},
              {"public_key_hex", hex(a.public_key().data(), a.public_key().size())},
              {"key_id", cap::key_id_hex(a.key_id())},
              {"public_key_file", cap::format_public_key(a.public_key())}};
}

cap::Claims base_claims(std::string_view name) {
  cap::Claims c;
  c.tenant = "alice";
  c.audience = kNode;
  c.lease_id = 0;
  c.perms = cap::bits(cap::Permission::kLeaseAcquire) | cap::bits(cap::Permission::kLeaseQuery) |
            cap::bits(cap::Permission::kLeaseRenew) | cap::bits(cap::Permission::kLeaseRelease);
  c.not_before = kNow - 60;
  c.expires_at = kNow + 3600;
  c.token_id = id_for(name);
  c.max_vram = 2 * kGiB;
  return c;
}

wire::Bytes must(gpulease::Result<wire::Bytes> r) {
  if (!r) {
    std::fprintf(stderr, "gen_tokens: %s\n", r.error().message.c_str());
    std::exit(2);
  }
  return std::move(r).value();
}

// Signs an arbitrary body (possibly malformed) with `a`'s key.
wire::Bytes sign_raw(const cap::SecretKey& key, wire::Bytes body) {
  const cap::Signature sig = key.sign(cap::signing_message(body));
  const auto* p = reinterpret_cast<const std::byte*>(sig.data());
  body.insert(body.end(), p, p + sig.size());
  return body;
}

json fields_json(const cap::Claims& c) {
  return json{{"key_id", cap::key_id_hex(c.key_id)},
              {"tenant", c.tenant},
              {"audience", c.audience},
              {"lease_id", std::to_string(c.lease_id)},
              {"perms", c.perms},
              {"perm_names", cap::format_permissions(c.perms)},
              {"not_before", std::to_string(c.not_before)},
              {"expires_at", std::to_string(c.expires_at)},
              {"token_id", hex(c.token_id.data(), c.token_id.size())},
              {"origin_id", hex(c.origin_id.data(), c.origin_id.size())},
              {"max_vram", std::to_string(c.max_vram)}};
}

struct Check {
  std::string node_id = kNode;
  wire::Opcode opcode = wire::Opcode::kLeaseQuery;
  uint64_t frame_lease_id = 42;  // LEASE_QUERY names its lease (the header lease rule)
  int64_t now = kNow;
  const char* lease_owner = nullptr;  // run check_lease_owner with this owner
  uint64_t acquire_bytes = 0;         // run check_vram_ceiling with this request (if non-zero)
};

json check_json(const Check& c) {
  json j{{"node_id", c.node_id},
         {"opcode", std::string(wire::opcode_name(c.opcode))},
         {"frame_lease_id", std::to_string(c.frame_lease_id)},
         {"now", std::to_string(c.now)}};
  if (c.lease_owner) j["lease_owner"] = c.lease_owner;
  if (c.acquire_bytes) j["acquire_bytes"] = std::to_string(c.acquire_bytes);
  return j;
}

// The revocations in force for every vector.
const char* kRevocationFile =
    "# revoked for the vectors\n"
    "token 00000000000000000000000000000000\n"  // placeholder, replaced below
    "tenant mallory\n";

std::string revocation_text() {
  std::string text = kRevocationFile;
  const std::string placeholder(32, '0');
  const cap::TokenId revoked = id_for("revoked_token");
  text.replace(text.find(placeholder), placeholder.size(), hex(revoked.data(), revoked.size()));
  return text;
}

struct Generator {
  Keys keys;
  json valid = json::array();
  json invalid = json::array();
  std::map<std::string, wire::Bytes> corpus;

  void add_valid(const std::string& name, const std::string& description, const wire::Bytes& token,
                 const Check& check) {
    auto view = cap::parse_token(token);
    if (!view) {
      std::fprintf(stderr, "gen_tokens: valid vector %s does not parse\n", name.c_str());
      std::exit(2);
    }
    const cap::Claims c = view->to_claims();
    const wire::Bytes msg = cap::signing_message(view->body);
    valid.push_back(json{{"id", name},
                         {"description", description},
                         {"fields", fields_json(c)},
                         {"size", token.size()},
                         {"signed_message_hex", hex(msg)},
                         {"signature_hex", hex(view->signature)},
                         {"token_hex", hex(token)},
                         {"token_text", cap::encode_token_text(token)},
                         {"verify", check_json(check)},
                         {"expected_status", "OK"}});
    corpus["valid_" + name] = token;
  }

  void add_invalid(const std::string& name, cap::DenyReason reason, const std::string& description,
                   const wire::Bytes& token, const Check& check) {
    invalid.push_back(
        json{{"id", name},
             {"reason", std::string(cap::deny_reason_name(reason))},
             {"description", description},
             {"token_hex", hex(token)},
             {"verify", check_json(check)},
             {"expected_status", std::string(wire::status_name(cap::deny_reason_status(reason)))}});
    if (corpus.size() < 64) corpus["invalid_" + name] = token;
  }

  void valid_vectors() {
    const auto& A = keys.authority;
    {
      auto c = base_claims("acquire_any_lease");
      add_valid("acquire_any_lease",
                "Lease management for any lease of the tenant, 2 GiB acquire ceiling",
                must(A.mint(c)),
                Check{.opcode = wire::Opcode::kLeaseAcquire,
                      .frame_lease_id = 0,
                      .acquire_bytes = 2 * kGiB});
    }
    {
      auto c = base_claims("session_bound_to_lease");
      c.lease_id = 42;
      c.perms = cap::bits(cap::Permission::kMem) | cap::bits(cap::Permission::kModule) |
                cap::bits(cap::Permission::kTaskletSubmit) |
                cap::bits(cap::Permission::kLeaseQuery);
      c.max_vram = 0;
      add_valid(
          "session_bound_to_lease", "Session ops on lease 42 only", must(A.mint(c)),
          Check{.opcode = wire::Opcode::kLaunch, .frame_lease_id = 42, .lease_owner = "alice"});
    }
    {
      auto c = base_claims("all_permissions");
      c.perms = cap::kAllPermissions;
      add_valid(
          "all_permissions", "Every defined permission bit", must(A.mint(c)),
          Check{.opcode = wire::Opcode::kGpuSubmit, .frame_lease_id = 7, .lease_owner = "alice"});
    }
    {
      auto c = base_claims("shortest_names");
      c.tenant = "t";
      c.audience = "n";
      add_valid("shortest_names", "One-byte tenant and audience: the shortest token (146 bytes)",
                must(A.mint(c)), Check{.node_id = "n"});
    }
    {
      auto c = base_claims("longest_names");
      c.tenant = std::string(64, 't');
      c.audience = std::string(64, 'n');
      add_valid("longest_names", "64-byte tenant and audience: the longest token (272 bytes)",
                must(A.mint(c)), Check{.node_id = std::string(64, 'n')});
    }
    {
      auto c = base_claims("utf8_names");
      c.tenant = "\xc3\xa9quipe-\xe7\xa7\x9f\xe6\x88\xb7-\xf0\x9f\x9a\x80";  // équipe-租户-🚀
      add_valid("utf8_names", "Multi-byte UTF-8 tenant", must(A.mint(c)), Check{});
    }
    {
      auto c = base_claims("large_integers");
      c.lease_id = 0xfedcba9876543210ull;
      c.not_before = 0;
      c.expires_at = 0xfffffffffffffffeull;
      c.max_vram = 0x0123456789abcdefull;
      add_valid(
          "large_integers", "Little-endian check: every u64 field has distinct bytes",
          must(A.mint(c)),
          Check{.opcode = wire::Opcode::kLeaseRenew, .frame_lease_id = 0xfedcba9876543210ull});
    }
    {
      auto c = base_claims("not_before_within_skew");
      c.not_before = kNow + kSkew;
      add_valid("not_before_within_skew", "not_before is now + skew: accepted", must(A.mint(c)),
                Check{});
    }
    {
      auto c = base_claims("expires_within_skew");
      c.expires_at = kNow - kSkew + 1;
      add_valid("expires_within_skew", "expires_at is now - skew + 1: accepted", must(A.mint(c)),
                Check{});
    }
    {
      auto c = base_claims("no_permissions");
      c.perms = 0;
      add_valid("no_permissions", "A token with no permission still passes for PING",
                must(A.mint(c)), Check{.opcode = wire::Opcode::kPing, .frame_lease_id = 0});
    }
    {
      // CAP_REQUEST: the node narrows a broad token to one lease.
      auto parent = base_claims("attenuation_parent");
      parent.perms = cap::kAllPermissions;
      parent.key_id = A.key_id();
      cap::AttenuationRequest req;
      req.lease_id = 42;
      req.perms =
          cap::bits(cap::Permission::kLeaseQuery) | cap::bits(cap::Permission::kTaskletSubmit);
      req.ttl_s = 600;
      req.now_unix_s = kNow;
      req.token_id = id_for("attenuated_by_node");
      add_valid(
          "attenuated_by_node",
          "Minted by the node's own key through CAP_REQUEST from a broader token "
          "(origin_id = the parent's token_id)",
          must(keys.node.attenuate(parent, req)),
          Check{.opcode = wire::Opcode::kLaunch, .frame_lease_id = 42, .lease_owner = "alice"});
    }
  }

  void invalid_vectors() {
    using R = cap::DenyReason;
    const auto& A = keys.authority;
    const cap::SecretKey a_key = cap::SecretKey::from_seed(seed_from(0x00));
    const cap::SecretKey b_key = cap::SecretKey::from_seed(seed_from(0x20));
    const wire::Bytes good = must(A.mint(base_claims("reference")));
    const size_t T = 5, Aud = 6;  // "alice", "node-a"

    add_invalid("empty", R::kMalformed, "No token bytes", {}, Check{});
    // A sample of truncations: at every field boundary and inside the signature.
    const size_t cuts[] = {1,
                           2,
                           10,
                           11,
                           11 + T,
                           12 + T,
                           12 + T + Aud,
                           20 + T + Aud,
                           24 + T + Aud,
                           32 + T + Aud,
                           40 + T + Aud,
                           56 + T + Aud,
                           72 + T + Aud,
                           80 + T + Aud,
                           good.size() - 1};
    for (size_t cut : cuts) {
      add_invalid("truncated_to_" + std::to_string(cut), R::kMalformed,
                  "The reference token cut to its first " + std::to_string(cut) + " bytes",
                  wire::Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)),
                  Check{});
    }
    {
      wire::Bytes t = good;
      t.push_back(std::byte{0});
      add_invalid("trailing_byte", R::kMalformed, "One byte after the signature", t, Check{});
    }
    auto resigned = [&](const std::string& name, const std::string& desc, auto&& edit) {
      wire::Bytes body = cap::encode_token_body([&] {
        auto c = base_claims(name);
        c.key_id = A.key_id();
        return c;
      }());
      edit(body);
      add_invalid(name, R::kMalformed, desc + " (validly signed, so only the parse can refuse it)",
                  sign_raw(a_key, body), Check{});
    };
    resigned("version_2", "Version byte 2", [](wire::Bytes& b) { b[0] = std::byte{2}; });
    resigned("version_0", "Version byte 0", [](wire::Bytes& b) { b[0] = std::byte{0}; });
    resigned("alg_2", "Algorithm id 2", [](wire::Bytes& b) { b[1] = std::byte{2}; });
    resigned("tenant_len_longer_than_token", "tenant_len 200",
             [](wire::Bytes& b) { b[10] = std::byte{200}; });
    auto set_tenant = [&](const std::string& name, const std::string& desc, std::string tenant) {
      resigned(name, desc, [tenant](wire::Bytes& b) {
        wire::Bytes out(b.begin(), b.begin() + 10);
        out.push_back(std::byte(tenant.size()));
        for (char ch : tenant) out.push_back(std::byte(static_cast<unsigned char>(ch)));
        out.insert(out.end(), b.begin() + 11 + 5, b.end());
        b = out;
      });
    };
    set_tenant("tenant_empty", "Empty tenant (tenant_len 0)", "");
    set_tenant("tenant_65_bytes", "Tenant of 65 bytes", std::string(65, 'x'));
    set_tenant("tenant_invalid_utf8", "Tenant with byte 0xff",
               "ali\xff"
               "e");
    set_tenant("tenant_overlong_utf8", "Tenant with overlong '/' (c0 af)", "a\xc0\xaf");
    set_tenant("tenant_surrogate", "Tenant with an encoded surrogate (ed a0 80)", "a\xed\xa0\x80");
    set_tenant("tenant_control_char", "Tenant with a newline", "ali\nce");
    set_tenant("tenant_nul", "Tenant with a NUL byte", std::string("ali\0ce", 6));
    resigned("audience_invalid_utf8", "Audience with a lone continuation byte",
             [](wire::Bytes& b) { b[12 + 5] = std::byte{0x80}; });
    resigned("reserved_permission_bit", "Permission bit 9 set",
             [](wire::Bytes& b) { b[20 + 5 + 6 + 1] |= std::byte{0x02}; });
    {
      auto c = base_claims("expires_equals_not_before");
      c.key_id = A.key_id();
      c.expires_at = c.not_before;
      add_invalid("expires_equals_not_before", R::kMalformed,
                  "expires_at == not_before (validly signed)",
                  sign_raw(a_key, cap::encode_token_body(c)), Check{});
    }
    add_invalid("unknown_key_id", R::kUnknownKey, "Signed by an authority the node does not trust",
                must(keys.untrusted.mint(base_claims("unknown_key_id"))), Check{});
    {
      auto c = base_claims("signed_by_other_key");
      c.key_id = A.key_id();
      add_invalid("signed_by_other_key", R::kBadSignature,
                  "Names the trusted key id but is signed by another key",
                  sign_raw(b_key, cap::encode_token_body(c)), Check{});
    }
    {
      // Signature over the body without the domain string.
      auto c = base_claims("no_domain_separation");
      c.key_id = A.key_id();
      wire::Bytes body = cap::encode_token_body(c);
      const cap::Signature sig = a_key.sign(body);
      wire::Bytes t = body;
      t.insert(t.end(), reinterpret_cast<const std::byte*>(sig.data()),
               reinterpret_cast<const std::byte*>(sig.data()) + sig.size());
      add_invalid("no_domain_separation", R::kBadSignature,
                  "Signature over the body alone, without \"gpulease-token-v1\\0\"", t, Check{});
    }
    {
      wire::Bytes t = good;
      std::fill(t.end() - 64, t.end(), std::byte{0});
      add_invalid("signature_zero", R::kBadSignature, "All-zero signature", t, Check{});
    }
    // A sample of single bit flips; the tests flip every bit.
    const size_t body_len = good.size() - 64;
    for (size_t off : {size_t{2}, size_t{9}, 12 + T + Aud, 20 + T + Aud, 24 + T + Aud, 32 + T + Aud,
                       40 + T + Aud, 56 + T + Aud, 72 + T + Aud}) {
      wire::Bytes t = good;
      t[off] ^= std::byte{0x01};
      const R r = off < 10 ? R::kUnknownKey : R::kBadSignature;
      add_invalid("body_bit_flip_byte_" + std::to_string(off), r,
                  "Bit 0 of body byte " + std::to_string(off) + " flipped", t, Check{});
    }
    for (size_t k : {size_t{0}, size_t{31}, size_t{32}, size_t{63}}) {
      for (int bit : {0, 7}) {
        wire::Bytes t = good;
        t[body_len + k] ^= std::byte(1u << bit);
        add_invalid(
            "signature_bit_flip_byte_" + std::to_string(k) + "_bit_" + std::to_string(bit),
            R::kBadSignature,
            "Bit " + std::to_string(bit) + " of signature byte " + std::to_string(k) + " flipped",
            t, Check{});
      }
    }
    {
      auto c = base_claims("not_yet_valid");
      c.not_before = kNow + kSkew + 1;
      add_invalid("not_yet_valid", R::kNotYetValid, "not_before is now + skew + 1", must(A.mint(c)),
                  Check{});
    }
    {
      auto c = base_claims("expired");
      c.expires_at = kNow - kSkew;
      add_invalid("expired", R::kExpired, "expires_at is now - skew", must(A.mint(c)), Check{});
    }
    add_invalid("wrong_audience", R::kWrongAudience, "Token for node-a presented to node-b",
                must(A.mint(base_claims("wrong_audience"))), Check{.node_id = "node-b"});
    for (wire::Opcode op : wire::kAllOpcodes) {
      if (!cap::requires_token(op)) continue;
      const cap::Permission need = *cap::required_permission(op);
      auto c = base_claims(std::string("missing_permission_") + std::string(wire::opcode_name(op)));
      c.perms = cap::kAllPermissions & ~cap::bits(need);
      add_invalid("missing_permission_" + std::string(wire::opcode_name(op)), R::kMissingPermission,
                  "Every permission but " + std::string(cap::permission_name(need)),
                  must(A.mint(c)), Check{.opcode = op, .frame_lease_id = 0});
    }
    add_invalid("revoked_token", R::kRevokedToken, "Token id listed in the revocation file",
                must(A.mint(base_claims("revoked_token"))), Check{});
    {
      auto c = base_claims("revoked_tenant");
      c.tenant = "mallory";
      add_invalid("revoked_tenant", R::kRevokedTenant, "Tenant listed in the revocation file",
                  must(A.mint(c)), Check{});
    }
    {
      auto parent = base_claims("revoked_token");  // its token id is revoked
      parent.perms = cap::kAllPermissions;
      cap::AttenuationRequest req;
      req.lease_id = 42;
      req.perms = cap::bits(cap::Permission::kLeaseQuery);
      req.ttl_s = 600;
      req.now_unix_s = kNow;
      req.token_id = id_for("revoked_origin");
      add_invalid("revoked_origin", R::kRevokedToken,
                  "Attenuated from a revoked token: origin_id is revoked",
                  must(keys.node.attenuate(parent, req)), Check{.frame_lease_id = 42});
    }
    {
      auto c = base_claims("wrong_lease");
      c.lease_id = 42;
      add_invalid("wrong_lease", R::kWrongLease, "Bound to lease 42, frame names lease 43",
                  must(A.mint(c)), Check{.frame_lease_id = 43});
      c = base_claims("bound_token_acquires");
      c.lease_id = 42;
      add_invalid("bound_token_acquires", R::kWrongLease,
                  "A lease-bound token cannot acquire (LEASE_ACQUIRE names no lease)",
                  must(A.mint(c)),
                  Check{.opcode = wire::Opcode::kLeaseAcquire, .frame_lease_id = 0});
      add_invalid("bound_token_acquires_naming_its_lease", R::kWrongLease,
                  "A lease-bound token cannot acquire even when the header names its lease",
                  must(A.mint(c)),
                  Check{.opcode = wire::Opcode::kLeaseAcquire, .frame_lease_id = 42});
      add_invalid("bound_token_lists", R::kWrongLease,
                  "A lease-bound token cannot list the tenant's leases", must(A.mint(c)),
                  Check{.opcode = wire::Opcode::kLeaseList, .frame_lease_id = 0});
    }
    {
      auto c = base_claims("lease_rule_acquire_names_a_lease");
      add_invalid("lease_rule_acquire_names_a_lease", R::kLeaseRule,
                  "LEASE_ACQUIRE whose header lease_id is not 0", must(A.mint(c)),
                  Check{.opcode = wire::Opcode::kLeaseAcquire, .frame_lease_id = 42});
      c = base_claims("lease_rule_query_names_none");
      add_invalid("lease_rule_query_names_none", R::kLeaseRule,
                  "LEASE_QUERY whose header lease_id is 0", must(A.mint(c)),
                  Check{.opcode = wire::Opcode::kLeaseQuery, .frame_lease_id = 0});
    }
    add_invalid("not_lease_owner", R::kNotLeaseOwner,
                "Lease 9 belongs to bob: answered as if it did not exist",
                must(A.mint(base_claims("not_lease_owner"))),
                Check{.frame_lease_id = 9, .lease_owner = "bob"});
    add_invalid("vram_ceiling", R::kVramCeiling, "Acquire of 2 GiB + 1 with a 2 GiB ceiling",
                must(A.mint(base_claims("vram_ceiling"))),
                Check{.opcode = wire::Opcode::kLeaseAcquire,
                      .frame_lease_id = 0,
                      .acquire_bytes = 2 * kGiB + 1});
    // Order: when several checks fail, the earliest in the order decides.
    {
      auto c = base_claims("order_signature_before_time");
      c.key_id = A.key_id();
      c.expires_at = kNow - 3600;
      c.not_before = kNow - 7200;
      add_invalid("order_signature_before_time", R::kBadSignature,
                  "Bad signature and expired: the signature decides",
                  sign_raw(b_key, cap::encode_token_body(c)), Check{});
    }
    {
      auto c = base_claims("order_time_before_audience");
      c.expires_at = kNow - 3600;
      c.not_before = kNow - 7200;
      add_invalid("order_time_before_audience", R::kExpired,
                  "Expired and for another node: time decides", must(A.mint(c)),
                  Check{.node_id = "node-b"});
    }
    {
      auto c = base_claims("order_audience_before_permission");
      c.perms = 0;
      add_invalid("order_audience_before_permission", R::kWrongAudience,
                  "For another node and lacking the permission: audience decides", must(A.mint(c)),
                  Check{.node_id = "node-b", .opcode = wire::Opcode::kMemAlloc});
    }
    {
      auto c = base_claims("order_permission_before_revocation");
      c.tenant = "mallory";
      c.perms = 0;
      add_invalid("order_permission_before_revocation", R::kMissingPermission,
                  "Revoked tenant lacking the permission: permission decides", must(A.mint(c)),
                  Check{});
    }
    {
      auto c = base_claims("order_revocation_before_lease");
      c.tenant = "mallory";
      c.lease_id = 42;
      add_invalid("order_revocation_before_lease", R::kRevokedTenant,
                  "Revoked tenant, bound to another lease: revocation decides", must(A.mint(c)),
                  Check{.frame_lease_id = 43});
    }
  }

  json file(const char* title, json vectors) {
    json ctx{{"clock_skew_s", kSkew},
             {"default_now", std::to_string(kNow)},
             {"trusted_keys", json::array({key_json(keys.authority, 0x00, "authority"),
                                           key_json(keys.node, 0x40, "node (CAP_REQUEST)")})},
             {"untrusted_keys", json::array({key_json(keys.untrusted, 0x20, "untrusted")})},
             {"revocation_file", revocation_text()}};
    return json{{"description", title},
                {"spec", "docs/TOKENS.md"},
                {"generator", "vectors/gen_tokens.cpp"},
                {"context", ctx},
                {"vectors", std::move(vectors)}};
  }
};

std::map<std::string, std::string> generate(std::map<std::string, wire::Bytes>* corpus) {
  Generator g;
  g.valid_vectors();
  g.invalid_vectors();
  std::map<std::string, std::string> files;
  files["valid.json"] =
      g.file(
           "Valid gpulease capability tokens: decoded fields, signed bytes, text form; each "
           "passes Verifier::verify with the given request",
           g.valid)
          .dump(2) +
      "\n";
  files["invalid.json"] =
      g.file(
           "Invalid gpulease capability tokens, by reason: each fails with exactly "
           "expected_status at the step named by reason",
           g.invalid)
          .dump(2) +
      "\n";
  if (corpus) *corpus = std::move(g.corpus);
  return files;
}

bool write_file(const std::filesystem::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

int usage() {
  std::fprintf(stderr, "usage: gen_tokens --out DIR | --check DIR | --corpus DIR\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return usage();
  if (!cap::ensure_sodium()) return 2;
  const std::string mode = argv[1];
  const std::filesystem::path dir = argv[2];
  if (mode == "--out") {
    std::filesystem::create_directories(dir);
    for (const auto& [name, data] : generate(nullptr)) {
      if (!write_file(dir / name, data)) {
        std::fprintf(stderr, "gen_tokens: cannot write %s\n", (dir / name).c_str());
        return 1;
      }
    }
    return 0;
  }
  if (mode == "--corpus") {
    std::map<std::string, wire::Bytes> corpus;
    generate(&corpus);
    std::filesystem::create_directories(dir);
    for (const auto& [name, data] : corpus) {
      if (!write_file(dir / name, wire::as_chars(data))) return 1;
    }
    return 0;
  }
  if (mode == "--check") {
    const auto files = generate(nullptr);
    int bad = 0;
    std::set<std::string> present;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".json") present.insert(e.path().filename().string());
    }
    if (ec) {
      std::fprintf(stderr, "gen_tokens: cannot list %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
    for (const auto& [name, data] : files) {
      std::ifstream in(dir / name, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in || ss.str() != data) {
        std::fprintf(stderr, "gen_tokens: %s differs from the generator's output\n",
                     (dir / name).c_str());
        ++bad;
      }
      present.erase(name);
    }
    for (const auto& extra : present) {
      std::fprintf(stderr, "gen_tokens: %s is not written by the generator\n",
                   (dir / extra).c_str());
      ++bad;
    }
    if (bad) std::fprintf(stderr, "gen_tokens: rerun `gen_tokens --out vectors/tokens`\n");
    return bad ? 1 : 0;
  }
  return usage();
}
