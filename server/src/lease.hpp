// A lease: a VRAM quota on one device, a TTL, and the executor that owns its
// device context and tables (leases/lease_executor.hpp).
//
// THREAD SAFETY: immutable fields are set before the lease is published;
// atomics may be read from anywhere (queries, the reaper); `ended` and
// `reservation` are guarded by Node::mu_ (the lease table's lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "gpulease/wire/messages.hpp"
#include "leases/admission.hpp"
#include "leases/lease_executor.hpp"

namespace gpulease::server {

struct Lease : std::enable_shared_from_this<Lease> {
  Lease(uint64_t id_, std::string tenant_, uint16_t device_, uint64_t quota_, uint64_t overhead_,
        wire::Exclusivity excl_, bool release_on_disconnect_, uint64_t owner_conn_)
      : id(id_),
        tenant(std::move(tenant_)),
        device(device_),
        quota(quota_),
        overhead(overhead_),
        exclusivity(excl_),
        release_on_disconnect(release_on_disconnect_),
        owner_conn(owner_conn_) {}

  const uint64_t id;
  const std::string tenant;
  const uint16_t device;
  const uint64_t quota;
  const uint64_t overhead;  // context overhead counted in admission
  const wire::Exclusivity exclusivity;
  const bool release_on_disconnect;
  const uint64_t owner_conn;

  std::atomic<uint64_t> expires_at_ms{0};
  std::atomic<wire::LeaseState> state{wire::LeaseState::kActive};
  // Written by the executor (on its strand), read anywhere.
  std::atomic<uint64_t> used_bytes{0};
  std::atomic<uint32_t> buffer_count{0};
  std::atomic<uint32_t> module_count{0};

  // Set once before the lease is published.
  std::unique_ptr<LeaseExecutor> exec;
  wire::IdempotencyKey idempotency_key{};  // all zero: acquired without one

  // Guarded by Node::mu_.
  bool ended = false;
  Reservation reservation;  // its bytes in admission, given back when it ends
};

}  // namespace gpulease::server
