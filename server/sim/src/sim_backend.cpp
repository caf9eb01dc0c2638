// SimBackend, its contexts, and the worker pool that runs their launches.
//
// Ownership and lifetimes:
//   SimBackend ──shared──> WorkerPool, DeviceState (one per device)
//   SimContext ──shared──> WorkerPool, DeviceState, ContextCore
//   pool task  ──shared──> ContextCore, Launch
// A context's destructor cancels its queued work and waits until no launch
// of it runs, so the pool never touches a dead context; the pool is only
// released from a context or backend destructor, never from a worker thread.
#include "gpulease/sim/sim_backend.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace gpulease::sim {
namespace {

using server::ContextOptions;
using server::DeviceContext;
using server::DeviceInfo;
using server::ImageKind;
using server::LaunchRequest;
using server::ModuleVariable;
using server::VariableSpace;

// Device addresses: each context gets a 1 TiB window above kGlobalBase
// (window index = context sequence number mod 256); allocations are 256-byte
// aligned and separated by at least kGuardBytes of unmapped space, so a small
// overrun faults instead of landing in a neighbour.
constexpr uint64_t kGlobalBase = 0x7f00'0000'0000ull;
constexpr uint64_t kContextWindow = uint64_t{1} << 40;
constexpr uint64_t kGuardBytes = 64u << 10;
constexpr uint64_t kAllocAlign = 256;

struct DeviceState {
  DeviceInfo info;
  std::mutex mu;
  uint64_t used = 0;  // allocations and context overheads, bytes

  bool reserve(uint64_t bytes) {
    std::lock_guard<std::mutex> lk(mu);
    if (bytes > info.total_bytes - used) return false;
    used += bytes;
    return true;
  }
  void release(uint64_t bytes) {
    std::lock_guard<std::mutex> lk(mu);
    used -= std::min(used, bytes);
  }
};

class ContextCore;

using Done = std::function<void(Result<void>)>;

// Runs a bounded piece of a launch. With Launch::run_slice (resumable, one
// caller at a time) a piece is `slice` instructions of the whole launch;
// without it, a chunk of whole blocks. Returns true once the launch is done.
template <typename L>
bool run_piece(L& l, uint64_t slice, uint64_t first, uint64_t count) {
  if constexpr (requires {
                  { l.run_slice(slice) } -> std::same_as<bool>;
                }) {
    (void)first;
    (void)count;
    return l.run_slice(slice);
  } else {
    (void)slice;
    l.run_blocks(first, count);
    return false;  // block mode: the pool counts the blocks
  }
}
template <typename L>
constexpr bool has_run_slice() {
  return requires(L & l) {
    l.run_slice(uint64_t{});
  };
}

// One launch in the pool. Guarded by the pool's mutex.
struct Task {
  std::shared_ptr<ContextCore> core;
  std::shared_ptr<Launch> launch;
  uint64_t seq = 0;
  uint64_t next_block = 0;  // block mode
  uint32_t active = 0;
  bool all_claimed = false;
};

// A fixed set of threads shared by all contexts of a backend. A launch runs
// one bounded piece (a slice of instructions, or a chunk of blocks) and then
// goes to the back of the queue, so leases take turns round-robin and one
// tenant's kernel delays another's work by at most a piece. A ticker thread
// enforces each context's watchdog by cancelling an overdue launch.
class WorkerPool {
 public:
  WorkerPool(uint32_t n, uint64_t slice, int nice) : slice_(slice) {
    if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
    workers_ = n;
    for (uint32_t i = 0; i < n; ++i) {
      threads_.emplace_back([this, nice] {
        // Interpreting kernels is background compute: at a lower priority
        // than the node's network and device-pool threads, which then
        // preempt it as soon as a request arrives (a victim's small op is
        // not kept waiting behind other tenants' spinning kernels).
        pthread_setname_np(pthread_self(), "sim-worker");
        if (nice != 0) {
          const auto self = static_cast<id_t>(gettid());
          errno = 0;
          const int base = getpriority(PRIO_PROCESS, self);  // inherited
          if (errno == 0) (void)setpriority(PRIO_PROCESS, self, std::min(base + nice, 19));
        }
        loop();
      });
    }
    ticker_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "sim-ticker");
      tick_loop();
    });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    tick_cv_.notify_all();
    for (auto& t : threads_) t.join();
    ticker_.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  uint32_t size() const { return workers_; }

  void submit(std::shared_ptr<Task> t) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(std::move(t));
    }
    cv_.notify_one();
  }

  // Contexts with a watchdog register while they run a launch.
  void watch(std::weak_ptr<ContextCore> c) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& w : watched_)
        if (!w.owner_before(c) && !c.owner_before(w)) return;  // already watched
      watched_.push_back(std::move(c));
    }
    tick_cv_.notify_all();
  }

 private:
  void loop();
  void tick_loop();

  const uint64_t slice_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable tick_cv_;
  std::deque<std::shared_ptr<Task>> queue_;
  std::vector<std::weak_ptr<ContextCore>> watched_;
  bool stopping_ = false;
  uint32_t workers_ = 0;
  std::vector<std::thread> threads_;
  std::thread ticker_;
};

