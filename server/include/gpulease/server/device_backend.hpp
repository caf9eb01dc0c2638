// The device backend interface implemented by the `sim` and `cuda` backends.
//
// The node (server/) owns leases, quotas, allocation and module tables and
// checks every handle and range from the wire before calling a backend. A
// backend is told only validated requests; it still never trusts device
// addresses produced by kernels (the sim backend checks every access, the
// cuda backend relies on per-context address spaces).
//
// THREAD SAFETY: DeviceBackend methods may be called from any thread.
// A DeviceContext is used by exactly one serial executor (the lease's): its
// methods are never called concurrently, so implementations need no locking
// for their own state, except for work they hand to threads of their own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpulease/wire/result.hpp"

namespace gpulease::server {

struct DeviceInfo {
  uint16_t index = 0;
  std::string name;
  std::array<uint8_t, 16> uuid{};
  uint8_t cc_major = 0;
  uint8_t cc_minor = 0;
  uint32_t sm_count = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // as reported by the device now
  uint32_t max_threads_per_block = 1024;
  std::array<uint32_t, 3> max_block{1024, 1024, 64};
  std::array<uint32_t, 3> max_grid{0x7fffffff, 65535, 65535};
  uint32_t max_shared_per_block = 48 * 1024;  // dynamic + static, bytes
};

enum class ImageKind : uint8_t { kPtx = 0, kCubin = 1, kFatbin = 2 };

struct ContextOptions {
  uint64_t quota_bytes = 0;         // the lease's VRAM quota (the node enforces it too)
  uint64_t instruction_budget = 0;  // sim: per launch; 0 = backend default
  uint32_t watchdog_ms = 0;         // cuda: a launch running longer faults the lease; 0 = off
  bool session_exclusive = false;   // ask for a private SM partition (may be Unsupported)
};

// Where a module-scope variable lives.
enum class VariableSpace : uint8_t {
  kGlobal = 0,   // .global (CUDA __device__): kernels may read and write it
  kConst = 1,    // .const (CUDA __constant__): read-only to kernels
  kUnknown = 2,  // the backend cannot tell (cuda with a cubin or fatbin image)
};

// A loaded module's module-scope variable (what cuModuleGetGlobal returns).
struct ModuleVariable {
  uint64_t address = 0;  // device address; nonzero
  uint64_t size = 0;     // bytes
  VariableSpace space = VariableSpace::kGlobal;
};

// One kernel launch, already validated against the node's limits. Each
// argument is the exact bytes of one kernel parameter (typed buffer arguments
// have been resolved by the node to 8-byte little-endian device addresses).
struct LaunchRequest {
  uint64_t module = 0;
  std::string kernel;
  std::array<uint32_t, 3> grid{1, 1, 1};
  std::array<uint32_t, 3> block{1, 1, 1};
  uint32_t shared_bytes = 0;
  std::vector<std::vector<std::byte>> args;
};

// A lease's private context on one device: its memory, modules and stream.
// Destroying it frees everything it holds (memory, modules, stream, context),
// waiting for queued work to finish or be abandoned first.
class DeviceContext {
 public:
  virtual ~DeviceContext() = default;
  DeviceContext() = default;
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  // Returns the device address of a new buffer of `bytes` bytes (> 0).
  // ALLOC_FAILED when the device has no room.
  virtual Result<uint64_t> mem_alloc(uint64_t bytes) = 0;
  // Memory ops complete asynchronously: `done` is called exactly once with
  // the result, on the caller's thread when nothing is queued before the op
  // (possibly before the call returns) or on a backend thread once every
  // earlier launch finished (stream order). No implementation blocks its
  // caller on device work. When the context is destroyed first, `done` gets
  // LEASE_EXPIRED; after a fault, LEASE_FAULTED.
  using Completion = std::function<void(Result<void>)>;

  // Memory ranges: the mem_*_async ops below accept a range inside one live
  // allocation (mem_alloc) or inside one variable of a loaded module
  // (module_global), .const variables included: the host may write those.

  // REQUIRES: addr was returned by mem_alloc of this context and not freed.
  // The buffer is gone for every later op at once; its memory is released
  // once earlier launches no longer use it.
  virtual void mem_free_async(uint64_t addr, Completion done) = 0;
  // REQUIRES: [addr, addr+data.size()) lies inside one live allocation or
  // module variable, and
  // `data` stays valid until `done` is called. Ordered after every earlier
  // launch.
  virtual void mem_write_async(uint64_t addr, std::span<const std::byte> data, Completion done) = 0;
  // REQUIRES: [addr, addr+out.size()) lies inside one live allocation or
  // module variable, and
  // `out` stays valid until `done` is called. Ordered after every earlier
  // launch: reads see their results.
  virtual void mem_read_async(uint64_t addr, std::span<std::byte> out, Completion done) = 0;
  // As mem_read_async, and every byte read is also passed to `seen`, in
  // order and before `done` is called, so a caller can hash a reply while it
  // is copied instead of in a second pass over it. `seen` is called on the
  // thread that copies. The default passes `out` in one piece once the read
  // is done; a backend that copies on the host passes each piece as it
  // lands, while it is still in cache.
  using ByteSink = std::function<void(std::span<const std::byte>)>;
  virtual void mem_read_seen_async(uint64_t addr, std::span<std::byte> out, ByteSink seen,
                                   Completion done) {
    mem_read_async(addr, out,
                   [out, seen = std::move(seen), done = std::move(done)](Result<void> r) {
                     if (r) seen(out);
                     done(std::move(r));
                   });
  }

