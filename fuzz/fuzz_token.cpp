// Token parser and verifier: any bytes either verify or fail with one of the
// statuses docs/TOKENS.md allows, without crashing, leaking or reading out of
// bounds. Inputs that parse are also re-signed with the trusted key so the
// checks after the signature (time, audience, permission, revocation, lease)
// see fuzzed fields too. Seeds: fuzz/corpus/fuzz_token/ (gen_tokens --corpus).
#include <cstdlib>
#include <memory>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/capability/verifier.hpp"

namespace cap = gpulease::capability;
using gpulease::Status;
using gpulease::wire::Bytes;
using gpulease::wire::ByteSpan;

namespace {

struct Fixture {
  cap::Authority authority{cap::SecretKey::from_seed(seed())};
  std::unique_ptr<cap::Verifier> verifier;

  static std::array<uint8_t, 32> seed() {
    std::array<uint8_t, 32> s;
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(i);  // vectors' authority
    return s;
  }
  Fixture() {
    cap::VerifierOptions o;
    o.node_id = "node-a";
    o.cache_capacity = 64;
    verifier = std::make_unique<cap::Verifier>(o);
    verifier->key_ring().add(authority.public_key());
    verifier->revocations().revoke_tenant("mallory");
  }
};

bool allowed(Status s) {
  return s == Status::kOk || s == Status::kUnauthenticated || s == Status::kTokenExpired ||
         s == Status::kPermissionDenied || s == Status::kRevoked ||
         s == Status::kInvalidArgument;  // the header lease rule (step 8)
}

void check(Fixture& f, ByteSpan token, gpulease::wire::Opcode op, uint64_t lease) {
  const cap::VerifyRequest req{op, lease, 1700000000};
  auto r = f.verifier->verify(token, req);
  if (!allowed(r.status())) std::abort();
  // A second look (now possibly from the cache) must agree.
  if (f.verifier->verify(token, req).status() != r.status()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  const ByteSpan in(reinterpret_cast<const std::byte*>(data), size);

  auto text = cap::decode_token_text(gpulease::wire::as_chars(in));
  if (text && text->size() > cap::kMaxTokenBytes) std::abort();

  auto view = cap::parse_token(in);
  check(f, in, gpulease::wire::Opcode::kMemAlloc, 0);
  if (!view) return 0;

  // Parsed tokens re-encode to exactly their signed body.
  const cap::Claims claims = view->to_claims();
  const Bytes body = cap::encode_token_body(claims);
  if (body.size() != view->body.size() || body.size() + cap::kSignatureBytes != size ||
      !std::equal(body.begin(), body.end(), view->body.begin())) {
    std::abort();
  }
  if (!cap::validate_claims(claims)) std::abort();

  // Re-signed by the trusted key: exercise every step after the signature.
  auto signed_token = f.authority.mint(claims);
  if (!signed_token) std::abort();
  const auto op =
      gpulease::wire::kAllOpcodes[claims.lease_id % std::size(gpulease::wire::kAllOpcodes)];
  check(f, *signed_token, op, claims.max_vram % 4 == 0 ? claims.lease_id : claims.max_vram);
  return 0;
}
