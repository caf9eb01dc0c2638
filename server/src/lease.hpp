// A lease: a VRAM quota on one device, a private device context and a TTL.
//
// THREAD SAFETY: immutable fields are set before the lease is published.
// Fields marked STRAND are touched only on `strand` (the lease's serial
// executor on the device pool); atomics may be read from anywhere (queries,
// the reaper). `ended` is guarded by Node::mu_.
#pragma once

#include <asio/strand.hpp>
#include <asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::server {

using DeviceStrand = asio::strand<asio::thread_pool::executor_type>;

// The answers to the last N MEM_ALLOC / MODULE_LOAD requests of a lease, so a
// retry of the same request (same request id, opcode and payload) gets the
// first answer instead of leaking a second buffer or module. An entry is
// forgotten once the handle it returned is freed, so a replay never hands out
// a dead handle.
class ReplayWindow {
 public:
  explicit ReplayWindow(size_t capacity) : capacity_(capacity) {}
  struct Entry {
    uint64_t request_id;
    wire::Opcode opcode;
    uint64_t payload_hash;  // XXH3-64 of the request payload
    wire::Status status;
    wire::Bytes payload;
    uint64_t handle;  // the handle an OK answer returned (0 otherwise)
  };
  const Entry* find(uint64_t request_id, wire::Opcode op, uint64_t payload_hash) const {
    for (const auto& e : entries_) {
      if (e.request_id == request_id && e.opcode == op && e.payload_hash == payload_hash) return &e;
    }
    return nullptr;
  }
  void remember(uint64_t request_id, wire::Opcode op, uint64_t payload_hash, wire::Status status,
                wire::Bytes payload, uint64_t handle = 0) {
    if (capacity_ == 0) return;
    if (entries_.size() == capacity_) entries_.pop_front();
    entries_.push_back(Entry{request_id, op, payload_hash, status, std::move(payload), handle});
  }
  void forget_handle(wire::Opcode op, uint64_t handle) {
    std::erase_if(entries_, [&](const Entry& e) { return e.opcode == op && e.handle == handle; });
  }

 private:
  size_t capacity_;
  std::deque<Entry> entries_;
};

struct Lease {
  Lease(uint64_t id_, std::string tenant_, uint16_t device_, uint64_t quota_, uint64_t overhead_,
        wire::Exclusivity excl_, bool release_on_disconnect_, uint64_t owner_conn_,
        DeviceStrand strand_, size_t replay_capacity)
      : id(id_),
        tenant(std::move(tenant_)),
        device(device_),
        quota(quota_),
        overhead(overhead_),
        exclusivity(excl_),
        release_on_disconnect(release_on_disconnect_),
        owner_conn(owner_conn_),
        strand(std::move(strand_)),
        replay(replay_capacity) {}

  const uint64_t id;
  const std::string tenant;
  const uint16_t device;
  const uint64_t quota;
  const uint64_t overhead;  // context overhead counted in admission
  const wire::Exclusivity exclusivity;
  const bool release_on_disconnect;
  const uint64_t owner_conn;
  DeviceStrand strand;

  std::atomic<uint64_t> expires_at_ms{0};
  std::atomic<wire::LeaseState> state{wire::LeaseState::kActive};
  std::atomic<uint64_t> used_bytes{0};
  std::atomic<uint32_t> buffer_count{0};
  std::atomic<uint32_t> module_count{0};

  // STRAND
  std::unique_ptr<DeviceContext> ctx;
  std::map<uint64_t, uint64_t> buffers;  // device address -> size
  std::map<uint64_t, uint64_t> modules;  // module handle -> bytes charged to the quota
  ReplayWindow replay;
  uint64_t launches = 0;

  // Guarded by Node::mu_.
  bool ended = false;
};

}  // namespace gpulease::server
