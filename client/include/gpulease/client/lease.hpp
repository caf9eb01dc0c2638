// Leases: a VRAM quota on one device of a node, for a time.
//
//   auto lease = LeaseBuilder(conn).min_vram(64 << 20).lease_secs(120).acquire();
//   if (!lease) return lease.error();
//   ... Session session(*lease); ...
//   // ~Lease releases it (or call release() to see the outcome).
//
// Lease is move-only and owns the lease on the node: its destructor releases
// it (ignoring errors; the node's reaper ends it at expiry anyway), waiting a
// few seconds at most, and not at all while the connection is down. detach()
// gives up ownership (the CLI's `lease acquire`).
// THREAD SAFETY: renew(), query(), expires_at() and lease_id() may be called
// from any thread (the RenewalManager does); release() and destruction must
// not race with other use of the same Lease.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "gpulease/client/connection.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::client {

using Exclusivity = wire::Exclusivity;
using LeaseInfo = wire::LeaseInfo;

namespace detail {
// Shared by a Lease, its Sessions and the RenewalManager.
struct LeaseState {
  explicit LeaseState(Connection c) : conn(std::move(c)) {}
  Connection conn;
  uint64_t id = 0;
  uint16_t device = 0;
  uint64_t granted_bytes = 0;
  uint32_t ttl_s = 0;
  std::atomic<uint64_t> expires_at_ms{0};
  std::atomic<bool> ended{false};
};
// LEASE_RENEW for ttl_s (0 = the lease's TTL); updates expires_at_ms.
// timeout: the request's deadline (0 = the connection's request_timeout).
[[nodiscard]] Result<void> renew_lease(LeaseState& s, uint32_t ttl_s,
                                       std::chrono::milliseconds timeout = {});
}  // namespace detail

class Lease {
 public:
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  // Adopts a lease that exists on the node (the CLI, a handover between
  // processes). expires_at is unknown until renew() or query().
  [[nodiscard]] static Lease adopt(Connection conn, uint64_t lease_id, uint32_t ttl_s = 0);

  [[nodiscard]] uint64_t lease_id() const noexcept { return state_->id; }
  [[nodiscard]] uint16_t device() const noexcept { return state_->device; }
  [[nodiscard]] uint64_t granted_bytes() const noexcept { return state_->granted_bytes; }
  [[nodiscard]] uint32_t ttl_secs() const noexcept { return state_->ttl_s; }
  // Unix milliseconds; updated by renew() and query().
  [[nodiscard]] uint64_t expires_at_ms() const noexcept { return state_->expires_at_ms.load(); }
  [[nodiscard]] std::chrono::system_clock::time_point expires_at() const noexcept;
  [[nodiscard]] uint64_t expires_at_unix_secs() const noexcept { return expires_at_ms() / 1000; }
  [[nodiscard]] const Connection& connection() const noexcept { return state_->conn; }
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // LEASE_RENEW: new expiry = now + ttl_s (0 = the TTL it was acquired with).
  [[nodiscard]] Result<void> renew(uint32_t ttl_s = 0);
  // LEASE_QUERY.
  [[nodiscard]] Result<LeaseInfo> query() const;
  // LEASE_RELEASE; the node answers once the context is destroyed and the VRAM
  // is back in the pool. Afterwards the destructor does nothing.
  [[nodiscard]] Result<void> release();
  // Gives up ownership without releasing; returns the lease id.
  uint64_t detach() noexcept;

  // For Session and RenewalManager.
  [[nodiscard]] const std::shared_ptr<detail::LeaseState>& state() const noexcept { return state_; }

 private:
  friend class LeaseBuilder;
  explicit Lease(std::shared_ptr<detail::LeaseState> s) : state_(std::move(s)) {}
  void release_quietly() noexcept;
  std::shared_ptr<detail::LeaseState> state_;
};

class Fleet;
namespace detail {
struct FleetImpl;
}

class LeaseBuilder {
 public:
  // On this node.
  explicit LeaseBuilder(Connection conn) : conn_(std::move(conn)) {}
  // Anywhere in the fleet (fleet.hpp): placed by best fit on free VRAM and
  // the constraints below, moving on to the next candidate when a node
  // answers CAPACITY_EXCEEDED or BUSY or cannot be reached.
  explicit LeaseBuilder(const Fleet& fleet);

  LeaseBuilder& min_vram(uint64_t bytes) {
    req_.min_vram = bytes;
    return *this;
  }
  LeaseBuilder& lease_secs(uint32_t s) {
    req_.ttl_s = s;
    return *this;
  }
  LeaseBuilder& exclusivity(Exclusivity e) {
    req_.exclusivity = e;
    return *this;
  }
  LeaseBuilder& device(uint16_t index) {
    req_.device = index;
    return *this;
  }
  LeaseBuilder& any_device() {
    req_.device = wire::kAnyDevice;
    return *this;
  }
  // The node ends the lease when this connection closes.
  LeaseBuilder& release_on_disconnect(bool on = true) {
    req_.flags = on ? uint8_t(req_.flags | wire::kAcquireReleaseOnDisconnect)
                    : uint8_t(req_.flags & ~wire::kAcquireReleaseOnDisconnect);
    return *this;
  }

  // Constraints on the device (checked against the node's HELLO on a single
  // node: a local UNSUPPORTED, unsent, when no device meets them; used for
  // placement on a fleet).
  LeaseBuilder& min_compute_capability(uint8_t major, uint8_t minor) {
    min_cc_ = std::make_pair(major, minor);
    return *this;
  }
  LeaseBuilder& backend(std::string name) {
    backend_ = std::move(name);
    return *this;
  }
  // Fleet only: leases the caller already holds per node id; nodes with
  // fewer come first (spreading, see PlacementConstraints::load).
  LeaseBuilder& spread(std::map<std::string, unsigned> load) {
    load_ = std::move(load);
    return *this;
  }

  // LEASE_ACQUIRE with a fresh random idempotency key, so a resend after a
  // reconnect returns the same lease instead of a second one.
  // Defaults: 64 MiB, 60 s, shared, any device.
  // On a fleet: the node status CAPACITY_EXCEEDED when no registered node
  // satisfies the constraints (as the directory says) or the candidates that
  // answered were full, connection lost when every candidate was
  // unreachable; the message lists what each candidate said.
  // Any other error from a node (a token it refuses, a bad argument) is
  // returned at once, naming the node.
  [[nodiscard]] Result<Lease> acquire() const;

 private:
  [[nodiscard]] Result<Lease> acquire_on(const Connection& conn,
                                         wire::LeaseAcquireRequest req) const;
  [[nodiscard]] Result<Lease> acquire_on_fleet(wire::LeaseAcquireRequest req) const;

  std::optional<Connection> conn_;
  std::shared_ptr<detail::FleetImpl> fleet_;
  std::optional<std::pair<uint8_t, uint8_t>> min_cc_;
  std::string backend_;
  std::map<std::string, unsigned> load_;
  wire::LeaseAcquireRequest req_{64u << 20, 60, Exclusivity::kShared, 0, wire::kAnyDevice, {}};
};

// LEASE_LIST: the caller's leases on the node (all of the token's tenant, or
// only the bound lease for a lease-bound token).
[[nodiscard]] Result<std::vector<LeaseInfo>> list_leases(const Connection& conn);

[[nodiscard]] std::string_view lease_state_name(wire::LeaseState s) noexcept;
[[nodiscard]] std::string_view exclusivity_name(Exclusivity e) noexcept;

}  // namespace gpulease::client
