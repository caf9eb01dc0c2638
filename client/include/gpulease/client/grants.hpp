// Scoped grants (recipe 53): ask the node, through CAP_REQUEST, for a token
// bound to one lease with only the permissions a request needs, and check it
// before any work is launched with it.
//
//   auto grant = unwrap(request_scoped_token(lease));   // TASKLET_SUBMIT | LEASE_QUERY
//   unwrap(check_scoped_token(grant, lease.lease_id(), conn.node_info().node_id,
//                             Permission::kTaskletSubmit));
//   Session submit_only(lease, grant.token);              // launches and syncs with it
//
// The node signs the grant with its own key, narrower than the presenting
// token in every respect (same tenant and audience, this lease only, the
// requested permissions, an expiry no later than the parent's).
#pragma once

#include <cstdint>
#include <string>

#include "gpulease/capability/permissions.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/client/lease.hpp"

namespace gpulease::client {

using capability::Permission;
using capability::PermissionSet;

inline constexpr PermissionSet kDefaultScopedPermissions =
    capability::bits(Permission::kTaskletSubmit) | capability::bits(Permission::kLeaseQuery);

struct ScopedGrant {
  wire::Bytes token;          // binary, for Session(lease, token) or RequestOptions::token
  capability::Claims claims;  // parsed from the token
  [[nodiscard]] std::string text() const;  // "glt1...."
  [[nodiscard]] uint64_t expires_at_unix_secs() const noexcept { return claims.expires_at; }
};

// CAP_REQUEST on `lease`: a token bound to it with `perms`, valid for ttl_s
// seconds (0 = as long as the presenting token). The presenting token needs
// the cap_request permission and every bit of `perms`.
[[nodiscard]] Result<ScopedGrant> request_scoped_token(
    const Lease& lease, PermissionSet perms = kDefaultScopedPermissions, uint32_t ttl_s = 0);

// Checks, before use, that a grant is what the caller asked for: bound to
// `lease_id`, for `audience`, granting `needed`, valid at `now_unix_s`, and
// granting nothing beyond kDefaultScopedPermissions | needed.
// PERMISSION_DENIED or TOKEN_EXPIRED naming the failed check. The signature is
// the node's and is verified by the node on every frame.
[[nodiscard]] Result<void> check_scoped_token(const ScopedGrant& grant, uint64_t lease_id,
                                              std::string_view audience, Permission needed,
                                              int64_t now_unix_s);

}  // namespace gpulease::client