// A context's stream: launches and host-side memory ops, in order. A host
// op runs as soon as everything before it finished: inline on the caller's
// thread when the stream is idle, else on the worker that finished the
// launch before it. Nothing ever waits for a kernel.
class ContextCore : public std::enable_shared_from_this<ContextCore> {
 public:
  ContextCore(WorkerPool* pool, uint32_t watchdog_ms) : pool_(pool), watchdog_ms_(watchdog_ms) {}

  // Queues a launch (and starts it when nothing of this context runs).
  void enqueue(std::shared_ptr<Launch> l) {
    auto it = std::make_shared<Item>();
    it->launch = std::move(l);
    push(std::move(it));
  }

  // Queues a host op: `run` executes in stream order (after every earlier
  // launch), then `done` gets its result. When an earlier launch faulted,
  // `done` gets LEASE_FAULTED instead; when the context closes first,
  // LEASE_EXPIRED. Either may run on the caller's thread or a worker.
  void enqueue_host(std::function<Result<void>()> run, Done done) {
    auto it = std::make_shared<Item>();
    it->run = std::move(run);
    it->done = std::move(done);
    push(std::move(it));
  }

  // Called by the worker that finished `t` (every piece of it returned).
  void finished(const Task& t) {
    std::unique_lock<std::mutex> lk(mu_);
    completed_ = t.seq;
    std::string f = t.launch->fault();
    if (f.empty() && t.launch->stopped()) {
      // Stopped without a fault of its own: the watchdog, or the lease ended.
      f = !watchdog_fault_.empty()
              ? watchdog_fault_
              : "launch of kernel " + t.launch->kernel().name + " cancelled: the lease ended";
      if (watchdog_fault_.empty()) cancelled_ = true;
    }
    if (!f.empty() && fault_.empty() && !cancelled_) fault_ = std::move(f);
    current_.reset();
    advance(lk);
  }

  // Nothing of the stream queued or running: every op enqueued so far is
  // done with device memory.
  bool idle() const {
    std::lock_guard<std::mutex> lk(mu_);
    return !running_ && queue_.empty();
  }

  // Launches queued or running, not yet finished.
  uint64_t pending() const {
    std::lock_guard<std::mutex> lk(mu_);
    return enqueued_ - completed_;
  }

