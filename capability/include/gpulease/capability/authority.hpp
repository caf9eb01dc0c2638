// Token minting: the authority side (the CLI, an external authority service)
// and the node's own attenuation for CAP_REQUEST (docs/TOKENS.md,
// "CAP_REQUEST: attenuation").
#pragma once

#include <cstdint>
#include <optional>

#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

// What a CAP_REQUEST asks for.
struct AttenuationRequest {
  uint64_t lease_id = 0;    // the one lease the new token is bound to; must be non-zero
  PermissionSet perms = 0;  // must be a subset of the parent's
  uint64_t ttl_s = 0;       // > 0; the expiry is also capped at the parent's
  int64_t now_unix_s = 0;
  std::optional<TokenId> token_id;  // random when absent (set only for vectors and tests)
};

// Signs tokens with one secret key. Move-only (owns the key).
// THREAD SAFETY: const members may be called concurrently.
class Authority {
 public:
  explicit Authority(SecretKey key) : key_(std::move(key)) {}

  [[nodiscard]] uint64_t key_id() const noexcept { return key_.key_id(); }
  [[nodiscard]] const PublicKey& public_key() const noexcept { return key_.public_key(); }

  // Signs `claims` as given, except key_id, which is set to this key's id.
  // INVALID_ARGUMENT when validate_claims fails.
  [[nodiscard]] Result<wire::Bytes> mint(Claims claims) const;

  // The node side of CAP_REQUEST: a token narrower than `parent` in every
  // respect, signed by this (the node's) key.
  // REQUIRES: `parent` came from Verifier::verify for a CAP_REQUEST frame
  //   naming req.lease_id, and the caller checked check_lease_owner(parent,
  //   owner of req.lease_id): attenuation trusts both.
  // Result: same tenant, audience and max_vram; lease_id = req.lease_id;
  //   perms = req.perms; not_before = max(now, parent.not_before);
  //   expires_at = min(now + ttl_s, parent.expires_at); origin_id =
  //   parent's origin_id when set, else parent's token_id.
  // Errors: PERMISSION_DENIED when perms is not a subset of the parent's or
  //   the parent is bound to another lease; INVALID_ARGUMENT for lease_id 0 or
  //   ttl_s 0; TOKEN_EXPIRED when the parent has no time left.
  [[nodiscard]] Result<wire::Bytes> attenuate(const Claims& parent,
                                              const AttenuationRequest& req) const;

 private:
  SecretKey key_;
};

// A random token id (libsodium's RNG).
[[nodiscard]] TokenId random_token_id();

}  // namespace gpulease::capability
