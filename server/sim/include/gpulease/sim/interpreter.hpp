// Executes a decoded kernel (ptx_module.hpp) over a launch's grid.
//
// Execution model: a launch is a set of blocks; any number of workers may
// call run_blocks() on disjoint block ranges of one Launch at the same time.
// Within a block, threads run one after another on the calling worker: each
// runs until it reaches bar.sync or exits, then the next; when every live
// thread has arrived the barrier opens and the round repeats. Threads that
// have exited count as arrived (as on sm_70+ hardware for whole warps).
// Kernels without a barrier run each thread start to finish.
//
// Memory safety: every global access is checked against the launch's
// GlobalMemory (the context's live allocations when the launch was queued)
// for bounds and natural alignment; shared, local and param accesses against
// their own buffers. The first violation faults the launch: the other
// workers stop at their next budget check, and Launch::fault() names the
// address, access, kernel, line, block and thread. Global accesses use
// relaxed atomic loads and stores, so racy tenant kernels are still
// well-defined C++ on the node.
//
// Budget: a launch may execute at most `budget` instructions (guarded-off
// instructions count too) over all its threads; past that it is stopped and
// faulted with "instruction budget exceeded". Setup is charged to the same
// budget: each thread costs max(1, (registers * 8 + .local bytes) / 64) before
// its first instruction and each block shared bytes / 64, so the budget
// bounds CPU time however the launch is shaped.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpulease/sim/ptx_module.hpp"

namespace gpulease::sim {

class BlockRunner;

struct GlobalRange {
  uint64_t base = 0;
  uint64_t size = 0;
  std::byte* data = nullptr;
};

// An append-only table of ranges in increasing address order, with storage
// that never moves: appending leaves the entries before it untouched, so
// snapshots of its first N entries stay valid (and lock-free to read) while
// the owner appends. A snapshot then costs O(1), not a copy of the table.
class RangeTable {
 public:
  explicit RangeTable(size_t capacity);
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // REQUIRES: size() < capacity(); r.base above every earlier range. Only
  // the owner appends; readers look at entries below their snapshot's count.
  void append(const GlobalRange& r, std::shared_ptr<std::byte> owner);
  const GlobalRange& operator[](size_t i) const { return chunks_[i / kChunk][i % kChunk]; }

 private:
  static constexpr size_t kChunk = 1024;
  size_t capacity_ = 0;
  size_t size_ = 0;
  std::unique_ptr<std::unique_ptr<GlobalRange[]>[]> chunks_;
  std::vector<std::shared_ptr<std::byte>> owners_;  // keep the buffers alive
};

// A snapshot of a context's allocations, sorted by base. Immutable once
// published, so workers read it without locks; the owner keeps the buffers
// alive for as long as any launch holds the snapshot. Either `ranges` or
// the first `table_count` entries of `table`.
struct GlobalMemory {
  std::vector<GlobalRange> ranges;
  std::vector<std::shared_ptr<std::byte>> owners;  // keep the buffers alive
  std::shared_ptr<const RangeTable> table;
  size_t table_count = 0;
  const GlobalRange* find(uint64_t addr, uint64_t len) const;
};

class Launch {
 public:
  // REQUIRES: `kernel` belongs to `module`; params.size() == kernel->param_bytes;
  // dimensions already validated (validate_launch).
  Launch(std::shared_ptr<const Module> module, const Kernel* kernel, std::array<uint32_t, 3> grid,
         std::array<uint32_t, 3> block, uint32_t dynamic_shared, std::vector<std::byte> params,
         std::shared_ptr<const GlobalMemory> memory, uint64_t budget);

  ~Launch();
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  uint64_t total_blocks() const { return total_blocks_; }
  const Kernel& kernel() const { return *kernel_; }

  // Runs blocks [first, first + count). THREAD SAFETY: callable concurrently
  // on disjoint ranges. Returns early once the launch is stopped.
  void run_blocks(uint64_t first, uint64_t count);

  // Runs this launch on the calling thread for at most about
  // `max_instructions` more instructions, resuming exactly where the previous
  // slice stopped (mid-block and mid-thread too). Returns true once the
  // launch finished, faulted or was cancelled (and from then on). A slice
  // makes progress whenever max_instructions > 0: setting up a block (its
  // setup charge, see Budget above) is done whole, so a slice that starts a
  // block may overrun by that block's setup charge.
  // Instructions are counted as the budget counts them; instructions()
  // is exact after each call. THREAD SAFETY: one caller at a time; not mixed
  // with run_blocks on the same Launch. cancel() may be called from any
  // thread; the next slice then returns true.
  bool run_slice(uint64_t max_instructions);

  // Stops the launch (its remaining blocks are skipped) without a fault.
  void cancel() { stop_.store(true, std::memory_order_relaxed); }
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }

  // Empty when no fault. Only meaningful once every run_blocks call returned.
  std::string fault() const;
  // Instructions executed so far, setup charges included (exact once every
  // run_blocks call returned).
  uint64_t instructions() const { return executed_.load(std::memory_order_relaxed); }

 private:
  friend class BlockRunner;
  void set_fault(std::string msg);
  // Claims up to `want` instructions of budget; 0 when exhausted or stopped.
  uint64_t claim_fuel(uint64_t want);

  std::shared_ptr<const Module> module_;
  const Kernel* kernel_;
  std::array<uint32_t, 3> grid_;
  std::array<uint32_t, 3> block_;
  uint32_t dynamic_shared_;
  std::vector<std::byte> params_;
  std::shared_ptr<const GlobalMemory> memory_;
  uint64_t budget_;
  uint64_t total_blocks_;
  std::atomic<uint64_t> claimed_{0};
  std::atomic<uint64_t> executed_{0};
  std::atomic<bool> stop_{false};
  mutable std::mutex fault_mu_;
  std::string fault_;
  // run_slice state: the runner holding the block in progress.
  std::unique_ptr<BlockRunner> slice_runner_;
  uint64_t slice_next_block_ = 0;
  bool slice_in_block_ = false;
  bool slice_done_ = false;
  std::mutex runners_mu_;
  std::vector<std::unique_ptr<BlockRunner>> runners_;  // idle, reused by run_blocks
};

struct LaunchLimits {
  uint32_t max_threads_per_block = 1024;
  std::array<uint32_t, 3> max_block{1024, 1024, 64};
  std::array<uint32_t, 3> max_grid{0x7fffffff, 65535, 65535};
  uint32_t max_shared_per_block = 48 * 1024;
  uint64_t max_block_state_bytes = 64u << 20;  // registers + local memory of one block
  uint64_t max_thread_state_bytes = 1u << 20;  // registers + local memory of one thread
};

// Checks dimensions, shared memory and per-block state against the limits.
// LAUNCH_FAILED with a message naming the problem.
[[nodiscard]] Result<void> validate_launch(const Kernel& k, std::array<uint32_t, 3> grid,
                                           std::array<uint32_t, 3> block, uint32_t dynamic_shared,
                                           const LaunchLimits& limits);

}  // namespace gpulease::sim
