// The node's core: leases, admission, per-frame authorization and dispatch of
// every opcode to the right executor. Transport-free: the TCP layer (net.hpp)
// hands it checked frames and writes the replies it produces, and tests can
// drive it directly.
//
// Threading: handle() runs on a network thread and never blocks on a device.
// Connection, lease and capability ops that touch no device are answered
// inline; anything that touches a device runs on the lease's strand on the
// device pool (ops of one lease run in arrival order).
#pragma once

#include <asio/thread_pool.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/key_ring.hpp"
#include "gpulease/capability/revocation.hpp"
#include "gpulease/capability/verifier.hpp"
#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"
#include "lease.hpp"
#include "metrics.hpp"

namespace gpulease::server {

// Called exactly once per request with the reply's status and payload (the
// encoded reply message, or a UTF-8 message when status != OK). May be
// called on any thread.
using ReplyFn = std::function<void(wire::Status, wire::Bytes)>;

class Node {
 public:
  // REQUIRES: backend != nullptr. `node_key` signs CAP_REQUEST tokens; the
  // node trusts its public key.
  Node(NodeConfig cfg, std::unique_ptr<DeviceBackend> backend, capability::SecretKey node_key);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Loads authority keys and the revocation file, starts the reaper.
  [[nodiscard]] Result<void> start();

  // Handles one request frame whose header was validated and checksum
  // verified. `body` holds the token section followed by the payload.
  // `verified`: the claims verify_token() returned for this frame's token
  // (the token is then not verified again); null: handle() verifies it.
  void handle(const wire::FrameHeader& h, std::shared_ptr<wire::Bytes> body, uint64_t conn_id,
              ReplyFn reply, const capability::Claims* verified = nullptr);

  // Token steps 1-8 (docs/TOKENS.md) for a frame whose header decoded: the
  // network layer calls this on the token section before it buffers the
  // payload ("authenticate before buffering"). Thread-safe.
  [[nodiscard]] Result<capability::Claims> verify_token(const wire::FrameHeader& h,
                                                        wire::ByteSpan token);

  // Connection bookkeeping: a release-on-disconnect lease is published only
  // while its connection is open, and ends when it closes.
  void connection_opened(uint64_t conn_id);
  void connection_closed(uint64_t conn_id);

  // Ends every lease (reason shutdown), waits until their contexts are
  // destroyed, stops the reaper and the device pool. Idempotent.
  void shutdown();

  // Re-reads the revocation file (SIGHUP).
  [[nodiscard]] Result<void> reload_revocations();

  [[nodiscard]] Metrics& metrics() noexcept { return metrics_; }
  [[nodiscard]] const NodeConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] std::string_view backend_name() const { return backend_->name(); }
  [[nodiscard]] size_t active_leases() const;
  [[nodiscard]] capability::KeyRing& key_ring() noexcept { return verifier_->key_ring(); }
  [[nodiscard]] capability::RevocationSet& revocations() noexcept {
    return verifier_->revocations();
  }

 private:
  struct DeviceSlot {
    DeviceInfo info;
    uint64_t capacity = 0;   // bytes leases may take (quota + overhead)
    uint64_t committed = 0;  // bytes taken by live and pending leases
    uint32_t leases = 0;
    bool exclusive_held = false;  // a DeviceExclusive lease holds it
  };
  struct TenantUsage {
    uint32_t leases = 0;
    uint64_t bytes = 0;
  };
  struct Tombstone {
    std::string tenant;
    DropReason reason;
  };
  using IdemKey = std::pair<std::string, wire::IdempotencyKey>;

  void dispatch(const wire::FrameHeader& h, const capability::Claims* claims,
                std::shared_ptr<wire::Bytes> body, uint64_t conn_id, ReplyFn reply);

  void op_hello(wire::ByteSpan payload, const ReplyFn& reply);
  void op_acquire(const capability::Claims& c, wire::ByteSpan payload, uint64_t conn_id,
                  ReplyFn reply);
  void op_renew(const capability::Claims& c, const std::shared_ptr<Lease>& l,
                wire::ByteSpan payload, const ReplyFn& reply);
  void op_release(const std::shared_ptr<Lease>& l, ReplyFn reply);
  void op_list(const capability::Claims& c, const ReplyFn& reply);
  void op_cap_request(const capability::Claims& c, const std::shared_ptr<Lease>& l,
                      wire::ByteSpan payload, const ReplyFn& reply);
  // Session ops and GPU_SUBMIT, on the lease's strand.
  void session_op(const wire::FrameHeader& h, std::shared_ptr<Lease> l,
                  std::shared_ptr<wire::Bytes> body, size_t payload_offset, ReplyFn reply);
  void run_submit(std::shared_ptr<Lease> l, wire::GpuSubmitRequest req, ReplyFn reply);

  // Lease lookup for a frame: LEASE_NOT_FOUND, LEASE_EXPIRED (recently
  // ended), PERMISSION_DENIED (another tenant's lease).
  [[nodiscard]] Result<std::shared_ptr<Lease>> find_lease(uint64_t id, const capability::Claims& c);
  [[nodiscard]] wire::LeaseInfo lease_info(const Lease& l) const;
  // A device's inventory (limits for launch checks). Needs no lock: the
  // `info` of every slot is fixed at construction; only the counters beside
  // it change. REQUIRES: index names a device of this node.
  [[nodiscard]] const DeviceInfo& device_info(uint16_t index) const;
  // Ends a lease once: unpublishes it now, destroys its context on its strand,
  // then returns its bytes to the device pool and calls `done`.
  void end_lease(const std::shared_ptr<Lease>& l, DropReason reason,
                 std::function<void()> done = {});
  void reaper_loop();
  [[nodiscard]] uint64_t expiry_for(uint32_t ttl_s, const capability::Claims& c) const;

  NodeConfig cfg_;
  std::unique_ptr<DeviceBackend> backend_;
  capability::Authority node_authority_;
  std::unique_ptr<capability::Verifier> verifier_;
  Metrics metrics_;
  asio::thread_pool device_pool_;

  mutable std::mutex mu_;
  std::vector<DeviceSlot> devices_;  // counters GUARDED_BY(mu_); `info` fixed at construction
  std::unordered_map<uint64_t, std::shared_ptr<Lease>> leases_;  // GUARDED_BY(mu_)
  std::map<std::string, TenantUsage, std::less<>> tenants_;      // GUARDED_BY(mu_)
  std::map<IdemKey, uint64_t> idempotency_;                      // GUARDED_BY(mu_); 0 = pending
  std::map<uint64_t, Tombstone> tombstones_;                     // GUARDED_BY(mu_), bounded
  uint64_t next_lease_id_;                                       // GUARDED_BY(mu_)
  bool shutting_down_ = false;                                   // GUARDED_BY(mu_)
  std::set<uint64_t> live_connections_;                          // GUARDED_BY(mu_)
  std::atomic<bool> shutting_down_flag_{false};  // shutting_down_, readable without mu_
  std::atomic<int64_t> ops_in_progress_{0};      // requests handed to handle() and not yet answered

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;  // GUARDED_BY(reaper_mu_)
  std::thread reaper_;
};

[[nodiscard]] uint64_t now_unix_ms();

}  // namespace gpulease::server