  void sync(Done done) {
    Result<void> outcome;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (completed_ < enqueued_) {
        waiters_.emplace_back(enqueued_, std::move(done));
        return;
      }
      outcome = status_locked();
    }
    done(std::move(outcome));  // on the caller's thread, not a worker
  }

  // Cancels the running launch (it stops within a piece) and fails every
  // queued item: host ops LEASE_EXPIRED, pending syncs SYNC_FAILED naming
  // the cancellation. Waits until no worker runs anything of this context;
  // after it no worker touches the core and the pool is no longer used.
  void close() {
    std::vector<std::shared_ptr<Item>> dropped;
    std::vector<Done> orphans;
    {
      std::unique_lock<std::mutex> lk(mu_);
      closing_ = true;
      cancelled_ = true;
      for (auto& i : queue_) dropped.push_back(std::move(i));
      queue_.clear();
      if (current_) current_->cancel();
      // A callback that (against the contract) destroys its context from a
      // worker must not wait for its own delivery.
      const uint32_t own = tl_delivering == this ? 1 : 0;
      cv_.wait(lk, [&] { return !running_ && delivering_ <= own; });
      for (auto& w : waiters_) orphans.push_back(std::move(w.second));
      waiters_.clear();
      completed_ = enqueued_;
    }
    for (auto& i : dropped) {
      if (i->done) i->done(make_error(Status::kLeaseExpired, "lease ended before this op ran"));
    }
    for (auto& done : orphans)
      done(make_error(Status::kSyncFailed,
                      "launches cancelled: the lease ended before they finished"));
  }

  bool faulted() const {
    std::lock_guard<std::mutex> lk(mu_);
    return !fault_.empty();
  }
  std::string fault() const {
    std::lock_guard<std::mutex> lk(mu_);
    return fault_;
  }

  // Called by the pool's ticker: cancels the running launch once it has run
  // longer than the watchdog allows. Returns false once the core is idle.
  bool check_watchdog(std::chrono::steady_clock::time_point now) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!current_) return running_;
    if (watchdog_ms_ != 0 && watchdog_fault_.empty() &&
        now - started_ > std::chrono::milliseconds(watchdog_ms_)) {
      watchdog_fault_ = "watchdog: kernel '" + current_->kernel().name + "' ran longer than " +
                        std::to_string(watchdog_ms_) + " ms and was stopped";
      current_->cancel();
    }
    return true;
  }

 private:
  struct Item {
    std::shared_ptr<Launch> launch;     // a launch, or
    std::function<Result<void>()> run;  // a host op and its completion
    Done done;
    uint64_t seq = 0;
  };

  void push(std::shared_ptr<Item> it) {
    std::unique_lock<std::mutex> lk(mu_);
    if (it->launch) it->seq = ++enqueued_;
    queue_.push_back(std::move(it));
    if (!running_) advance(lk);
  }

  // Starts what is next in the stream: host ops run here (unlocked), the
  // next launch goes to the pool; delivers syncs that became due. Called
  // with the lock held; returns with it released.
  void advance(std::unique_lock<std::mutex>& lk) {
    running_ = true;
    for (;;) {
      if (!fault_.empty() || closing_) {
        // Launches queued after a fault are abandoned (as on a GPU context
        // with a sticky error); host ops still run (the node refuses every
        // op of a faulted lease itself). A closing context runs nothing.
        std::vector<std::shared_ptr<Item>> failed;
        for (auto it = queue_.begin(); it != queue_.end();) {
          if (!closing_ && !(*it)->launch) {
            ++it;
            continue;
          }
          if ((*it)->launch) completed_ = std::max(completed_, (*it)->seq);
          failed.push_back(std::move(*it));
          it = queue_.erase(it);
        }
        if (!failed.empty()) {
          const Error e = make_error(Status::kLeaseExpired, "lease ended before this op ran");
          ++delivering_;
          lk.unlock();
          for (auto& i : failed)
            if (i->done) i->done(e);
          failed.clear();
          lk.lock();
          --delivering_;
        }
      }
      if (queue_.empty()) break;
      auto next = std::move(queue_.front());
      queue_.pop_front();
      if (next->launch) {
        current_ = next->launch;
        started_ = std::chrono::steady_clock::now();
        auto t = std::make_shared<Task>();
        t->core = shared_from_this();
        t->launch = next->launch;
        t->seq = next->seq;
        deliver_due(lk);
        const bool watch = watchdog_ms_ != 0;
        WorkerPool* pool = pool_;
        lk.unlock();
        if (watch) pool->watch(weak_from_this());
        pool->submit(std::move(t));
        return;
      }
      ++delivering_;
      lk.unlock();
      Result<void> r = next->run();
      next->done(std::move(r));
      next.reset();
      lk.lock();
      --delivering_;
    }
    running_ = false;
    deliver_due(lk);
    cv_.notify_all();
    lk.unlock();
  }

  // Calls the sync callbacks that are due (every launch before them done).
  // Lock held on entry and on return.
  void deliver_due(std::unique_lock<std::mutex>& lk) {
    std::vector<Done> ready;
    auto itw = std::remove_if(waiters_.begin(), waiters_.end(), [&](auto& w) {
      if (w.first > completed_) return false;
      ready.push_back(std::move(w.second));
      return true;
    });
    waiters_.erase(itw, waiters_.end());
    if (ready.empty()) return;
    Result<void> outcome = status_locked();
    ++delivering_;
    lk.unlock();
    const ContextCore* const outer = tl_delivering;
    tl_delivering = this;
    for (auto& done : ready) done(outcome);
    tl_delivering = outer;
    ready.clear();
    lk.lock();
    --delivering_;
    cv_.notify_all();
  }

  static thread_local const ContextCore* tl_delivering;

  Result<void> status_locked() const {
    if (!fault_.empty()) return make_error(Status::kSyncFailed, fault_);
    if (cancelled_)
      return make_error(Status::kSyncFailed,
                        "launches cancelled: the lease ended before they finished");
    return {};
  }

  WorkerPool* pool_;  // valid until close(); owned by the SimContext
  const uint32_t watchdog_ms_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Item>> queue_;  // not yet started
  bool running_ = false;                     // a launch or host op of the stream is in progress
  bool closing_ = false;
  bool cancelled_ = false;   // a launch was stopped because the lease ended
  uint32_t delivering_ = 0;  // callbacks running right now (outside the lock)
  uint64_t enqueued_ = 0;    // launches, by sequence number
  uint64_t completed_ = 0;
  std::string fault_;
  std::string watchdog_fault_;
  std::vector<std::pair<uint64_t, Done>> waiters_;
  std::shared_ptr<Launch> current_;  // submitted to the pool, not finished
  std::chrono::steady_clock::time_point started_;
};

