#include "gpulease/client/lease.hpp"

#include <random>
#include <set>

#include "gpulease/client/fleet.hpp"

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

LeaseBuilder::LeaseBuilder(const Fleet& fleet) : fleet_(fleet.impl()) {}

namespace {

// The constraints in words, for messages: "64.0 MiB, cc >= 8.0, backend cuda".
std::string describe_constraints(const PlacementConstraints& c) {
  std::string s = c.min_vram != 0 ? std::to_string(c.min_vram) + " bytes of free VRAM" : "";
  auto sep = [&s] { return s.empty() ? "" : ", "; };
  if (c.device) s += sep() + std::string("device index ") + std::to_string(*c.device);
  if (c.min_compute_capability)
    s += sep() + std::string("compute capability >= ") +
         std::to_string(c.min_compute_capability->first) + "." +
         std::to_string(c.min_compute_capability->second);
  if (!c.backend.empty()) s += sep() + std::string("backend ") + c.backend;
  return s;
}

// What HELLO says about a node, as a directory record (single-node placement).
FleetNode node_from_hello(const Connection& conn) {
  const wire::HelloReply h = conn.node_info();
  FleetNode n;
  n.node_id = h.node_id;
  n.address = conn.address().str();
  n.backend = h.backend;
  for (const auto& d : h.devices) {
    n.devices.push_back({d.index, d.name, d.cc_major, d.cc_minor, d.total_bytes, d.free_bytes});
  }
  return n;
}

}  // namespace

Result<Lease> LeaseBuilder::acquire() const {
  wire::LeaseAcquireRequest req = req_;
  if (req.min_vram == 0)
    return make_error(Status::kInvalidArgument, "LEASE_ACQUIRE: min_vram must be > 0");
  if (req.ttl_s == 0)
    return make_error(Status::kInvalidArgument, "LEASE_ACQUIRE: lease_secs must be > 0");
  if (fleet_) return acquire_on_fleet(req);
  if (min_cc_ || !backend_.empty()) {
    // The node's HELLO answers the constraints; a device that meets them is
    // named in the request (best fit by the free VRAM HELLO reported, which
    // may be stale: the node has the last word on room).
    const FleetNode self = node_from_hello(*conn_);
    PlacementConstraints c;
    if (req.device != wire::kAnyDevice) c.device = req.device;
    c.min_compute_capability = min_cc_;
    c.backend = backend_;
    const auto any_room = rank_candidates({self}, c);
    if (any_room.empty()) {
      return make_error(Status::kUnsupported,
                        "LEASE_ACQUIRE: node '" + self.node_id + "' (backend " + self.backend +
                            ") has no device with " + describe_constraints(c));
    }
    c.min_vram = req.min_vram;
    const auto with_room = rank_candidates({self}, c);
    req.device = with_room.empty() ? any_room.front().device : with_room.front().device;
  }
  return acquire_on(*conn_, req);
}

Result<Lease> LeaseBuilder::acquire_on(const Connection& conn,
                                       wire::LeaseAcquireRequest req) const {
  req.idempotency_key = random_key();
  // Resend-safe with the key (the table says LEASE_ACQUIRE is not in
  // general): a resend returns the same lease.
  RequestOptions o;
  o.retry_safe = true;
  auto r = conn.call_as<wire::LeaseAcquireReply>(Opcode::kLeaseAcquire, wire::encode_payload(req),
                                                 std::move(o));
  if (!r) return with_context(std::move(r).error(), "LEASE_ACQUIRE");
  auto s = std::make_shared<detail::LeaseState>(conn);
  s->id = r->lease_id;
  s->device = r->device;
  s->granted_bytes = r->granted_bytes;
  s->ttl_s = req.ttl_s;
  s->expires_at_ms = r->expires_at_ms;
  return Lease(std::move(s));
}

Result<Lease> LeaseBuilder::acquire_on_fleet(wire::LeaseAcquireRequest req) const {
  const Fleet fleet = Fleet::from_impl(fleet_);
  PlacementConstraints c;
  c.min_vram = req.min_vram;
  if (req.device != wire::kAnyDevice) c.device = req.device;
  c.min_compute_capability = min_cc_;
  c.backend = backend_;
  c.load = load_;
  const auto cands = fleet.candidates(c);
  const std::string where = "LEASE_ACQUIRE on fleet '" + fleet.name() + "'";
  if (cands.empty()) {
    return Error::node(Status::kCapacityExceeded,
                       where + ": no registered node has a device with " + describe_constraints(c) +
                           " (" + std::to_string(fleet.nodes().size()) + " nodes registered)");
  }
  // Each candidate once, in order; a node found unreachable is not tried
  // again for its other devices.
  std::set<std::string> unreachable;
  std::string tried;
  bool any_full = false;
  for (const auto& cand : cands) {
    if (unreachable.count(cand.node_id) != 0) continue;
    auto note = [&](const Error& e) {
      if (tried.size() < 2000)
        tried += (tried.empty() ? "" : "; ") + cand.node_id + "/" + std::to_string(cand.device) +
                 ": " + describe(e);
    };
    auto conn = fleet.connect(cand.node_id);
    if (!conn) {
      note(conn.error());
      unreachable.insert(cand.node_id);
      continue;
    }
    wire::LeaseAcquireRequest on = req;
    on.device = cand.device;
    auto lease = acquire_on(*conn, on);
    if (lease) return lease;
    const Error& e = lease.error();
    if (!placement_skips(e)) {
      return with_context(std::move(lease).error(),
                          where + ": node '" + cand.node_id + "' at " + cand.address);
    }
    note(e);
    if (is_connection_lost(e)) {
      unreachable.insert(cand.node_id);
      fleet.forget(cand.node_id);
    } else {
      any_full = true;
    }
  }
  std::string msg =
      where + ": no candidate could take " + describe_constraints(c) + " (" + tried + ")";
  // Full (some node said so): the fleet's capacity, as its nodes answered.
  if (any_full) return Error::node(Status::kCapacityExceeded, std::move(msg));
  return Error::connection_lost(std::move(msg));
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
