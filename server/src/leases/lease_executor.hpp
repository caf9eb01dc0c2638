// A lease's executor: the one owner of its device context, its buffer and
// module tables, its replay window and its strand (the serial executor on
// the device pool that runs its ops in arrival order). One short method per
// session op; each either answers at once or hands the backend a completion,
// so no device-pool thread ever waits for a kernel.
//
// THREAD SAFETY: every method but post(), end() and after_queued() runs
// "on the strand": on a strand task, or inline on post()'s caller, and always
// with run_mu_ held, so one op of a lease runs at a time and sees every
// earlier op's effects. post(), end() and after_queued() may be called from
// any thread. post() runs an op (see runs_inline()) on the caller's
// thread when nothing of the lease is queued or running on the strand, so
// the op keeps its place in the lease's order without a thread hop; the
// backend still orders it after the lease's launches (stream order).
#pragma once

#include <asio/strand.hpp>
#include <asio/thread_pool.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "config.hpp"
#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"
#include "leases/lent_bytes.hpp"
#include "metrics.hpp"

namespace gpulease::server {

struct Lease;

using DeviceStrand = asio::strand<asio::thread_pool::executor_type>;

// A reply's payload (the encoded reply message, or a UTF-8 message when the
// status is not OK): `bytes`, or device memory lent to the reply (`lent`,
// a zero-copy MEM_READ; leases/lent_bytes.hpp). `hashed`, when set, is the
// header, checksum included, that a producer computed while it made the
// bytes (wire::PayloadChecksum: a MEM_READ reply is hashed as it is copied
// or lent); the connection sends that checksum when its reply header is
// exactly that header, and computes the checksum itself otherwise.
struct ReplyPayload {
  ReplyPayload(wire::Bytes b) : bytes(std::move(b)) {}  // NOLINT(google-explicit-constructor)
  ReplyPayload(wire::Bytes b, const wire::FrameHeader& hashed_header)
      : bytes(std::move(b)), hashed(hashed_header) {}
  ReplyPayload(std::shared_ptr<LentBytes> l, const wire::FrameHeader& hashed_header)
      : lent(std::move(l)), hashed(hashed_header) {}
  [[nodiscard]] size_t size() const { return lent ? lent->size() : bytes.size(); }
  wire::Bytes bytes;
  std::shared_ptr<LentBytes> lent;
  std::optional<wire::FrameHeader> hashed;
};

// Called exactly once per request with the reply's status and payload. May
// be called on any thread.
using ReplyFn = std::function<void(wire::Status, ReplyPayload)>;

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

// A buffer for a reply of n bytes: size >= n, or empty with room for n
// (e.g. recycled by the network layer, so a bulk MEM_READ does not fault in
// fresh pages for every chunk). Empty function: a new vector each time.
using BufferSource = std::function<wire::Bytes(size_t)>;

// What an executor needs from the node; outlives every lease.
struct ExecutorEnv {
  const NodeConfig& cfg;
  Metrics& metrics;
  const BufferSource& take_buffer;
};

class LeaseExecutor {
 public:
  // `lease` owns this executor. `device` is the lease's device inventory
  // (fixed for the node's life).
  LeaseExecutor(Lease& lease, ExecutorEnv env, const DeviceInfo& device, DeviceStrand strand,
                std::unique_ptr<DeviceContext> ctx);
  LeaseExecutor(const LeaseExecutor&) = delete;
  LeaseExecutor& operator=(const LeaseExecutor&) = delete;
  ~LeaseExecutor();

  // Runs a session op (0x0601-0x0608) or GPU_SUBMIT in the lease's order:
  // inline when it is short and nothing of the lease is queued ahead of it,
  // else queued on the strand. `body` holds the frame's token and payload;
  // the payload starts at `payload_offset`. `reply` may be called before
  // post() returns.
  void post(const wire::FrameHeader& h, std::shared_ptr<wire::Bytes> body, size_t payload_offset,
            ReplyFn reply);

