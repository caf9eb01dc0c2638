#include "gpulease/capability/token.hpp"

#include <cstring>

#include "gpulease/capability/encoding.hpp"
#include "gpulease/wire/utf8.hpp"

namespace gpulease::capability {
namespace {

Error malformed(const char* what) {
  return make_error(Status::kUnauthenticated, std::string("malformed token: ") + what);
}

bool read_name(wire::ByteReader& r, std::string_view& out) {
  uint8_t len = 0;
  wire::ByteSpan raw;
  wire::ByteReader probe = r;
  if (!probe.u8(len) || !probe.take(len, raw)) return false;
  out = wire::as_chars(raw);
  r = probe;
  return true;
}

void read_id(wire::ByteSpan raw, TokenId& id) {
  std::memcpy(id.data(), raw.data(), id.size());
}

wire::ByteSpan id_bytes(const TokenId& id) {
  return {reinterpret_cast<const std::byte*>(id.data()), id.size()};
}

}  // namespace

bool is_valid_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  // No leading or trailing space: a revocation file (which trims its lines)
  // must be able to name every tenant.
  if (s.front() == ' ' || s.back() == ' ') return false;
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = wire::utf8_sequence(s, i, &cp);
    if (len == 0) return false;
    // Names are printed in logs and revocation files: no C0 or C1 controls,
    // no DEL (NUL is a C0 control).
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return false;
    i += len;
  }
  return true;
}

Claims TokenView::to_claims() const {
  Claims c;
  c.key_id = key_id;
  c.tenant.assign(tenant);
  c.audience.assign(audience);
  c.lease_id = lease_id;
  c.perms = perms;
  c.not_before = not_before;
  c.expires_at = expires_at;
  c.token_id = token_id;
  c.origin_id = origin_id;
  c.max_vram = max_vram;
  return c;
}

Result<TokenView> parse_token(wire::ByteSpan token) {
  // SECURITY: every check here runs before the signature is verified, on
  // bytes chosen by the peer; nothing is allocated and nothing is read
  // outside `token`.
  if (token.empty()) return malformed("empty");
  if (token.size() < kMinTokenBytes) return malformed("too short");
  if (token.size() > kMaxTokenBytes) return malformed("too long");
  TokenView v;
  wire::ByteReader r(token.first(token.size() - kSignatureBytes));
  uint8_t version = 0, alg = 0;
  if (!r.u8(version)) return malformed("truncated version");
  if (version != kTokenVersion) return malformed("unknown version");
  if (!r.u8(alg)) return malformed("truncated alg");
  if (alg != kAlgEd25519) return malformed("unknown algorithm");
  if (!r.u64(v.key_id)) return malformed("truncated key id");
  if (!read_name(r, v.tenant)) return malformed("truncated tenant");
  if (!is_valid_name(v.tenant)) return malformed("tenant empty, too long or not UTF-8");
  if (!read_name(r, v.audience)) return malformed("truncated audience");
  if (!is_valid_name(v.audience)) return malformed("audience empty, too long or not UTF-8");
  wire::ByteSpan tid, oid;
  if (!r.u64(v.lease_id) || !r.u32(v.perms) || !r.u64(v.not_before) || !r.u64(v.expires_at) ||
      !r.take(kTokenIdBytes, tid) || !r.take(kTokenIdBytes, oid) || !r.u64(v.max_vram)) {
    return malformed("truncated fixed fields");
  }
  // The names' lengths decide where the signature starts; anything between
  // the last field and the signature is a length mismatch.
  if (!r.empty()) return malformed("length does not match its fields");
  if (v.perms & ~kAllPermissions) return malformed("reserved permission bits set");
  if (v.expires_at <= v.not_before) return malformed("expires_at not after not_before");
  read_id(tid, v.token_id);
  read_id(oid, v.origin_id);
  v.body = token.first(token.size() - kSignatureBytes);
  v.signature = token.last(kSignatureBytes);
  return v;
}

Result<void> validate_claims(const Claims& c) {
  auto bad = [](const char* what) { return make_error(Status::kInvalidArgument, what); };
  if (!is_valid_name(c.tenant)) return bad("tenant must be 1..64 bytes of UTF-8 without controls");
  if (!is_valid_name(c.audience)) {
    return bad("audience must be 1..64 bytes of UTF-8 without controls");
  }
  if (c.perms & ~kAllPermissions) return bad("reserved permission bits set");
  if (c.expires_at <= c.not_before) return bad("expires_at must be after not_before");
  return {};
}

wire::Bytes encode_token_body(const Claims& c) {
  wire::Bytes out;
  out.reserve(kFixedBodyBytes + c.tenant.size() + c.audience.size());
  wire::ByteWriter w(out);
  w.u8(kTokenVersion);
  w.u8(kAlgEd25519);
  w.u64(c.key_id);
  w.u8(static_cast<uint8_t>(c.tenant.size()));
  w.raw(wire::as_bytes(c.tenant));
  w.u8(static_cast<uint8_t>(c.audience.size()));
  w.raw(wire::as_bytes(c.audience));
  w.u64(c.lease_id);
  w.u32(c.perms);
  w.u64(c.not_before);
  w.u64(c.expires_at);
  w.raw(id_bytes(c.token_id));
  w.raw(id_bytes(c.origin_id));
  w.u64(c.max_vram);
  return out;
}

wire::Bytes signing_message(wire::ByteSpan body) {
  wire::Bytes out = wire::to_bytes(kSigningDomain);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::string encode_token_text(wire::ByteSpan token) {
  std::string out(kTextPrefix);
  out += to_base64(token, Base64Variant::kUrlSafeNoPadding);
  return out;
}

Result<wire::Bytes> decode_token_text(std::string_view text) {
  auto is_space = [](char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
  };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.substr(0, kTextPrefix.size()) != kTextPrefix) {
    return make_error(Status::kUnauthenticated, "token text must start with 'glt1.'");
  }
  text.remove_prefix(kTextPrefix.size());
  // Cap before decoding: the longest valid token is kMaxTokenBytes.
  if (text.size() > (kMaxTokenBytes * 4 + 2) / 3) {
    return make_error(Status::kUnauthenticated, "token text too long");
  }
  auto bin = from_base64(text, Base64Variant::kUrlSafeNoPadding);
  if (!bin) return make_error(Status::kUnauthenticated, "token text is not base64url");
  return std::move(*bin);
}

}  // namespace gpulease::capability
