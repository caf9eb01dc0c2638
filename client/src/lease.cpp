#include "gpulease/client/lease.hpp"

#include <random>

namespace gpulease::client {

using wire::Bytes;
using wire::Opcode;
using wire::Status;

namespace {

wire::IdempotencyKey random_key() {
  std::random_device rd;
  wire::IdempotencyKey k{};
  for (size_t i = 0; i < k.size(); i += 4) {
    uint32_t v = rd();
    for (size_t j = 0; j < 4; ++j) k[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  if (k == wire::IdempotencyKey{}) k[0] = 1;  // all zero means "no key"
  return k;
}

RequestOptions on_lease(uint64_t id, std::chrono::milliseconds timeout = {}) {
  RequestOptions o;
  o.lease_id = id;
  o.timeout = timeout;
  return o;
}

// LEASE_RELEASE. Resent after a reconnect, it may find the lease already
// ended by the first copy, which reached the node before the connection
// dropped: the node answers LEASE_EXPIRED and the release worked.
Result<Reply> send_release(const Connection& conn, uint64_t id,
                           std::chrono::milliseconds timeout = {}) {
  PendingReply p =
      conn.send(Opcode::kLeaseRelease, wire::encode_payload(wire::Empty{}), on_lease(id, timeout));
  Result<Reply> r = p.wait();
  if (!r && r.status() == Status::kLeaseExpired && p.resent()) return Reply{};
  return r;
}

// How long a destructor waits for LEASE_RELEASE.
constexpr std::chrono::seconds kQuietReleaseTimeout{3};

}  // namespace

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release_quietly();
    state_ = std::move(other.state_);
  }
  return *this;
}

Lease::~Lease() {
  release_quietly();
}

void Lease::release_quietly() noexcept {
  if (!state_ || state_->ended.exchange(true)) return;
  try {
    // Not while reconnecting or after a reconnect gave up: that would wait
    // for a reconnect; the node ends the lease at expiry (or on disconnect).
    if (!state_->conn.connected()) return;
    (void)send_release(state_->conn, state_->id, kQuietReleaseTimeout);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw (bad_alloc)
  }
}

Lease Lease::adopt(Connection conn, uint64_t lease_id, uint32_t ttl_s) {
  auto s = std::make_shared<detail::LeaseState>(std::move(conn));
  s->id = lease_id;
  s->ttl_s = ttl_s;
  return Lease(std::move(s));
}

std::chrono::system_clock::time_point Lease::expires_at() const noexcept {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(expires_at_ms()));
}

Result<void> detail::renew_lease(LeaseState& s, uint32_t ttl_s, std::chrono::milliseconds timeout) {
  uint32_t ttl = ttl_s != 0 ? ttl_s : s.ttl_s;
  if (ttl == 0) return make_error(Status::kInvalidArgument, "LEASE_RENEW: no TTL given");
  auto r = s.conn.call_as<wire::LeaseRenewReply>(Opcode::kLeaseRenew,
                                                 wire::encode_payload(wire::LeaseRenewRequest{ttl}),
                                                 on_lease(s.id, timeout));
  if (!r) return with_context(std::move(r).error(), "LEASE_RENEW lease " + std::to_string(s.id));
  s.expires_at_ms = r->expires_at_ms;
  if (s.ttl_s == 0) s.ttl_s = ttl;
  return {};
}

Result<void> Lease::renew(uint32_t ttl_s) {
  return detail::renew_lease(*state_, ttl_s);
}

Result<LeaseInfo> Lease::query() const {
  auto r = state_->conn.call_as<wire::LeaseInfo>(
      Opcode::kLeaseQuery, wire::encode_payload(wire::Empty{}), on_lease(state_->id));
  if (!r)
    return with_context(std::move(r).error(), "LEASE_QUERY lease " + std::to_string(state_->id));
  state_->expires_at_ms = r->expires_at_ms;
  return r;
}

Result<void> Lease::release() {
  if (!state_) return make_error(Status::kInvalidArgument, "LEASE_RELEASE on a moved-from Lease");
  if (state_->ended.exchange(true)) {
    return make_error(Status::kLeaseExpired,
                      "lease " + std::to_string(state_->id) + " was already released");
  }
  auto r = send_release(state_->conn, state_->id);
  if (!r)
    return with_context(std::move(r).error(), "LEASE_RELEASE lease " + std::to_string(state_->id));
  return {};
}

uint64_t Lease::detach() noexcept {
  if (!state_) return 0;
  state_->ended = true;
  return state_->id;
}

Result<Lease> LeaseBuilder::acquire() const {
  wire::LeaseAcquireRequest req = req_;
  if (req.min_vram == 0)
    return make_error(Status::kInvalidArgument, "LEASE_ACQUIRE: min_vram must be > 0");
  if (req.ttl_s == 0)
    return make_error(Status::kInvalidArgument, "LEASE_ACQUIRE: lease_secs must be > 0");
  req.idempotency_key = random_key();
  // Resend-safe with the key (the table says LEASE_ACQUIRE is not in
  // general): a resend returns the same lease.
  RequestOptions o;
  o.retry_safe = true;
  auto r = conn_.call_as<wire::LeaseAcquireReply>(Opcode::kLeaseAcquire, wire::encode_payload(req),
                                                  std::move(o));
  if (!r) return with_context(std::move(r).error(), "LEASE_ACQUIRE");
  auto s = std::make_shared<detail::LeaseState>(conn_);
  s->id = r->lease_id;
  s->device = r->device;
  s->granted_bytes = r->granted_bytes;
  s->ttl_s = req.ttl_s;
  s->expires_at_ms = r->expires_at_ms;
  return Lease(std::move(s));
}

Result<std::vector<LeaseInfo>> list_leases(const Connection& conn) {
  Connection c = conn;
  auto r = c.call_as<wire::LeaseListReply>(Opcode::kLeaseList, wire::encode_payload(wire::Empty{}));
  if (!r) return with_context(std::move(r).error(), "LEASE_LIST");
  return std::move(r->leases);
}

std::string_view lease_state_name(wire::LeaseState s) noexcept {
  switch (s) {
    case wire::LeaseState::kActive:
      return "active";
    case wire::LeaseState::kFaulted:
      return "faulted";
    case wire::LeaseState::kExpired:
      return "expired";
    case wire::LeaseState::kReleased:
      return "released";
  }
  return "unknown";
}

std::string_view exclusivity_name(Exclusivity e) noexcept {
  switch (e) {
    case Exclusivity::kShared:
      return "shared";
    case Exclusivity::kSessionExclusive:
      return "session_exclusive";
    case Exclusivity::kDeviceExclusive:
      return "device_exclusive";
  }
  return "unknown";
}

}  // namespace gpulease::client
