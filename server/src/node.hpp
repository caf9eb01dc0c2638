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
#include "leases/admission.hpp"
#include "leases/tombstones.hpp"
#include "metrics.hpp"

namespace gpulease::server {

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

  // True when exactly these token bytes have had their signature verified
  // (in the signature cache): verify_token() would run no Ed25519 check.
  // Counts nothing. Thread-safe.
  [[nodiscard]] bool token_signature_cached(wire::ByteSpan token);
  // Ed25519 token signature checks run so far. Thread-safe.
  [[nodiscard]] uint64_t token_signature_checks() const;

  // Connection bookkeeping: a release-on-disconnect lease is published only
  // while its connection is open, and ends when it closes.
  void connection_opened(uint64_t conn_id);
  void connection_closed(uint64_t conn_id);

  // Ends every lease (reason shutdown): running kernels stop within a slice
  // and ops still queued on a lease are answered LEASE_EXPIRED; waits until
  // their contexts are destroyed and (up to `ops_wait`) until every request
  // that entered the node is answered; stops the reaper and the device
  // pool. Idempotent.
  void shutdown(std::chrono::milliseconds ops_wait = std::chrono::seconds(30));

  // Re-reads the revocation file (SIGHUP).
  [[nodiscard]] Result<void> reload_revocations();

  // Where MEM_READ replies get their buffers (the network layer's pool).
  // REQUIRES: called before the first lease exists (the Server does it at
  // construction).
  void set_buffer_source(BufferSource take) { take_buffer_ = std::move(take); }

  [[nodiscard]] Metrics& metrics() noexcept { return metrics_; }
  [[nodiscard]] const NodeConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] std::string_view backend_name() const { return backend_->name(); }
  [[nodiscard]] size_t active_leases() const;
  // Each device's inventory and the bytes a new lease could take on it now
  // (what HELLO reports; the fleet record publishes it).
  [[nodiscard]] std::vector<std::pair<DeviceInfo, uint64_t>> device_room() const {
    return admission_->device_room();
  }
  [[nodiscard]] capability::KeyRing& key_ring() noexcept { return verifier_->key_ring(); }
  [[nodiscard]] capability::RevocationSet& revocations() noexcept {
    return verifier_->revocations();
  }

 private:
  using IdemKey = std::pair<std::string, wire::IdempotencyKey>;
  // What an idempotency key was first used with.
  struct IdemParams {
    uint64_t min_vram = 0;
    uint32_t ttl_s = 0;
    uint16_t device = 0;
    wire::Exclusivity exclusivity = wire::Exclusivity::kShared;
    uint8_t flags = 0;
    static IdemParams of(const wire::LeaseAcquireRequest& r) {
      return {r.min_vram, r.ttl_s, r.device, r.exclusivity, r.flags};
    }
    bool operator==(const IdemParams&) const = default;
  };
  struct IdemEntry {
    uint64_t lease_id = 0;  // 0 while the acquire is in progress
    IdemParams params;
  };

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
  BufferSource take_buffer_;  // set once, before any lease
  asio::thread_pool device_pool_;

  std::unique_ptr<Admission> admission_;  // devices' and tenants' bytes (its own lock)

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Lease>> leases_;  // GUARDED_BY(mu_)
  std::map<IdemKey, IdemEntry> idempotency_;                     // GUARDED_BY(mu_)
  Tombstones tombstones_;  // GUARDED_BY(mu_): ended leases, bounded per tenant and in total
  std::set<uint64_t> pending_ids_;               // GUARDED_BY(mu_): drawn, context being created
  bool shutting_down_ = false;                   // GUARDED_BY(mu_)
  std::set<uint64_t> live_connections_;          // GUARDED_BY(mu_)
  std::atomic<bool> shutting_down_flag_{false};  // shutting_down_, readable without mu_
  std::atomic<int64_t> ops_in_progress_{0};      // requests handed to handle() and not yet answered

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;  // GUARDED_BY(reaper_mu_)
  std::thread reaper_;
};

[[nodiscard]] uint64_t now_unix_ms();

}  // namespace gpulease::server