thread_local const ContextCore* ContextCore::tl_delivering = nullptr;

void WorkerPool::loop() {
  constexpr bool kSlices = has_run_slice<Launch>();
  for (;;) {
    std::shared_ptr<Task> t;
    uint64_t first = 0, count = 0;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping
      t = queue_.front();
      queue_.pop_front();
      if constexpr (!kSlices) {
        const uint64_t total = t->launch->total_blocks();
        const uint64_t chunk = t->launch->stopped()
                                   ? total
                                   : std::clamp<uint64_t>(total / (uint64_t{workers_} * 4), 1, 16);
        first = t->next_block;
        count = std::min(chunk, total - first);
        t->next_block += count;
        if (t->next_block >= total)
          t->all_claimed = true;
        else
          queue_.push_back(t);  // rotate: other leases' work goes first
      }
      ++t->active;
      if (!queue_.empty()) cv_.notify_one();
    }
    const bool done = run_piece(*t->launch, slice_, first, count);
    bool last = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      --t->active;
      if constexpr (kSlices) {
        if (done) {
          last = true;
        } else {
          queue_.push_back(t);  // round-robin: every other lease's slice first
          cv_.notify_one();
        }
      } else {
        (void)done;
        last = t->all_claimed && t->active == 0;
        if (last) t->all_claimed = false;  // report once
      }
    }
    if (last) t->core->finished(*t);
  }
}

void WorkerPool::tick_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stopping_) {
    if (watched_.empty()) {
      tick_cv_.wait(lk);
      continue;
    }
    tick_cv_.wait_for(lk, std::chrono::milliseconds(5));
    auto cores = watched_;
    lk.unlock();
    const auto now = std::chrono::steady_clock::now();
    std::vector<bool> keep(cores.size(), false);
    for (size_t i = 0; i < cores.size(); ++i) {
      if (auto c = cores[i].lock()) keep[i] = c->check_watchdog(now);
    }
    lk.lock();
    // Drop idle and dead cores (entries added meanwhile are kept).
    std::vector<std::weak_ptr<ContextCore>> next;
    for (size_t i = 0; i < cores.size(); ++i)
      if (keep[i]) next.push_back(cores[i]);
    for (size_t i = cores.size(); i < watched_.size(); ++i) next.push_back(watched_[i]);
    watched_ = std::move(next);
  }
}

class SimContext final : public DeviceContext {
 public:
  SimContext(std::shared_ptr<WorkerPool> pool, std::shared_ptr<DeviceState> dev,
             const SimConfig& cfg, const ContextOptions& opts, uint64_t seq)
      : pool_(std::move(pool)),
        dev_(std::move(dev)),
        core_(std::make_shared<ContextCore>(pool_.get(), opts.watchdog_ms)),
        launch_limits_(cfg.launch_limits),
        max_queued_(cfg.max_queued_launches),
        max_allocs_(cfg.max_allocations),
        max_launch_bytes_(cfg.max_queued_launch_bytes),
        block_allowance_(cfg.block_state_allowance),
        min_alloc_charge_(std::max<uint64_t>(1, cfg.min_allocation_charge)),
        load_limits_(cfg.load_limits),
        overhead_(cfg.context_overhead_bytes),
        quota_(opts.quota_bytes),
        budget_(opts.instruction_budget != 0 ? opts.instruction_budget
                                             : cfg.default_instruction_budget),
        window_base_(kGlobalBase + (seq % 256) * kContextWindow),
        next_addr_(window_base_) {}

  ~SimContext() override {
    core_->close();
    uint64_t bytes = overhead_;
    for (const auto& [base, a] : allocs_) bytes += a.charge;
    dev_->release(bytes);
  }

