// Prometheus metrics of the node. Every label set is bounded: opcodes and
// statuses are enums, drop reasons a fixed list; nothing is labelled per
// lease, tenant or request.
//
// THREAD SAFETY: all members are atomics; render() may run concurrently
// with updates (it reads a consistent-enough snapshot, as Prometheus expects).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/status.hpp"

namespace gpulease::server {

enum class DropReason { kReleased = 0, kExpired, kDisconnected, kShutdown, kCount };

inline constexpr size_t kOpcodeSlots = std::size(wire::kAllOpcodes);
inline constexpr size_t kStatusSlots = wire::kMaxStatusValue + 1;
// Latency histogram bucket upper bounds in microseconds (+Inf implied).
inline constexpr std::array<uint64_t, 14> kLatencyBucketsUs{
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000, 5000000};

// Index of an opcode in wire::kAllOpcodes (kOpcodeSlots for unknown ones).
[[nodiscard]] size_t opcode_slot(wire::Opcode op) noexcept;

class Metrics {
 public:
  Metrics();

  void frame_done(wire::Opcode op, wire::Status status, uint64_t latency_us) noexcept;
  void auth_failed(wire::Status status) noexcept;
  void lease_dropped(DropReason r) noexcept {
    dropped_[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }

  std::atomic<uint64_t> lease_acquired{0};
  std::atomic<int64_t> leases_active{0};
  std::atomic<int64_t> mem_alloc_bytes{0};
  std::atomic<uint64_t> launch_total{0};
  std::atomic<uint64_t> sync_total{0};
  std::atomic<uint64_t> sync_errors{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> mem_read_lent_bytes{0};     // MEM_READ bytes sent from device memory
  std::atomic<uint64_t> mem_read_loans_revoked{0};  // such replies copied before a change
  std::atomic<int64_t> connections_active{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> connections_evicted{0};  // tokenless ones closed to admit another
  std::atomic<uint64_t> bad_frames{0};           // frames rejected before dispatch
  // Tokened frames refused unchecked: their address ran out of failed
  // verifications (net/auth_limiter.hpp).
  std::atomic<uint64_t> auth_rate_limited{0};
  std::atomic<uint64_t> metrics_connections_rejected{0};  // scrapes past the endpoint's limit
  // Fleet directory (--registry; set by the registrar): -1 = not configured
  // (not rendered), 0 = not registered now, 1 = registered.
  std::atomic<int64_t> fleet_registered{-1};
  std::atomic<uint64_t> fleet_registrations{0};  // etcd leases granted + record put
  std::atomic<uint64_t> fleet_errors{0};         // etcd calls of the registrar that failed

  // The network layer's memory (installed by the Server while it runs):
  // frame-body bytes reserved now, pooled body buffers, budget waits.
  struct FrameBytes {
    uint64_t held = 0, pooled = 0, waits = 0;
  };
  std::function<FrameBytes()> frame_bytes_stats;

  // Token cache counters live in the verifier; the node installs a reader.
  std::function<std::pair<uint64_t, uint64_t>()> token_cache_stats;  // hits, misses
  std::function<uint64_t()> signature_checks;                        // Ed25519 checks run

  // Prometheus text exposition format 0.0.4.
  [[nodiscard]] std::string render() const;

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(DropReason::kCount)> dropped_{};
  std::array<std::array<std::atomic<uint64_t>, kStatusSlots>, kOpcodeSlots> frames_{};
  std::array<std::atomic<uint64_t>, kStatusSlots> auth_failures_{};
  struct Histogram {
    std::array<std::atomic<uint64_t>, kLatencyBucketsUs.size() + 1> buckets{};
    std::atomic<uint64_t> sum_us{0};
    std::atomic<uint64_t> count{0};
  };
  std::array<Histogram, kOpcodeSlots> latency_{};
};

}  // namespace gpulease::server