  // The lease has ended: on the strand, after the ops queued before, its
  // context is destroyed (its running launch stops within a slice, what the
  // backend still had queued is answered LEASE_EXPIRED) and its tables
  // cleared; then `done`. Ops posted later find no context: LEASE_EXPIRED.
  void end(std::function<void()> done);

  // Runs `fn` on the strand after everything queued so far.
  void after_queued(std::function<void()> fn);

  // Ops that may run on post()'s caller (a network thread): no PTX to parse
  // or compile, the backend never blocks them on device work, and a copy
  // moves at most kInlineCopyBytes (a larger one would hold the network
  // thread, and every connection it serves, for the whole copy).
  static constexpr size_t kInlineCopyBytes = 256u << 10;
  static bool runs_inline(const wire::FrameHeader& h, wire::ByteSpan payload);
  // MEM_READ replies from this size on are lent the device's bytes when the
  // backend can (leases/lent_bytes.hpp), else hashed while they are copied
  // out of device memory (one pass over the bytes); smaller ones are copied
  // and hashed when sent.
  static constexpr uint32_t kHashWhileCopyingBytes = 64u << 10;
  // Ops that may change device memory a loan shows, or end its life: every
  // loan out is revoked before one of them runs.
  static bool changes_lent_memory(wire::Opcode op);

 private:
  struct Op {
    wire::FrameHeader h;
    wire::ByteSpan payload;
    std::shared_ptr<wire::Bytes> body;  // keeps `payload` alive
    ReplyFn reply;
  };
  // Queues `fn` on the strand; it runs with run_mu_ held.
  void defer(std::function<void()> fn);
  void run(const Op& op);
  void mem_alloc(const Op& op);
  void mem_free(const Op& op);
  void mem_write(const Op& op);
  void mem_read(const Op& op);
  void module_load(const Op& op);
  void module_unload(const Op& op);
  void launch(const Op& op);
  void sync(const Op& op);
  void gpu_submit(const Op& op);
  void module_global(const Op& op);
  void run_submit(wire::GpuSubmitRequest req, ReplyFn reply);
  // Copies out every loan still out (REQUIRES: run_mu_ held, or no other
  // thread left).
  void revoke_loans();
  // True while a reply lent the device's bytes is unsent (REQUIRES: run_mu_).
  bool loans_out();

  Lease& lease_;
  ExecutorEnv env_;
  const DeviceInfo& device_;
  DeviceStrand strand_;
  // Held by whoever runs an op of the lease (a strand task, or post()'s
  // caller inline); strand tasks not yet finished. An op runs inline only
  // when it takes run_mu_ at once and nothing is queued.
  std::mutex run_mu_;
  std::atomic<uint32_t> queued_{0};
  // STRAND: the one source of truth for what the lease holds.
  std::unique_ptr<DeviceContext> ctx_;
  std::map<uint64_t, uint64_t> buffers_;  // device address -> size
  std::map<uint64_t, uint64_t> modules_;  // module handle -> bytes charged to the quota
  // Module variables handed out by MODULE_GLOBAL: device address -> where it
  // lives. MEM_WRITE, MEM_READ and typed BUFFER arguments accept these
  // handles as well as buffers; unloading the module removes its entries.
  struct Variable {
    uint64_t module = 0;
    uint64_t size = 0;
  };
  std::map<uint64_t, Variable> globals_;
  // A MEM_ALLOC buffer or a MODULE_GLOBAL variable of this lease: its
  // device address and size; nullopt for anything else.
  struct Region {
    uint64_t addr = 0;
    uint64_t size = 0;
  };
  std::optional<Region> region(uint64_t handle) const;
  ReplayWindow replay_;
  uint64_t launches_ = 0;
  // Device bytes lent to MEM_READ replies not yet sent (run_mu_; a loan
  // whose reply has gone is forgotten by loans_out()).
  std::vector<std::weak_ptr<LentBytes>> loans_;
};

}  // namespace gpulease::server