  Result<uint64_t> mem_alloc(uint64_t bytes) override {
    if (bytes == 0) return make_error(Status::kInvalidArgument, "allocation of 0 bytes");
    if (allocs_.size() >= max_allocs_)
      return make_error(Status::kAllocFailed, "context has " + std::to_string(allocs_.size()) +
                                                  " live allocations, the limit");
    // SECURITY: a tiny allocation still costs the node its bookkeeping
    // (map node, control block, table entries): it is charged at least
    // min_alloc_charge_, so a lease cannot hold more entries than it paid for.
    const uint64_t charge = std::max(bytes, min_alloc_charge_);
    if (quota_ != 0 && (charge > quota_ || allocated_ > quota_ - charge))
      return make_error(Status::kAllocFailed,
                        "allocation of " + std::to_string(bytes) +
                            " bytes exceeds the lease quota" +
                            (charge != bytes ? " (each allocation is charged at least " +
                                                   std::to_string(min_alloc_charge_) + " bytes)"
                                             : std::string()));
    if (charge > dev_->info.total_bytes || !dev_->reserve(charge))
      return make_error(Status::kAllocFailed,
                        "sim device out of memory (" + std::to_string(bytes) + " bytes requested)");
    const uint64_t span = (bytes + kAllocAlign - 1) / kAllocAlign * kAllocAlign;
    if (span > window_base_ + kContextWindow - next_addr_) {
      dev_->release(charge);
      return make_error(Status::kAllocFailed, "context address space exhausted");
    }
    // calloc: zeroed, 16-byte aligned (atomics need natural alignment), and
    // large buffers are mapped lazily.
    auto* raw = static_cast<std::byte*>(std::calloc(1, bytes));
    if (raw == nullptr) {
      dev_->release(charge);
      return make_error(Status::kAllocFailed, "host memory exhausted");
    }
    const uint64_t addr = next_addr_;
    next_addr_ += span + kGuardBytes;
    allocs_.emplace(
        addr,
        Alloc{bytes, charge, std::shared_ptr<std::byte>(raw, [](std::byte* p) { std::free(p); })});
    allocated_ += charge;
    // Addresses only grow and a free drops the table (launches keep the old
    // one), so while launches hold snapshots it only gains entries at its end.
    if (table_ && table_->size() < table_->capacity())
      table_->append(GlobalRange{addr, bytes, raw}, allocs_.at(addr).data);
    else
      table_.reset();
    snapshot_.reset();
    return addr;
  }

  void mem_free_async(uint64_t addr, Completion done) override {
    auto it = allocs_.find(addr);
    if (it == allocs_.end())
      return done(make_error(Status::kInvalidHandle, "not a live allocation of this context"));
    // Gone for every later op now. Launches queued before hold a snapshot
    // that keeps the memory alive until they finish (stream order without
    // waiting for them).
    dev_->release(it->second.charge);
    allocated_ -= it->second.charge;
    allocs_.erase(it);
    table_.reset();  // rebuilt at the next launch; launches keep the old one
    snapshot_.reset();
    done(Result<void>());
  }

  void mem_write_async(uint64_t addr, std::span<const std::byte> data, Completion done) override {
    auto p = host_range(addr, data.size());
    if (!p.ok()) return done(std::move(p).error());
    if (data.empty()) return done(Result<void>());
    core_->enqueue_host(
        [dst = *p, data, keep = owner(addr)]() -> Result<void> {
          std::memcpy(dst, data.data(), data.size());
          return {};
        },
        std::move(done));
  }

  void mem_read_async(uint64_t addr, std::span<std::byte> out, Completion done) override {
    auto p = host_range(addr, out.size());
    if (!p.ok()) return done(std::move(p).error());
    if (out.empty()) return done(Result<void>());
    core_->enqueue_host(
        [src = *p, out, keep = owner(addr)]() -> Result<void> {
          std::memcpy(out.data(), src, out.size());
          return {};
        },
        std::move(done));
  }

  void mem_read_seen_async(uint64_t addr, std::span<std::byte> out, ByteSink seen,
                           Completion done) override {
    auto p = host_range(addr, out.size());
    if (!p.ok()) return done(std::move(p).error());
    if (out.empty()) return done(Result<void>());
    core_->enqueue_host(
        [src = *p, out, seen = std::move(seen), keep = owner(addr)]() -> Result<void> {
          // In pieces that stay in cache between the copy and `seen` (a
          // hash): one pass over memory instead of two.
          constexpr size_t kPiece = 64u << 10;
          for (size_t off = 0; off < out.size(); off += kPiece) {
            const size_t n = std::min(kPiece, out.size() - off);
            std::memcpy(out.data() + off, src + off, n);
            seen(out.subspan(off, n));
          }
          return {};
        },
        std::move(done));
  }

  std::optional<HostView> try_view(uint64_t addr, uint64_t len) override {
    auto p = host_range(addr, len);
    if (!p.ok() || !core_->idle()) return std::nullopt;
    // The buffer (or module) itself is the keep-alive: a free or the
    // context's end leaves the bytes to the view until it goes.
    return HostView{std::span<const std::byte>(*p, len), owner(addr)};
  }