  // Device memory the host reads in place (a zero-copy MEM_READ reply):
  // `bytes` stay readable while `keep` lives, even after the range is freed
  // or the context destroyed.
  struct HostView {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> keep;
  };
  // A view of [addr, addr+len) when this context's stream is idle (every op
  // queued before has finished), so the bytes are what a read queued now
  // would copy; nullopt when the backend's memory is not host-visible
  // (cuda) or work is still queued (then mem_read_async is the way).
  // REQUIRES: the range lies inside one live allocation or module variable.
  // The caller keeps every later op that may write device memory (a write,
  // a launch) from running while it reads the view: the backend does not.
  virtual std::optional<HostView> try_view(uint64_t addr, uint64_t len) {
    (void)addr;
    (void)len;
    return std::nullopt;
  }

  // Blocking forms for tests and tools: wait for the completion. Never call
  // them on a thread the backend needs to complete the op (a device-pool or
  // backend thread).
  Result<void> mem_free(uint64_t addr) {
    return wait([&](Completion d) { mem_free_async(addr, std::move(d)); });
  }
  Result<void> mem_write(uint64_t addr, std::span<const std::byte> data) {
    return wait([&](Completion d) { mem_write_async(addr, data, std::move(d)); });
  }
  Result<void> mem_read(uint64_t addr, std::span<std::byte> out) {
    return wait([&](Completion d) { mem_read_async(addr, out, std::move(d)); });
  }

  // Loads a module image; returns a backend module handle (nonzero).
  // LOAD_FAILED with the loader's log on a bad image.
  virtual Result<uint64_t> module_load(ImageKind kind, std::span<const std::byte> image) = 0;
  // REQUIRES: module is a live handle of this context.
  virtual Result<void> module_unload(uint64_t module) = 0;
  // Memory a loaded module holds in this backend (its decoded or JIT-compiled
  // form), which the node charges to the lease's quota; 0 when the backend
  // cannot tell. REQUIRES: module is a live handle of this context.
  virtual uint64_t module_bytes(uint64_t module) const {
    (void)module;
    return 0;
  }

  // The module-scope variable `name` of a loaded module (cuModuleGetGlobal):
  // its address stays valid for the mem_*_async ops and for kernels until
  // the module is unloaded. INVALID_ARGUMENT when the module has no variable
  // of that name. REQUIRES: module is a live handle of this context.
  virtual Result<ModuleVariable> module_global(uint64_t module, std::string_view name) = 0;

  // Checks the kernel exists in the module and the arguments match its
  // parameters (count and sizes, where the backend can know them), then
  // queues the launch and returns without waiting for it: LAUNCH_FAILED
  // when the launch cannot be queued.
  virtual Result<void> launch(const LaunchRequest& req) = 0;

  // Calls `done` once every launch queued before this call has finished:
  // OK, or SYNC_FAILED naming the first fault (kernel and cause). May call
  // `done` on another thread, and must not block the caller on device work.
  virtual void sync(std::function<void(Result<void>)> done) = 0;

  // True once a fault has poisoned the context (illegal address, watchdog):
  // the node then answers LEASE_FAULTED to every op but query and release.
  virtual bool faulted() const = 0;

 private:
  template <typename Start>
  static Result<void> wait(Start&& start) {
    auto p = std::make_shared<std::promise<Result<void>>>();
    auto f = p->get_future();
    start([p](Result<void> r) { p->set_value(std::move(r)); });
    return f.get();
  }
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual std::string_view name() const = 0;  // "sim" or "cuda"
  // Inventory, refreshed (free memory) on each call.
  virtual std::vector<DeviceInfo> devices() = 0;
  // Bytes one lease's context costs on `device` beyond its quota (counted in
  // admission so the node never oversubscribes a card).
  virtual uint64_t context_overhead_bytes(uint16_t device) const = 0;
  // Creates a lease's context on `device`. CAPACITY_EXCEEDED or UNSUPPORTED
  // (e.g. session_exclusive without backend support) on failure.
  virtual Result<std::unique_ptr<DeviceContext>> create_context(uint16_t device,
                                                                const ContextOptions& opts) = 0;
};

}  // namespace gpulease::server
