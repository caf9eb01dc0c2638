#include "gpulease/capability/authority.hpp"

#include <sodium.h>

#include <algorithm>

#include "gpulease/capability/encoding.hpp"

namespace gpulease::capability {

TokenId random_token_id() {
  require_sodium();
  TokenId id;
  randombytes_buf(id.data(), id.size());
  return id;
}

Result<wire::Bytes> Authority::mint(Claims claims) const {
  claims.key_id = key_.key_id();
  if (auto v = validate_claims(claims); !v) return std::move(v).error();
  wire::Bytes token = encode_token_body(claims);
  const Signature sig = key_.sign(signing_message(token));
  const auto* p = reinterpret_cast<const std::byte*>(sig.data());
  token.insert(token.end(), p, p + sig.size());
  return token;
}

Result<wire::Bytes> Authority::attenuate(const Claims& parent,
                                         const AttenuationRequest& req) const {
  if (req.lease_id == 0) {
    return make_error(Status::kInvalidArgument, "an attenuated token must name one lease");
  }
  if (req.ttl_s == 0) return make_error(Status::kInvalidArgument, "ttl must be positive");
  if (!is_subset(req.perms, parent.perms)) {
    return make_error(Status::kPermissionDenied, "requested permissions " +
                                                     format_permissions(req.perms & ~parent.perms) +
                                                     " are not held by the presented token");
  }
  if (parent.lease_id != 0 && parent.lease_id != req.lease_id) {
    return make_error(Status::kPermissionDenied,
                      "presented token is bound to lease " + std::to_string(parent.lease_id));
  }
  const uint64_t now = req.now_unix_s < 0 ? 0 : static_cast<uint64_t>(req.now_unix_s);
  Claims child;
  child.tenant = parent.tenant;
  child.audience = parent.audience;
  child.lease_id = req.lease_id;
  child.perms = req.perms;
  child.not_before = std::max(now, parent.not_before);
  // Saturating now + ttl: a huge ttl just means "as long as the parent".
  const uint64_t want = req.ttl_s > UINT64_MAX - now ? UINT64_MAX : now + req.ttl_s;
  child.expires_at = std::min(want, parent.expires_at);
  if (child.expires_at <= child.not_before) {
    return make_error(Status::kTokenExpired, "presented token has no validity left to delegate");
  }
  child.token_id = req.token_id ? *req.token_id : random_token_id();
  static constexpr TokenId kZero{};
  child.origin_id = parent.origin_id != kZero ? parent.origin_id : parent.token_id;
  child.max_vram = parent.max_vram;
  return mint(std::move(child));
}

}  // namespace gpulease::capability