  Result<uint64_t> module_load(ImageKind kind, std::span<const std::byte> image) override {
    if (kind != ImageKind::kPtx)
      return make_error(Status::kLoadFailed, "the sim backend runs PTX only (no cubin/fatbin)");
    const std::string_view text(reinterpret_cast<const char*>(image.data()), image.size());
    auto m = load_ptx(text, load_limits_);
    if (!m.ok()) return std::move(m).error();
    // A module's variables live in its address window, chosen by a node-wide
    // load counter that wraps after kModuleTags loads: a module of this
    // context loaded that many loads ago may hold the same window. Variable
    // addresses must name one variable of this context, so load again (the
    // counter has moved on); bounded, since this context holds far fewer
    // modules than there are windows.
    for (int tries = 0; m.value()->globals.size() != 0 && window_taken(m.value()->window_base);
         ++tries) {
      if (tries == 8)
        return make_error(Status::kLoadFailed, "no free address window for the module's variables");
      m = load_ptx(text, load_limits_);
      if (!m.ok()) return std::move(m).error();
    }
    const uint64_t h = ++next_module_;
    modules_.emplace(h, std::move(m).value());
    return h;
  }

  Result<ModuleVariable> module_global(uint64_t module, std::string_view name) override {
    auto it = modules_.find(module);
    if (it == modules_.end())
      return make_error(Status::kInvalidHandle, "not a loaded module of this context");
    const GlobalVar* g = it->second->find_global(name);
    if (g == nullptr)
      return make_error(Status::kInvalidArgument,
                        "the module has no .global or .const variable '" + std::string(name) + "'");
    return ModuleVariable{g->address, g->size,
                          g->is_const ? VariableSpace::kConst : VariableSpace::kGlobal};
  }

  uint64_t module_bytes(uint64_t module) const override {
    auto it = modules_.find(module);
    return it == modules_.end() ? 0 : it->second->decoded_bytes();
  }

  Result<void> module_unload(uint64_t module) override {
    // Launches already queued hold their own reference to the module.
    if (modules_.erase(module) == 0)
      return make_error(Status::kInvalidHandle, "not a loaded module of this context");
    return {};
  }

  Result<void> launch(const LaunchRequest& req) override {
    if (core_->faulted())
      return make_error(Status::kLaunchFailed, "context is faulted: " + core_->fault());
    if (core_->pending() >= max_queued_)
      return make_error(Status::kLaunchFailed, "too many launches queued (" +
                                                   std::to_string(max_queued_) + "); sync first");
    auto mit = modules_.find(req.module);
    if (mit == modules_.end()) return make_error(Status::kLaunchFailed, "unknown module handle");
    const Kernel* k = mit->second->find(req.kernel);
    if (k == nullptr)
      return make_error(Status::kLaunchFailed,
                        "kernel '" + req.kernel + "' not found in the module");
    if (req.args.size() != k->params.size())
      return make_error(Status::kLaunchFailed,
                        "kernel " + k->name + " takes " + std::to_string(k->params.size()) +
                            " arguments, got " + std::to_string(req.args.size()));
    std::vector<std::byte> params(k->param_bytes);
    for (size_t i = 0; i < req.args.size(); ++i) {
      const Param& p = k->params[i];
      if (req.args[i].size() != p.size)
        return make_error(Status::kLaunchFailed,
                          "argument " + std::to_string(i) + " of kernel " + k->name + " is " +
                              std::to_string(req.args[i].size()) + " bytes, the parameter is " +
                              std::to_string(p.size));
      if (p.size != 0) std::memcpy(params.data() + p.offset, req.args[i].data(), p.size);
    }
    auto v = validate_launch(*k, req.grid, req.block, req.shared_bytes, launch_limits_);
    if (!v.ok())
      return make_error(Status::kLaunchFailed, "kernel " + k->name + ": " + v.error().message);
    // SECURITY: what a launch makes the node hold is paid for by the lease.
    // Running, one block's registers, local and shared memory (one launch
    // of a context runs at a time) must fit in what the lease pays for: its
    // quota, the context overhead and a fixed allowance per launch.
    const uint64_t state = block_state_bytes(*k, req.block, req.shared_bytes);
    if (quota_ != 0 && state > quota_ + overhead_ + block_allowance_)
      return make_error(Status::kLaunchFailed,
                        "kernel " + k->name + ": a block needs " + std::to_string(state) +
                            " bytes of registers, local and shared memory, more than the lease's " +
                            std::to_string(quota_) + "-byte quota (plus " +
                            std::to_string(overhead_ + block_allowance_) +
                            " bytes of context and launch allowance) pays for");
    // Queued, its parameters and the memory table it needs (rebuilt after
    // a free, so each such launch may hold its own copy) are bounded per
    // context.
    const bool rebuild = !snapshot_ && !table_;
    const uint64_t charge = kLaunchBaseBytes + params.size() +
                            (rebuild ? uint64_t{allocs_.size()} * kTableEntryBytes : 0);
    const uint64_t held = launch_bytes_->load();
    if (held != 0 && charge > max_launch_bytes_ - std::min(held, max_launch_bytes_))
      return make_error(Status::kLaunchFailed,
                        "launches queued on this lease hold " + std::to_string(held) +
                            " bytes of parameters and memory tables (limit " +
                            std::to_string(max_launch_bytes_) + "); sync first");
    launch_bytes_->fetch_add(charge);
    std::shared_ptr<Launch> l(new Launch(mit->second, k, req.grid, req.block, req.shared_bytes,
                                         std::move(params), memory(), budget_),
                              [held_by = launch_bytes_, charge](Launch* p) {
                                delete p;
                                held_by->fetch_sub(charge);
                              });
    core_->enqueue(l);
    return {};
  }

