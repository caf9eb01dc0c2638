// The `sim` device backend: host memory plus the PTX interpreter, so the
// node runs tenants' PTX with no GPU (docs/PTX_SUBSET.md).
//
//   auto backend = gpulease::sim::make_sim_backend({});   // 1 device, 8 GiB
//   auto ctx = backend->create_context(0, {}).value();
//   ctx->module_load(...); ctx->mem_alloc(...); ctx->launch(...); ctx->sync(done);
//
// Device addresses are virtual (from 0x7f00'0000'0000 up, per context, with
// unmapped guard gaps between allocations); every access a kernel makes is
// checked against its context's live allocations, so a tenant can reach
// neither another tenant's buffers nor the node's memory. A fault (illegal
// or misaligned address, instruction budget) poisons the context: sync()
// reports SYNC_FAILED naming the kernel and cause, faulted() turns true, and
// other contexts are unaffected.
//
// Launches run on one worker pool per backend (bounded threads shared by all
// contexts, blocks of different leases interleaved fairly); launch() returns
// once the launch is queued, sync() calls back from a worker.
//
// THREAD SAFETY: sync's `done` runs on a pool worker. It must not block on
// device work nor destroy its context synchronously (post that to the
// lease's executor instead): the worker it runs on may be needed to finish
// the context's remaining launches.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/sim/interpreter.hpp"
#include "gpulease/sim/ptx_module.hpp"

namespace gpulease::sim {

struct SimDeviceConfig {
  std::string name = "gpulease sim device";
  uint64_t total_bytes = uint64_t{8} << 30;
};

struct SimConfig {
  std::vector<SimDeviceConfig> devices{SimDeviceConfig{}};
  // Worker threads that execute launches; 0 = std::thread::hardware_concurrency().
  uint32_t worker_threads = 0;
  // How many nice levels (Linux, per thread) the workers run below the
  // node's other threads (capped at nice 19): a network thread woken by a
  // request then preempts a worker at once instead of waiting for its time
  // slice to end.
  int worker_nice = 10;
  // Device memory each context costs beyond its allocations (counted against
  // the device, reported by context_overhead_bytes()).
  uint64_t context_overhead_bytes = uint64_t{2} << 20;
  // Instructions one launch may execute when ContextOptions::instruction_budget
  // is 0: 2^32, about ten seconds to a minute of one core. A tenant's
  // infinite loop is stopped after that and reported at sync.
  uint64_t default_instruction_budget = uint64_t{1} << 32;
  // Instructions a launch runs before the worker moves on to the next
  // lease's work (round-robin), once the interpreter runs launches in
  // resumable slices: one tenant's kernel delays another's by at most this.
  uint64_t slice_instructions = uint64_t{1} << 18;
  // Launches one context may have queued or running; past it launch() is
  // LAUNCH_FAILED until a sync (each holds up to 32 KiB of parameters).
  uint32_t max_queued_launches = 1024;
  // Live allocations per context; past it mem_alloc() is ALLOC_FAILED.
  uint32_t max_allocations = 65536;
  // Host memory the launches queued on one context may hold besides its
  // allocations: their parameters and the memory-table snapshots rebuilt
  // after a free (each up to 40 bytes per live allocation). Past it launch()
  // is LAUNCH_FAILED until earlier launches finish (one launch is always
  // admitted when none is queued). Covered by context_overhead_bytes.
  uint64_t max_queued_launch_bytes = uint64_t{2} << 20;
  // Host memory one block of a launch may hold (registers, .local, shared)
  // beyond the lease's quota and context overhead. A GPU keeps registers
  // and local memory outside the lease's allocations too, and nvcc's PTX
  // declares hundreds of registers for ordinary kernels (a 1024-thread
  // block of one with 2000 registers needs 16 MiB here), so the allowance
  // lets those run on a small lease while a block of 60 KiB of .local per
  // thread (61 MiB) is still refused.
  uint64_t block_state_allowance = uint64_t{16} << 20;
  // Each allocation is charged at least this much against the lease quota
  // and the device, so tiny allocations pay for their host bookkeeping
  // (about 200 bytes each in the sim).
  uint64_t min_allocation_charge = 256;
  LaunchLimits launch_limits{};
  LoadLimits load_limits{};
};

[[nodiscard]] std::unique_ptr<server::DeviceBackend> make_sim_backend(const SimConfig& config = {});

}  // namespace gpulease::sim
