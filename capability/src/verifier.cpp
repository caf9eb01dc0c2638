#include "gpulease/capability/verifier.hpp"

#include <array>
#include <cstring>

#include "gpulease/capability/encoding.hpp"

namespace gpulease::capability {
namespace {

struct ReasonInfo {
  std::string_view name;
  Status status;
};

constexpr std::array<ReasonInfo, kDenyReasonCount> kReasons{{
    {"malformed", Status::kUnauthenticated},
    {"unknown_key", Status::kUnauthenticated},
    {"bad_signature", Status::kUnauthenticated},
    {"not_yet_valid", Status::kTokenExpired},
    {"expired", Status::kTokenExpired},
    {"wrong_audience", Status::kPermissionDenied},
    {"missing_permission", Status::kPermissionDenied},
    {"revoked_token", Status::kRevoked},
    {"revoked_tenant", Status::kRevoked},
    {"wrong_lease", Status::kPermissionDenied},
    {"not_lease_owner", Status::kLeaseNotFound},
    {"vram_ceiling", Status::kPermissionDenied},
    {"lease_rule", Status::kInvalidArgument},
}};

Error reason_error(DenyReason r, std::string_view detail) {
  const auto& info = kReasons[static_cast<size_t>(r)];
  std::string msg(info.name);
  if (!detail.empty()) {
    msg += ": ";
    msg.append(detail);
  }
  return make_error(info.status, std::move(msg));
}

}  // namespace

std::string_view deny_reason_name(DenyReason r) noexcept {
  return kReasons[static_cast<size_t>(r)].name;
}

Status deny_reason_status(DenyReason r) noexcept {
  return kReasons[static_cast<size_t>(r)].status;
}

Verifier::Verifier(VerifierOptions options)
    : options_(std::move(options)), cache_(options_.cache_capacity, options_.cache_shards) {
  require_sodium();
}

Error Verifier::deny(DenyReason r, std::string_view detail) {
  denied_[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  return reason_error(r, detail);
}

Result<Claims> Verifier::verify(wire::ByteSpan token, const VerifyRequest& req) {
  // 1. Structure. Nothing below trusts a field before this passes.
  auto parsed = parse_token(token);
  if (!parsed) {
    // parse_token's message is "malformed token: <field>"; keep the field.
    std::string_view m = parsed.error().message;
    const std::string_view prefix = "malformed token: ";
    if (m.substr(0, prefix.size()) == prefix) m.remove_prefix(prefix.size());
    return deny(DenyReason::kMalformed, m);
  }
  const TokenView& t = *parsed;

  // 2. Key id. Checked before the cache so a removed key stops its tokens at once.
  const auto pk = keys_.find(t.key_id);
  if (!pk) return deny(DenyReason::kUnknownKey, "key id " + key_id_hex(t.key_id) + " not trusted");

  // 3. Signature, unless these exact bytes were verified before.
  if (!cache_.contains(token)) {
    // The signed message is at most kMaxSignedMessageBytes: build it on the stack.
    std::array<std::byte, kMaxSignedMessageBytes> msg;
    std::memcpy(msg.data(), kSigningDomain.data(), kSigningDomain.size());
    std::memcpy(msg.data() + kSigningDomain.size(), t.body.data(), t.body.size());
    signature_checks_.fetch_add(1, std::memory_order_relaxed);
    if (!verify_signature(*pk, {msg.data(), kSigningDomain.size() + t.body.size()}, t.signature)) {
      return deny(DenyReason::kBadSignature, "");
    }
    cache_.insert(token);
  }

  // 4. Time window, widened by the skew on both ends. Unsigned arithmetic
  // with saturation: the token's u64 times are peer-chosen (though signed).
  const uint64_t now = req.now_unix_s < 0 ? 0 : static_cast<uint64_t>(req.now_unix_s);
  const uint64_t skew =
      options_.clock_skew_s < 0 ? 0 : static_cast<uint64_t>(options_.clock_skew_s);
  if (t.not_before > now + skew) {
    return deny(DenyReason::kNotYetValid, "valid from " + std::to_string(t.not_before));
  }
  const uint64_t end = t.expires_at > UINT64_MAX - skew ? UINT64_MAX : t.expires_at + skew;
  if (now >= end) return deny(DenyReason::kExpired, "expired at " + std::to_string(t.expires_at));

  // 5. Audience: a token for another node is useless here.
  // A fleet node may also accept its fleet's audience (one token for every
  // node of the fleet; the trade-off is in docs/TOKENS.md).
  if (t.audience != options_.node_id &&
      (options_.fleet_audience.empty() || t.audience != options_.fleet_audience)) {
    return deny(DenyReason::kWrongAudience, "");
  }

  // 6. Permission for this opcode.
  const auto need = required_permission(req.opcode);
  if (!need) return deny(DenyReason::kMissingPermission, "unknown opcode");
  if (!grants(t.perms, *need)) {
    std::string detail(wire::opcode_name(req.opcode));
    detail += " requires ";
    detail.append(permission_name(*need));
    return deny(DenyReason::kMissingPermission, detail);
  }

  // 7. Revocation.
  switch (revoked_.check(t.token_id, t.origin_id, t.tenant)) {
    case Revoked::kNo:
      break;
    case Revoked::kToken:
      return deny(DenyReason::kRevokedToken, "");
    case Revoked::kTenant:
      return deny(DenyReason::kRevokedTenant, "");
  }

  // 8. The header lease rule and the lease binding. A lease-bound token acts
  // on its lease and nothing else: it acquires nothing and lists nothing.
  const wire::OpcodeInfo* info = wire::find_opcode(static_cast<uint16_t>(req.opcode));
  const bool acts_on_lease = info != nullptr && info->lease_rule == wire::LeaseRule::kRequired;
  if (t.lease_id != 0 && !acts_on_lease) {
    return deny(DenyReason::kWrongLease,
                "a lease-bound token cannot use " + std::string(wire::opcode_name(req.opcode)));
  }
  if (auto why = wire::lease_rule_violation(req.opcode, req.frame_lease_id)) {
    return deny(DenyReason::kLeaseRule, *why);
  }
  if (t.lease_id != 0 && t.lease_id != req.frame_lease_id) {
    return deny(DenyReason::kWrongLease, "token is bound to lease " + std::to_string(t.lease_id));
  }

  accepted_.fetch_add(1, std::memory_order_relaxed);
  return t.to_claims();
}

VerifierStats Verifier::stats() const {
  VerifierStats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.signature_checks = signature_checks_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kDenyReasonCount; ++i) {
    s.denied[i] = denied_[i].load(std::memory_order_relaxed);
  }
  s.cache = cache_.stats();
  return s;
}

Result<void> check_lease_owner(const Claims& claims, std::string_view lease_owner_tenant) {
  if (claims.tenant != lease_owner_tenant) {
    // Not reason_error: the reply must read exactly as for an absent lease.
    return make_error(Status::kLeaseNotFound, std::string(kNoSuchLeaseMessage));
  }
  return {};
}

Result<void> check_vram_ceiling(const Claims& claims, uint64_t requested_bytes) {
  if (claims.max_vram != 0 && requested_bytes > claims.max_vram) {
    return reason_error(DenyReason::kVramCeiling,
                        "token allows at most " + std::to_string(claims.max_vram) + " bytes");
  }
  return {};
}

}  // namespace gpulease::capability