  void sync(std::function<void(Result<void>)> done) override { core_->sync(std::move(done)); }

  bool faulted() const override { return core_->faulted(); }

 private:
  struct Alloc {
    uint64_t size = 0;
    uint64_t charge = 0;  // against the quota and the device: max(size, min_alloc_charge_)
    std::shared_ptr<std::byte> data;
  };
  // What a queued launch costs besides its parameters (the Launch itself).
  static constexpr uint64_t kLaunchBaseBytes = 512;
  // One entry of a memory table: its range and the owner that keeps it alive.
  static constexpr uint64_t kTableEntryBytes =
      sizeof(GlobalRange) + sizeof(std::shared_ptr<std::byte>);

  // Host bytes one block of `k` holds while it runs (what BlockRunner
  // allocates): registers and local memory of every thread, threads
  // rounded up to whole warps, and the block's shared memory.
  static uint64_t block_state_bytes(const Kernel& k, std::array<uint32_t, 3> block,
                                    uint32_t dynamic_shared) {
    const uint64_t threads = uint64_t{block[0]} * block[1] * block[2];
    const uint64_t lanes = (threads + 31) / 32 * 32;
    const uint64_t per_thread = uint64_t{k.num_slots()} * 8 + k.local_bytes;
    const uint64_t shared = std::max<uint64_t>(uint64_t{k.dynamic_shared_offset} + dynamic_shared,
                                               k.static_shared_bytes);
    return per_thread * lanes + shared;
  }

  // The buffer or module holding `addr` (REQUIRES: host_range(addr, ...)
  // succeeded): a queued op keeps it alive even if it is freed or unloaded
  // before the op runs.
  std::shared_ptr<const void> owner(uint64_t addr) const {
    if (const Module* m = module_at(addr)) {
      for (const auto& [h, mod] : modules_)
        if (mod.get() == m) return mod;
    }
    auto it = allocs_.upper_bound(addr);
    return std::prev(it)->second.data;
  }

  // The loaded module whose variable window holds `addr`, or nullptr.
  const Module* module_at(uint64_t addr) const {
    if (addr - kModuleWindow >= kModuleTags * kWindowSize) return nullptr;
    for (const auto& [h, mod] : modules_)
      if (!mod->globals.empty() && addr - mod->window_base < kWindowSize) return mod.get();
    return nullptr;
  }
  bool window_taken(uint64_t base) const {
    for (const auto& [h, mod] : modules_)
      if (mod->window_base == base && !mod->globals.empty()) return true;
    return false;
  }

  Result<std::byte*> host_range(uint64_t addr, uint64_t len) {
    // A module's variables (.const ones too: the host may write those).
    if (const Module* m = module_at(addr)) {
      std::byte* p = m->variable_bytes(addr, len, /*write=*/false);
      if (p == nullptr)
        return make_error(Status::kOutOfRange, "range runs past the module's variables");
      return p;
    }
    auto it = allocs_.upper_bound(addr);
    if (it == allocs_.begin())
      return make_error(Status::kInvalidHandle, "address is not in a live allocation");
    --it;
    const uint64_t off = addr - it->first;
    if (off >= it->second.size)
      return make_error(Status::kInvalidHandle, "address is not in a live allocation");
    if (len > it->second.size - off)
      return make_error(Status::kOutOfRange, "range runs past the end of the allocation");
    return it->second.data.get() + off;
  }

  // The allocation table as launches see it: a view of the first N entries
  // of the shared append-only table (O(1) per snapshot, so interleaving
  // allocations and launches costs no copies); the table itself is rebuilt
  // only after a free.
  std::shared_ptr<const GlobalMemory> memory() {
    if (!snapshot_) {
      if (!table_) {
        table_ = std::make_shared<RangeTable>(std::max<size_t>(max_allocs_, allocs_.size()));
        for (const auto& [base, a] : allocs_)
          table_->append(GlobalRange{base, a.size, a.data.get()}, a.data);
      }
      auto m = std::make_shared<GlobalMemory>();
      m->table = table_;
      m->table_count = table_->size();
      snapshot_ = std::move(m);
    }
    return snapshot_;
  }

