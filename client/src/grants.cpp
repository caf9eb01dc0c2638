#include "gpulease/client/grants.hpp"

namespace gpulease::client {

using wire::Opcode;
using wire::Status;

std::string ScopedGrant::text() const {
  return capability::encode_token_text(token);
}

Result<ScopedGrant> request_scoped_token(const Lease& lease, PermissionSet perms, uint32_t ttl_s) {
  RequestOptions o;
  o.lease_id = lease.lease_id();
  Connection conn = lease.connection();
  auto r = conn.call_as<wire::CapRequestReply>(
      Opcode::kCapRequest, wire::encode_payload(wire::CapRequestRequest{perms, ttl_s}),
      std::move(o));
  if (!r)
    return with_context(std::move(r).error(),
                        "CAP_REQUEST lease " + std::to_string(lease.lease_id()));
  auto view = capability::parse_token(r->token);
  if (!view) return with_context(std::move(view).error(), "CAP_REQUEST: the node's token");
  ScopedGrant g;
  g.claims = view->to_claims();
  g.token = std::move(r->token);
  return g;
}

Result<void> check_scoped_token(const ScopedGrant& grant, uint64_t lease_id,
                                std::string_view audience, Permission needed, int64_t now_unix_s) {
  // Re-parse the bytes that will be presented, not the cached claims.
  auto view = capability::parse_token(grant.token);
  if (!view) return with_context(std::move(view).error(), "scoped token");
  const auto& t = *view;
  if (t.lease_id != lease_id) {
    return make_error(Status::kPermissionDenied, "scoped token is bound to lease " +
                                                     std::to_string(t.lease_id) + ", not " +
                                                     std::to_string(lease_id));
  }
  if (t.audience != audience) {
    return make_error(Status::kPermissionDenied, "scoped token is for node '" +
                                                     std::string(t.audience) + "', not '" +
                                                     std::string(audience) + "'");
  }
  if (!capability::grants(t.perms, needed)) {
    return make_error(
        Status::kPermissionDenied,
        "scoped token does not grant " + std::string(capability::permission_name(needed)));
  }
  const PermissionSet allowed = kDefaultScopedPermissions | capability::bits(needed);
  if (!capability::is_subset(t.perms, allowed)) {
    return make_error(Status::kPermissionDenied, "scoped token grants more than asked: " +
                                                     capability::format_permissions(t.perms));
  }
  // The node stamps not_before with its own clock; allow it to run ahead of ours.
  constexpr uint64_t kClockSkewS = 30;
  const uint64_t now = now_unix_s < 0 ? 0 : static_cast<uint64_t>(now_unix_s);
  if (now + kClockSkewS < t.not_before)
    return make_error(Status::kTokenExpired, "scoped token is not valid yet");
  if (now >= t.expires_at) return make_error(Status::kTokenExpired, "scoped token has expired");
  return {};
}

}  // namespace gpulease::client
