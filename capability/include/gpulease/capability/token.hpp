// Capability token: binary layout, parsing and text encoding.
// Normative spec: docs/TOKENS.md. All integers little-endian.
//
// Version 1 layout (T = tenant length, A = audience length):
//
//   offset      size  field
//   0           1     version       = 1 (kTokenVersion)
//   1           1     alg           = 1 (kAlgEd25519)
//   2           8     key_id        authority key id (keys.hpp: key_id_of)
//   10          1     tenant_len    T, 1..64
//   11          T     tenant        UTF-8, no control characters
//   11+T        1     audience_len  A, 1..64
//   12+T        A     audience      UTF-8 node id, no control characters
//   12+T+A      8     lease_id      0 = any lease of the tenant
//   20+T+A      4     perms         Permission bits; reserved bits must be 0
//   24+T+A      8     not_before    unix seconds
//   32+T+A      8     expires_at    unix seconds; must be > not_before
//   40+T+A      16    token_id      unique per token (random)
//   56+T+A      16    origin_id     all zero for authority-minted tokens; for tokens
//                                   minted by a node through CAP_REQUEST, the token_id
//                                   of the authority-minted token they derive from
//   72+T+A      8     max_vram      LEASE_ACQUIRE ceiling in bytes; 0 = none
//   80+T+A      64    signature     Ed25519 over kSigningDomain || bytes[0, 80+T+A)
//
//   total = 144 + T + A bytes (146..272). Nothing may follow the signature.
//
// The signature covers every byte before it, so no field changes meaning
// without invalidating it; the domain string keeps a token signature from ever
// being valid as a signature over some other gpulease message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gpulease/capability/permissions.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

inline constexpr uint8_t kTokenVersion = 1;
inline constexpr uint8_t kAlgEd25519 = 1;

inline constexpr size_t kVersionOffset = 0;
inline constexpr size_t kAlgOffset = 1;
inline constexpr size_t kKeyIdOffset = 2;
inline constexpr size_t kTenantLenOffset = 10;
inline constexpr size_t kTokenIdBytes = 16;
inline constexpr size_t kSignatureBytes = 64;
inline constexpr size_t kMaxNameBytes = 64;  // tenant and audience
// Bytes of the body that do not depend on T and A.
inline constexpr size_t kFixedBodyBytes = 80;
inline constexpr size_t kMinTokenBytes = kFixedBodyBytes + 2 + kSignatureBytes;
inline constexpr size_t kMaxTokenBytes = kFixedBodyBytes + 2 * kMaxNameBytes + kSignatureBytes;

// Prepended to the body to form the signed message ("gpulease-token-v1" and
// a NUL byte, 18 bytes).
inline constexpr std::string_view kSigningDomain{"gpulease-token-v1\0", 18};
inline constexpr size_t kMaxSignedMessageBytes =
    kSigningDomain.size() + kMaxTokenBytes - kSignatureBytes;

// Text form: kTextPrefix followed by base64url (no padding) of the binary token.
inline constexpr std::string_view kTextPrefix = "glt1.";

using TokenId = std::array<uint8_t, kTokenIdBytes>;

// The decoded, owned fields of a token. version and alg are implied: only
// v1/Ed25519 parses.
struct Claims {
  uint64_t key_id = 0;
  std::string tenant;
  std::string audience;
  uint64_t lease_id = 0;  // 0 = any lease of `tenant`
  PermissionSet perms = 0;
  uint64_t not_before = 0;
  uint64_t expires_at = 0;
  TokenId token_id{};
  TokenId origin_id{};    // all zero unless minted through CAP_REQUEST
  uint64_t max_vram = 0;  // 0 = no acquire ceiling

  bool operator==(const Claims&) const = default;
};

// A parsed token whose views point into the caller's buffer.
// LIFETIME: valid only while that buffer is.
struct TokenView {
  uint64_t key_id = 0;
  std::string_view tenant;
  std::string_view audience;
  uint64_t lease_id = 0;
  PermissionSet perms = 0;
  uint64_t not_before = 0;
  uint64_t expires_at = 0;
  TokenId token_id{};
  TokenId origin_id{};
  uint64_t max_vram = 0;
  wire::ByteSpan body;       // bytes[0, size - 64): what the signature covers (after the domain)
  wire::ByteSpan signature;  // the last 64 bytes

  [[nodiscard]] Claims to_claims() const;
};

// Structural parse. Every failure is UNAUTHENTICATED with a message saying
// which field is malformed: short input, trailing bytes, unknown version or
// alg, empty/over-long/non-UTF-8 names, reserved permission bits, or
// expires_at <= not_before. Does not verify the signature.
[[nodiscard]] Result<TokenView> parse_token(wire::ByteSpan token);

// Checks the fields an authority may sign (same rules as parse_token).
// INVALID_ARGUMENT naming the bad field.
[[nodiscard]] Result<void> validate_claims(const Claims& claims);

// The unsigned body (layout above, without the signature).
// REQUIRES: validate_claims(claims).ok().
[[nodiscard]] wire::Bytes encode_token_body(const Claims& claims);

// kSigningDomain || body: the exact bytes the Ed25519 signature covers.
[[nodiscard]] wire::Bytes signing_message(wire::ByteSpan body);

// "glt1." + base64url-no-padding(token).
[[nodiscard]] std::string encode_token_text(wire::ByteSpan token);
// Inverse of encode_token_text. Surrounding ASCII whitespace is ignored.
// UNAUTHENTICATED when the prefix is missing, the text is longer than any
// valid token, or the base64url is not canonical. The result is not parsed.
[[nodiscard]] Result<wire::Bytes> decode_token_text(std::string_view text);

// 1..kMaxNameBytes bytes of strict UTF-8 (no overlongs, surrogates or values
// above U+10FFFF) without C0 controls or DEL: the rule for tenant and
// audience. Exposed for the CLI, the tests and the revocation parser.
[[nodiscard]] bool is_valid_name(std::string_view s) noexcept;

}  // namespace gpulease::capability