  std::shared_ptr<WorkerPool> pool_;
  std::shared_ptr<DeviceState> dev_;
  std::shared_ptr<ContextCore> core_;
  LaunchLimits launch_limits_;
  uint64_t max_queued_;
  size_t max_allocs_;
  uint64_t max_launch_bytes_;
  uint64_t block_allowance_;
  uint64_t min_alloc_charge_;
  // Bytes held by this context's launches not yet destroyed (each gives its
  // charge back when the last reference to it goes, on any thread).
  std::shared_ptr<std::atomic<uint64_t>> launch_bytes_ = std::make_shared<std::atomic<uint64_t>>(0);
  LoadLimits load_limits_;
  uint64_t overhead_;
  uint64_t quota_;
  uint64_t budget_;
  uint64_t window_base_;
  uint64_t next_addr_;
  uint64_t allocated_ = 0;
  std::map<uint64_t, Alloc> allocs_;
  std::shared_ptr<RangeTable> table_;
  std::shared_ptr<const GlobalMemory> snapshot_;
  std::map<uint64_t, std::shared_ptr<const Module>> modules_;
  uint64_t next_module_ = 0;
};

class SimBackend final : public server::DeviceBackend {
 public:
  explicit SimBackend(const SimConfig& cfg)
      : cfg_(cfg),
        pool_(std::make_shared<WorkerPool>(cfg.worker_threads, cfg.slice_instructions,
                                           cfg.worker_nice)) {
    uint16_t index = 0;
    for (const SimDeviceConfig& d : cfg.devices) {
      auto s = std::make_shared<DeviceState>();
      s->info.index = index;
      s->info.name = d.name;
      // A stable, recognisable UUID: "gpulease-sim" then the device index.
      const char tag[] = "gpulease-sim";
      std::memcpy(s->info.uuid.data(), tag, sizeof tag - 1);
      s->info.uuid[14] = static_cast<uint8_t>(index >> 8);
      s->info.uuid[15] = static_cast<uint8_t>(index);
      s->info.cc_major = 7;  // the PTX in kernels/ targets sm_75
      s->info.cc_minor = 5;
      s->info.sm_count = pool_->size();
      s->info.total_bytes = d.total_bytes;
      s->info.max_threads_per_block = cfg.launch_limits.max_threads_per_block;
      s->info.max_block = cfg.launch_limits.max_block;
      s->info.max_grid = cfg.launch_limits.max_grid;
      s->info.max_shared_per_block = cfg.launch_limits.max_shared_per_block;
      devices_.push_back(std::move(s));
      ++index;
    }
  }

  std::string_view name() const override { return "sim"; }

  std::vector<DeviceInfo> devices() override {
    std::vector<DeviceInfo> out;
    for (const auto& d : devices_) {
      DeviceInfo i = d->info;
      std::lock_guard<std::mutex> lk(d->mu);
      i.free_bytes = i.total_bytes - std::min(i.total_bytes, d->used);
      out.push_back(std::move(i));
    }
    return out;
  }

  uint64_t context_overhead_bytes(uint16_t device) const override {
    (void)device;
    return cfg_.context_overhead_bytes;
  }

  Result<std::unique_ptr<DeviceContext>> create_context(uint16_t device,
                                                        const ContextOptions& opts) override {
    if (device >= devices_.size())
      return make_error(Status::kInvalidArgument, "no sim device " + std::to_string(device));
    if (opts.session_exclusive)
      return make_error(Status::kUnsupported, "the sim backend has no exclusive SM partitions");
    auto& dev = devices_[device];
    if (!dev->reserve(cfg_.context_overhead_bytes))
      return make_error(Status::kCapacityExceeded,
                        "sim device " + std::to_string(device) + " has no room for a context");
    const uint64_t seq = next_context_.fetch_add(1, std::memory_order_relaxed);
    return std::unique_ptr<DeviceContext>(
        std::make_unique<SimContext>(pool_, dev, cfg_, opts, seq));
  }

 private:
  SimConfig cfg_;
  std::shared_ptr<WorkerPool> pool_;
  std::vector<std::shared_ptr<DeviceState>> devices_;
  std::atomic<uint64_t> next_context_{0};
};

}  // namespace

std::unique_ptr<server::DeviceBackend> make_sim_backend(const SimConfig& config) {
  return std::make_unique<SimBackend>(config);
}

}  // namespace gpulease::sim
