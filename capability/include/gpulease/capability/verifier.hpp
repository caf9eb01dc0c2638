// Per-frame token verification on the node (docs/TOKENS.md, "Validation").
//
// The order is normative and each step has one status:
//   1. malformed (parse_token)                -> UNAUTHENTICATED
//   2. key id not in the key ring             -> UNAUTHENTICATED
//   3. signature invalid (cache, else Ed25519) -> UNAUTHENTICATED
//   4. now outside [not_before - skew, expires_at + skew)  -> TOKEN_EXPIRED
//   5. audience != this node's id (nor its fleet audience, when configured)
//                                             -> PERMISSION_DENIED
//   6. perms lack required_permission(opcode) -> PERMISSION_DENIED
//   7. token id, origin id or tenant revoked  -> REVOKED
//   8. the header lease rule and the token's lease binding:
//      a lease-bound token on an opcode that acts on no lease -> PERMISSION_DENIED
//      lease_id breaks the opcode's rule (wire::LeaseRule)  -> INVALID_ARGUMENT
//      token bound to a lease other than the frame's        -> PERMISSION_DENIED
// then, once the server has looked the lease up:
//   9. check_lease_owner: lease owned by another tenant    -> LEASE_NOT_FOUND,
//      with the very message the node gives for an absent lease
//  10. check_vram_ceiling (LEASE_ACQUIRE): request > max_vram -> PERMISSION_DENIED
//
// Every step but 3 runs on every frame; step 3 is skipped only when the
// signature cache holds these exact bytes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "gpulease/capability/key_ring.hpp"
#include "gpulease/capability/revocation.hpp"
#include "gpulease/capability/signature_cache.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

inline constexpr int64_t kDefaultClockSkewS = 30;
// The verified-signature cache's size unless configured (gpuleased
// --token-cache-entries); the one place this default is written.
inline constexpr size_t kDefaultSignatureCacheEntries = 4096;

// The message of LEASE_NOT_FOUND, for an absent lease and for another
// tenant's lease alike, so that a reply never tells which (lease ids are not
// to be probed).
inline constexpr std::string_view kNoSuchLeaseMessage = "no such lease";

// Why a token was refused; the first word of every error message from this
// file, and the label of the server's rejection counter.
enum class DenyReason : uint8_t {
  kMalformed,
  kUnknownKey,
  kBadSignature,
  kNotYetValid,
  kExpired,
  kWrongAudience,
  kMissingPermission,
  kRevokedToken,
  kRevokedTenant,
  kWrongLease,
  kNotLeaseOwner,
  kVramCeiling,
  kLeaseRule,
};
inline constexpr size_t kDenyReasonCount = 13;

// "malformed", "unknown_key", "bad_signature", "not_yet_valid", "expired",
// "wrong_audience", "missing_permission", "revoked_token", "revoked_tenant",
// "wrong_lease", "not_lease_owner", "vram_ceiling", "lease_rule".
[[nodiscard]] std::string_view deny_reason_name(DenyReason r) noexcept;
[[nodiscard]] Status deny_reason_status(DenyReason r) noexcept;

struct VerifierOptions {
  std::string node_id;  // the audience this node accepts
  // A second audience accepted as well, for a node of a fleet started with
  // --accept-fleet-audience: "fleet:<fleet name>" (docs/TOKENS.md, "Fleet
  // audience"). Empty = only node_id.
  std::string fleet_audience;
  int64_t clock_skew_s = kDefaultClockSkewS;  // >= 0; tolerance on both ends of the window
  size_t cache_capacity = kDefaultSignatureCacheEntries;  // signatures remembered; 0 disables
  size_t cache_shards = 16;
};

struct VerifyRequest {
  wire::Opcode opcode = wire::Opcode::kPing;
  // The header's lease_id: the lease the frame acts on, 0 for opcodes whose
  // rule is LeaseRule::kZero (HELLO, PING, LEASE_ACQUIRE, LEASE_LIST).
  uint64_t frame_lease_id = 0;
  int64_t now_unix_s = 0;
};

struct VerifierStats {
  uint64_t accepted = 0;
  uint64_t signature_checks = 0;  // Ed25519 verifications run (step 3 past the cache)
  std::array<uint64_t, kDenyReasonCount> denied{};  // indexed by DenyReason
  SignatureCacheStats cache;
};

// THREAD SAFETY: verify() and the accessors may be called concurrently from
// any number of threads; the key ring, revocation set and cache lock
// internally.
class Verifier {
 public:
  explicit Verifier(VerifierOptions options);
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  // Steps 1-8 above. On success, the token's claims (the server keeps them
  // for steps 9-10 and for CAP_REQUEST). Error messages start with
  // deny_reason_name and never echo token bytes.
  [[nodiscard]] Result<Claims> verify(wire::ByteSpan token, const VerifyRequest& req);

  [[nodiscard]] KeyRing& key_ring() noexcept { return keys_; }
  [[nodiscard]] RevocationSet& revocations() noexcept { return revoked_; }
  [[nodiscard]] SignatureCache& cache() noexcept { return cache_; }
  [[nodiscard]] const std::string& node_id() const noexcept { return options_.node_id; }
  [[nodiscard]] VerifierStats stats() const;

 private:
  Error deny(DenyReason r, std::string_view detail);

  const VerifierOptions options_;
  KeyRing keys_;
  RevocationSet revoked_;
  SignatureCache cache_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> signature_checks_{0};
  std::array<std::atomic<uint64_t>, kDenyReasonCount> denied_{};
};

// Step 9. LEASE_NOT_FOUND with kNoSuchLeaseMessage unless the token's tenant
// owns the lease: the same answer as for a lease that does not exist, so
// another tenant's lease ids cannot be told from unused ones. Applies to
// lease-bound tokens too: binding narrows a tenant's token, it never crosses
// tenants.
[[nodiscard]] Result<void> check_lease_owner(const Claims& claims,
                                             std::string_view lease_owner_tenant);

// Step 10, for LEASE_ACQUIRE. PERMISSION_DENIED ("vram_ceiling: ...") when the
// token has a ceiling (max_vram != 0) and `requested_bytes` exceeds it.
[[nodiscard]] Result<void> check_vram_ceiling(const Claims& claims, uint64_t requested_bytes);

}  // namespace gpulease::capability
