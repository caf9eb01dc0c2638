// The cuda backend. Structure:
//
//   CudaBackend ──► Shared (driver table, devices, Monitor, Teardown)
//   CudaContext ──► LeaseCore (the CUDA context, stream, events, staging,
//                              modules, allocations, in-flight launches)
//
// Launches record an event after each kernel; the backend's one Monitor
// thread retires them in order (cuEventQuery), completes syncs, turns sticky
// errors into a fault naming the kernel, and enforces the watchdog. A sync
// also queues a host function (cuLaunchHostFunc) that only wakes the
// Monitor, so ordinary completion is seen at once, and faults (after which
// the driver runs no host functions) within one monitor tick.
//
// LOCKING: LeaseCore::use_mu is shared by every CUDA call on the context and
// taken exclusively to destroy it (the watchdog destroys a context from the
// Teardown thread while its executor may be waiting for it). Waits for
// device work never hold it: they poll an event, releasing use_mu between
// polls. LeaseCore::mu guards the in-flight queue, syncs and the fault; it is
// never held across a blocking CUDA call. Lock order: Monitor::mu → core.mu;
// use_mu → core.mu.
#include "gpulease/cuda/cuda_backend.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "gpulease/cuda/cuda_util.hpp"
#include "gpulease/cuda/driver_api.hpp"

namespace gpulease::server::cuda {

namespace {

using Clock = std::chrono::steady_clock;
using ApiPtr = std::shared_ptr<const DriverApi>;

// A PTX every driver since CUDA 11 JITs, for the overhead measurement: the
// first launch in a context makes the driver allocate what it defers.
constexpr char kNoopPtx[] =
    ".version 7.0\n.target sm_50\n.address_size 64\n"
    ".visible .entry gpulease_noop()\n{\n\tret;\n}\n";

constexpr uint64_t kTwoMiB = uint64_t{2} << 20;

// ---------------------------------------------------------------------------
// Background threads shared by all contexts of a backend.

class LeaseCore;

class Teardown {
 public:
  Teardown() : th_([this] { run(); }) {}
  ~Teardown() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    th_.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;  // stop_ and drained
      auto fn = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread th_;
};

class Monitor {
 public:
  Monitor(uint32_t tick_us, Teardown& teardown)
      : tick_(std::chrono::microseconds(std::max<uint32_t>(tick_us, 50))), teardown_(teardown) {
    th_ = std::thread([this] { run(); });
  }
  ~Monitor() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    th_.join();
  }
  // Starts watching `core` (idempotent).
  void watch(const std::shared_ptr<LeaseCore>& core);
  void kick() {
    {
      std::lock_guard lk(mu_);
      kicked_ = true;
    }
    cv_.notify_one();
  }
  // A host function on a lease's stream: wakes the monitor. REQUIRES: makes
  // no CUDA call (the driver forbids it in host functions).
  static void CUDA_CB host_wake(void* self) { static_cast<Monitor*>(self)->kick(); }

 private:
  void run();

  std::chrono::microseconds tick_;
  Teardown& teardown_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<LeaseCore>> active_;
  bool kicked_ = false;
  bool stop_ = false;
  std::thread th_;
};

// ---------------------------------------------------------------------------
// One lease's CUDA state.

struct KernelRec {
  CUfunction fn = nullptr;
  std::optional<std::vector<ParamInfo>> params;  // nullopt: driver cannot tell
  uint32_t max_threads = 1024;
  uint32_t static_shared = 0;
  uint32_t dynamic_shared_allowed = 48 * 1024;  // current MAX_DYNAMIC_SHARED_SIZE_BYTES
};

struct ModuleRec {
  CUmodule mod = nullptr;
  std::unordered_map<std::string, KernelRec> kernels;
  // PTX images: the spaces of the variables the text declares (the driver
  // does not tell .const from .global).
  std::unordered_map<std::string, VariableSpace> spaces;
};

struct Inflight {
  CUevent ev = nullptr;
  uint64_t seq = 0;
  std::string kernel;
  Clock::time_point started;  // when it became the oldest unfinished launch
};

struct PendingSync {
  uint64_t upto = 0;
  std::function<void(Result<void>)> done;
};

enum class PollResult { kIdle, kBusy, kDestroy };

class LeaseCore {
 public:
  LeaseCore(ApiPtr api, Monitor& monitor, const DeviceInfo& info, const ContextOptions& opts,
            const CudaBackendOptions& bopts)
      : api_(std::move(api)), monitor_(monitor), info_(info), opts_(opts), bopts_(bopts) {}
  ~LeaseCore() { destroy(); }

  const DriverApi& api() const { return *api_; }

  // -- scoped use of the context by the executor ---------------------------
  class Use {
   public:
    explicit Use(LeaseCore& c) : c_(c), lk_(c.use_mu_) { push(); }
    ~Use() { pop(); }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    // False once the context was destroyed (watchdog): the op must stop.
    bool live() const { return pushed_; }
    // Lets a destroyer in while the caller waits for the device.
    void pause() {
      pop();
      lk_.unlock();
    }
    bool resume() {
      lk_.lock();
      push();
      return pushed_;
    }

   private:
    void push() {
      if (!c_.destroyed_ && c_.api_->cuCtxPushCurrent(c_.ctx_) == CUDA_SUCCESS) pushed_ = true;
    }
    void pop() {
      if (!pushed_) return;
      CUcontext prev = nullptr;
      (void)c_.api_->cuCtxPopCurrent(&prev);
      pushed_ = false;
    }
    LeaseCore& c_;
    std::shared_lock<std::shared_mutex> lk_;
    bool pushed_ = false;
  };

  // -- creation --------------------------------------------------------------
  Result<void> init_regular(CUdevice dev) {
    const DriverApi& a = *api_;
    CUresult r = a.cuCtxCreate(&ctx_, CU_CTX_SCHED_AUTO, dev);
    if (r != CUDA_SUCCESS) {
      ctx_ = nullptr;
      return create_error("cuCtxCreate", r);
    }
    // cuCtxCreate made it current on this thread; limits apply to it.
    (void)a.cuCtxSetLimit(CU_LIMIT_STACK_SIZE, bopts_.stack_bytes_per_thread);
    (void)a.cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, bopts_.printf_fifo_bytes);
    (void)a.cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, bopts_.malloc_heap_bytes);
    r = a.cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING);
    CUcontext prev = nullptr;
    (void)a.cuCtxPopCurrent(&prev);
    if (r != CUDA_SUCCESS) return create_error("cuStreamCreate", r);
    return {};
  }

  Result<void> init_green(CUdevice dev, CUdevResource group, std::function<void()> release) {
    const DriverApi& a = *api_;
    release_group_ = std::move(release);
    CUdevResourceDesc desc{};
    CUresult r = a.cuDevResourceGenerateDesc(&desc, &group, 1);
    if (r != CUDA_SUCCESS) return create_error("cuDevResourceGenerateDesc", r);
    r = a.cuGreenCtxCreate(&green_, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
    if (r != CUDA_SUCCESS) {
      green_ = nullptr;
      return create_error("cuGreenCtxCreate", r);
    }
    r = a.cuCtxFromGreenCtx(&ctx_, green_);
    if (r != CUDA_SUCCESS) return create_error("cuCtxFromGreenCtx", r);
    r = a.cuGreenCtxStreamCreate(&stream_, green_, CU_STREAM_NON_BLOCKING, 0);
    if (r != CUDA_SUCCESS) return create_error("cuGreenCtxStreamCreate", r);
    return {};
  }

  // -- fault state -------------------------------------------------------------
  bool faulted() const { return faulted_.load(std::memory_order_acquire); }

  Error fault_error() {
    std::lock_guard lk(mu_);
    return make_error(Status::kLeaseFaulted,
                      fault_ ? "lease faulted: " + fault_->message : "lease faulted");
  }

  // A CUDA call of an op failed with `r`. Sticky errors fault the lease.
  Error op_error(const char* call, CUresult r, Status status_if_not_sticky) {
    if (is_sticky_error(static_cast<int>(r))) {
      set_fault(r, "");
      return fault_error();
    }
    return make_error(status_if_not_sticky, std::string(call) + " failed: " + api_->describe(r));
  }

  // -- executor-side helpers -----------------------------------------------------
  // Waits, without holding the context, until `ev` completed.
  Result<void> wait_event(Use& u, CUevent ev, const char* what) {
    auto backoff = std::chrono::microseconds(2);
    for (int spin = 0;; ++spin) {
      CUresult r = api_->cuEventQuery(ev);
      if (r == CUDA_SUCCESS) return {};
      if (r != CUDA_ERROR_NOT_READY) return op_error(what, r, Status::kInternal);
      if (faulted()) return fault_error();
      u.pause();
      if (spin < 16) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::microseconds(500));
      }
      if (!u.resume()) return fault_error();
    }
  }

  // Waits until every launch queued so far finished (before calls that may
  // synchronise the context implicitly, e.g. cuMemFree, so a hung kernel
  // cannot block a thread inside the driver).
  Result<void> drain(Use& u) {
    CUevent ev = take_event();
    if (ev == nullptr) return make_error(Status::kInternal, "cuEventCreate failed");
    CUresult r = api_->cuEventRecord(ev, stream_);
    if (r != CUDA_SUCCESS) return op_error("cuEventRecord", r, Status::kInternal);
    auto res = wait_event(u, ev, "waiting for earlier launches");
    give_event(ev);
    return res;
  }

  CUevent take_event() {
    {
      std::lock_guard lk(mu_);
      if (!free_events_.empty()) {
        CUevent ev = free_events_.back();
        free_events_.pop_back();
        return ev;
      }
    }
    CUevent ev = nullptr;
    if (api_->cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) return nullptr;
    return ev;
  }
  void give_event(CUevent ev) {
    std::lock_guard lk(mu_);
    free_events_.push_back(ev);
  }

  Result<void> ensure_staging(Use&) {
    if (staging_[0] != nullptr) return {};
    for (int i = 0; i < 2; ++i) {
      CUresult r = api_->cuMemHostAlloc(&staging_[i], bopts_.staging_chunk_bytes, 0);
      if (r != CUDA_SUCCESS) {
        staging_[i] = nullptr;
        return op_error("cuMemHostAlloc (pinned staging)", r, Status::kInternal);
      }
      r = api_->cuEventCreate(&staging_ev_[i], CU_EVENT_DISABLE_TIMING);
      if (r != CUDA_SUCCESS) return op_error("cuEventCreate", r, Status::kInternal);
    }
    return {};
  }

  // -- in-flight launches ----------------------------------------------------------
  void record_launch(CUevent ev, std::string kernel) {
    {
      std::lock_guard lk(mu_);
      Inflight f;
      f.ev = ev;
      f.seq = next_seq_++;
      f.kernel = std::move(kernel);
      f.started = Clock::now();
      inflight_.push_back(std::move(f));
    }
  }
  size_t inflight_count() {
    std::lock_guard lk(mu_);
    return inflight_.size();
  }

  // Returns {done now?, result} for a new sync.
  void sync(std::function<void(Result<void>)> done, std::shared_ptr<LeaseCore> self) {
    std::optional<Result<void>> now;
    {
      std::lock_guard lk(mu_);
      if (fault_) {
        now = Result<void>(*fault_);
      } else if (destroyed_flag_.load()) {
        now = Result<void>(make_error(Status::kLeaseFaulted, "lease context was destroyed"));
      } else if (inflight_.empty()) {
        now = Result<void>();
      } else {
        syncs_.push_back({next_seq_ - 1, std::move(done)});
      }
    }
    if (now) {
      done(std::move(*now));
      return;
    }
    {
      Use u(*this);
      if (u.live()) (void)api_->cuLaunchHostFunc(stream_, &Monitor::host_wake, &monitor_);
    }
    monitor_.watch(self);
  }

  // Called by the Monitor thread: retires finished launches, detects faults
  // and watchdog expiry, completes syncs.
  PollResult poll(Clock::time_point now) {
    std::vector<PendingSync> fire_ok;
    std::vector<PendingSync> fire_err;
    std::optional<Error> err;
    PollResult out = PollResult::kBusy;
    {
      std::shared_lock u(use_mu_, std::try_to_lock);
      if (!u.owns_lock()) return PollResult::kBusy;  // being destroyed
      std::lock_guard lk(mu_);
      if (!destroyed_ && !fault_) {
        while (!inflight_.empty()) {
          Inflight& h = inflight_.front();
          CUresult r = api_->cuEventQuery(h.ev);
          if (r == CUDA_SUCCESS) {
            completed_seq_ = h.seq;
            free_events_.push_back(h.ev);
            inflight_.pop_front();
            if (!inflight_.empty()) inflight_.front().started = now;
            continue;
          }
          if (r == CUDA_ERROR_NOT_READY) {
            if (opts_.watchdog_ms != 0 &&
                now - h.started > std::chrono::milliseconds(opts_.watchdog_ms)) {
              set_fault_locked(make_error(Status::kSyncFailed,
                                          "watchdog: kernel '" + h.kernel + "' ran longer than " +
                                              std::to_string(opts_.watchdog_ms) +
                                              " ms; the lease's context was destroyed to stop it"));
              out = PollResult::kDestroy;
            }
            break;
          }
          set_fault_locked(kernel_fault(r, h.kernel));
          break;
        }
      }
      if (fault_ || destroyed_) {
        err = fault_ ? *fault_ : make_error(Status::kLeaseFaulted, "lease context was destroyed");
        fire_err = std::move(syncs_);
        syncs_.clear();
        inflight_.clear();  // their events die with the context
      } else {
        size_t n = 0;
        while (n < syncs_.size() && syncs_[n].upto <= completed_seq_) ++n;
        fire_ok.assign(std::make_move_iterator(syncs_.begin()),
                       std::make_move_iterator(syncs_.begin() + static_cast<ptrdiff_t>(n)));
        syncs_.erase(syncs_.begin(), syncs_.begin() + static_cast<ptrdiff_t>(n));
      }
      if (out != PollResult::kDestroy && inflight_.empty() && syncs_.empty())
        out = PollResult::kIdle;
    }
    for (auto& s : fire_ok) s.done(Result<void>());
    for (auto& s : fire_err) s.done(Result<void>(*err));
    return out;
  }

  bool idle() {
    std::lock_guard lk(mu_);
    return inflight_.empty() && syncs_.empty();
  }

  // Faults the context with `e` (a queued op failed where no caller waits
  // for its answer): the next SYNC reports it.
  void fail(Error e) {
    std::lock_guard lk(mu_);
    set_fault_locked(std::move(e));
  }

  // Frees everything (idempotent). With a kernel still running, a regular
  // context is destroyed under it: the only way to stop a hung kernel.
  void destroy() {
    std::vector<PendingSync> orphans;
    std::optional<Error> err;
    {
      std::unique_lock u(use_mu_);
      if (destroyed_) return;
      const DriverApi& a = *api_;
      if (green_ != nullptr) {
        // A green context is the device's primary context with an SM
        // partition: its memory and modules outlive cuGreenCtxDestroy, so
        // they are freed one by one.
        // After a fault (a poisoned primary context, or a kernel the
        // watchdog gave up on, which cuStreamSynchronize or cuMemFree would
        // wait for forever) they are left to the driver: see
        // docs/CUDA_BACKEND.md, "Green contexts".
        if (!faulted() && ctx_ != nullptr && a.cuCtxPushCurrent(ctx_) == CUDA_SUCCESS) {
          (void)a.cuStreamSynchronize(stream_);
          for (auto& [addr, bytes] : allocs_) (void)a.cuMemFree(static_cast<CUdeviceptr>(addr));
          for (auto& [h, m] : modules_) (void)a.cuModuleUnload(m.mod);
          for (void* s : staging_) {
            if (s != nullptr) (void)a.cuMemFreeHost(s);
          }
          for (CUevent e : staging_ev_) {
            if (e != nullptr) (void)a.cuEventDestroy(e);
          }
          for (CUevent e : free_events_) (void)a.cuEventDestroy(e);
          for (auto& f : inflight_) (void)a.cuEventDestroy(f.ev);
          if (stream_ != nullptr) (void)a.cuStreamDestroy(stream_);
          CUcontext prev = nullptr;
          (void)a.cuCtxPopCurrent(&prev);
        }
        (void)a.cuGreenCtxDestroy(green_);
      } else if (ctx_ != nullptr) {
        // Frees the context's memory, modules, stream, events and pinned
        // host buffers in one call.
        (void)a.cuCtxDestroy(ctx_);
      }
      destroyed_ = true;
      destroyed_flag_.store(true);
      faulted_.store(true, std::memory_order_release);  // no op may use it now
      std::lock_guard lk(mu_);
      if (!fault_) fault_ = make_error(Status::kLeaseFaulted, "lease context was destroyed");
      err = *fault_;
      orphans = std::move(syncs_);
      syncs_.clear();
      inflight_.clear();
      free_events_.clear();
      allocs_.clear();
      modules_.clear();
    }
    if (release_group_) release_group_();
    for (auto& s : orphans) s.done(Result<void>(*err));
  }

  // -- state the executor owns (one serial executor: no lock needed) ------
  CUstream stream() const { return stream_; }
  const DeviceInfo& info() const { return info_; }
  const ContextOptions& opts() const { return opts_; }
  const CudaBackendOptions& bopts() const { return bopts_; }
  std::map<uint64_t, uint64_t>& allocs() { return allocs_; }
  uint64_t& used_bytes() { return used_; }
  std::map<uint64_t, ModuleRec>& modules() { return modules_; }
  void* staging(int i) const { return staging_[i]; }
  CUevent staging_event(int i) const { return staging_ev_[i]; }

  Error kernel_fault(CUresult r, const std::string& kernel) const {
    const char* s = nullptr;
    std::string why;
    if (api_->cuGetErrorString != nullptr && api_->cuGetErrorString(r, &s) == CUDA_SUCCESS &&
        s != nullptr) {
      why = std::string(": ") + s;
    }
    return make_error(Status::kSyncFailed,
                      api_->error_name(r) + " in kernel '" + kernel + "'" + why);
  }

 private:
  Error create_error(const char* call, CUresult r) {
    Status s = r == CUDA_ERROR_OUT_OF_MEMORY ? Status::kCapacityExceeded : Status::kInternal;
    return make_error(s, std::string(call) + " failed: " + api_->describe(r));
  }

  void set_fault(CUresult r, const std::string&) {
    std::lock_guard lk(mu_);
    if (fault_) return;
    std::string kernel =
        inflight_.empty() ? std::string("(no kernel in flight)") : inflight_.front().kernel;
    set_fault_locked(kernel_fault(r, kernel));
  }
  void set_fault_locked(Error e) {
    if (fault_) return;
    fault_ = std::move(e);
    faulted_.store(true, std::memory_order_release);
  }

  ApiPtr api_;
  Monitor& monitor_;
  DeviceInfo info_;
  ContextOptions opts_;
  CudaBackendOptions bopts_;

  CUcontext ctx_ = nullptr;
  CUgreenCtx green_ = nullptr;
  CUstream stream_ = nullptr;
  std::function<void()> release_group_;

  std::shared_mutex use_mu_;
  bool destroyed_ = false;  // written under unique use_mu_
  std::atomic<bool> destroyed_flag_{false};
  std::atomic<bool> faulted_{false};

  std::mutex mu_;
  std::deque<Inflight> inflight_;
  std::vector<PendingSync> syncs_;
  std::vector<CUevent> free_events_;
  uint64_t next_seq_ = 1;
  uint64_t completed_seq_ = 0;
  std::optional<Error> fault_;

  // Executor-owned.
  std::map<uint64_t, uint64_t> allocs_;
  uint64_t used_ = 0;
  std::map<uint64_t, ModuleRec> modules_;
  void* staging_[2] = {nullptr, nullptr};
  CUevent staging_ev_[2] = {nullptr, nullptr};
};

void Monitor::watch(const std::shared_ptr<LeaseCore>& core) {
  {
    std::lock_guard lk(mu_);
    if (std::find(active_.begin(), active_.end(), core) == active_.end()) active_.push_back(core);
    kicked_ = true;
  }
  cv_.notify_one();
}

void Monitor::run() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (active_.empty()) {
      cv_.wait(lk, [&] { return stop_ || kicked_ || !active_.empty(); });
    } else {
      cv_.wait_for(lk, tick_, [&] { return stop_ || kicked_; });
    }
    if (stop_) break;
    kicked_ = false;
    auto snapshot = active_;
    lk.unlock();
    std::vector<std::shared_ptr<LeaseCore>> finished;
    for (auto& c : snapshot) {
      PollResult r = c->poll(Clock::now());
      if (r == PollResult::kDestroy) {
        teardown_.post([c] { c->destroy(); });
        finished.push_back(c);
      } else if (r == PollResult::kIdle) {
        finished.push_back(c);
      }
    }
    lk.lock();
    for (auto& c : finished) {
      // Re-checked under mu_: a launch that raced the poll re-watches after
      // recording itself, so dropping an idle core here loses nothing.
      if (!c->idle() && !c->faulted()) continue;
      active_.erase(std::remove(active_.begin(), active_.end(), c), active_.end());
    }
  }
}

// ---------------------------------------------------------------------------

struct Device {
  CUdevice dev = 0;
  DeviceInfo info;
  uint64_t overhead = 0;
  CUcontext probe = nullptr;  // backend-owned context for cuMemGetInfo
  // SessionExclusive: SM groups for green contexts, built on first use.
  bool groups_built = false;
  std::vector<CUdevResource> groups;
  std::vector<bool> group_used;
};

struct Shared {
  ApiPtr api;
  CudaBackendOptions opts;
  std::vector<Device> devices;
  std::mutex mu;  // devices[*].probe use, groups
  Teardown teardown;
  Monitor monitor;

  Shared(ApiPtr a, const CudaBackendOptions& o)
      : api(std::move(a)), opts(o), monitor(o.monitor_tick_us, teardown) {}
  ~Shared() {
    for (auto& d : devices) {
      if (d.probe != nullptr) (void)api->cuCtxDestroy(d.probe);
    }
  }
};

// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// A context's stream work that has to wait for the device (copies queued
// behind launches, frees and unloads that must wait for them, and launches
// or syncs queued behind those) runs on one thread of its own, in order, so
// no device-pool thread ever waits for a kernel. Ops are posted only by the
// context's executor; an op gets `cancelled` = true instead of running when
// the context closes first.
class OpQueue {
 public:
  using Op = std::function<void(bool cancelled)>;
  OpQueue() = default;
  ~OpQueue() { close(); }
  OpQueue(const OpQueue&) = delete;
  OpQueue& operator=(const OpQueue&) = delete;

  // Nothing queued or running. Only the poster's view matters: it is the
  // only one that adds work.
  bool idle() {
    std::lock_guard lk(mu_);
    return q_.empty() && !running_;
  }

  void post(Op op) {
    {
      std::lock_guard lk(mu_);
      if (!closed_) {
        q_.push_back(std::move(op));
        if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
        cv_.notify_one();
        return;
      }
    }
    op(true);
  }

  // Cancels every queued op (the running one finishes).
  void cancel_queued() {
    std::deque<Op> dropped;
    {
      std::lock_guard lk(mu_);
      closed_ = true;
      dropped.swap(q_);
    }
    for (auto& op : dropped) op(true);
  }

  // Cancels what is queued, waits for the running op, stops the thread.
  void close() {
    cancel_queued();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return closed_ || !q_.empty(); });
      if (q_.empty()) return;  // closed
      Op op = std::move(q_.front());
      q_.pop_front();
      running_ = true;
      lk.unlock();
      op(false);
      op = nullptr;
      lk.lock();
      running_ = false;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> q_;
  bool running_ = false;
  bool closed_ = false;
  std::thread thread_;
};

class CudaContext final : public DeviceContext {
 public:
  CudaContext(std::shared_ptr<Shared> shared, std::shared_ptr<LeaseCore> core)
      : shared_(std::move(shared)), core_(std::move(core)) {}
  ~CudaContext() override {
    // Queued ops are answered LEASE_EXPIRED (frees and unloads they carried
    // go back to the tables the destroy frees), the destroy stops a running
    // kernel and interrupts the op thread's wait, then the thread ends.
    ops_.cancel_queued();
    core_->destroy();
    ops_.close();
  }

  Result<uint64_t> mem_alloc(uint64_t bytes) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    uint64_t quota = c.opts().quota_bytes;
    if (quota != 0 && (bytes > quota || c.used_bytes() > quota - bytes)) {
      return make_error(Status::kAllocFailed, "allocation of " + std::to_string(bytes) +
                                                  " bytes exceeds the lease quota (" +
                                                  std::to_string(c.used_bytes()) + " of " +
                                                  std::to_string(quota) + " used)");
    }
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    CUdeviceptr p = 0;
    CUresult r = c.api().cuMemAlloc(&p, static_cast<size_t>(bytes));
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
      return make_error(Status::kAllocFailed,
                        "device out of memory allocating " + std::to_string(bytes) + " bytes");
    }
    if (r != CUDA_SUCCESS) return c.op_error("cuMemAlloc", r, Status::kAllocFailed);
    c.allocs()[static_cast<uint64_t>(p)] = bytes;
    c.used_bytes() += bytes;
    return static_cast<uint64_t>(p);
  }

  // Where the op runs: inline when nothing of the stream is ahead of it (it
  // then waits only for its own copy), else on the op thread.
  bool run_inline() { return ops_.idle() && core_->inflight_count() == 0; }

  static Error expired() {
    return make_error(Status::kLeaseExpired, "lease ended before this op ran");
  }

  void mem_free_async(uint64_t addr, Completion done) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return done(c.fault_error());
    auto it = c.allocs().find(addr);
    if (it == c.allocs().end())
      return done(make_error(Status::kInvalidHandle, "not a live allocation"));
    if (run_inline()) return done(free_now(addr));
    // Gone from the tables now (they belong to the executor); the op thread
    // frees the memory once earlier launches finished.
    const uint64_t bytes = it->second;
    c.allocs().erase(it);
    c.used_bytes() -= bytes;
    ops_.post([this, addr, bytes, done = std::move(done)](bool cancelled) {
      if (cancelled) {
        // Back into the table, which the context's destruction frees.
        core_->allocs()[addr] = bytes;
        core_->used_bytes() += bytes;
        return done(expired());
      }
      done(release_now(addr));
    });
  }

  void mem_write_async(uint64_t addr, std::span<const std::byte> data, Completion done) override {
    if (core_->faulted()) return done(core_->fault_error());
    if (data.empty()) return done(Result<void>());
    if (run_inline()) return done(write_now(addr, data));
    ops_.post([this, addr, data, done = std::move(done)](bool cancelled) {
      done(cancelled ? Result<void>(expired()) : write_now(addr, data));
    });
  }

  void mem_read_async(uint64_t addr, std::span<std::byte> out, Completion done) override {
    if (core_->faulted()) return done(core_->fault_error());
    if (out.empty()) return done(Result<void>());
    if (run_inline()) return done(read_now(addr, out));
    ops_.post([this, addr, out, done = std::move(done)](bool cancelled) {
      done(cancelled ? Result<void>(expired()) : read_now(addr, out));
    });
  }

 private:
  Result<void> free_now(uint64_t addr) {
    LeaseCore& c = *core_;
    auto it = c.allocs().find(addr);
    if (it == c.allocs().end()) return make_error(Status::kInvalidHandle, "not a live allocation");
    if (auto r = release_now(addr); !r) return r;
    c.used_bytes() -= it->second;
    c.allocs().erase(it);
    return {};
  }

  // cuMemFree after every earlier launch. REQUIRES: addr no longer in use by
  // later ops.
  Result<void> release_now(uint64_t addr) {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    // cuMemFree may synchronise: let queued kernels finish first, waiting
    // interruptibly, so a runaway kernel cannot pin this thread.
    if (auto d = c.drain(u); !d) return d;
    CUresult r = c.api().cuMemFree(static_cast<CUdeviceptr>(addr));
    if (r != CUDA_SUCCESS) return c.op_error("cuMemFree", r, Status::kInternal);
    return {};
  }

  Result<void> write_now(uint64_t addr, std::span<const std::byte> data) {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    if (data.empty()) return {};
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    if (auto s = c.ensure_staging(u); !s) return s;
    const DriverApi& a = c.api();
    bool busy[2] = {false, false};
    auto chunks = plan_chunks(data.size(), c.bopts().staging_chunk_bytes);
    for (size_t i = 0; i < chunks.size(); ++i) {
      int b = static_cast<int>(i % 2);
      if (busy[b]) {
        if (auto w = c.wait_event(u, c.staging_event(b), "mem_write"); !w) return w;
      }
      std::memcpy(c.staging(b), data.data() + chunks[i].offset, chunks[i].bytes);
      CUresult r = a.cuMemcpyHtoDAsync(static_cast<CUdeviceptr>(addr + chunks[i].offset),
                                       c.staging(b), chunks[i].bytes, c.stream());
      if (r == CUDA_SUCCESS) r = a.cuEventRecord(c.staging_event(b), c.stream());
      if (r != CUDA_SUCCESS) return c.op_error("cuMemcpyHtoDAsync", r, Status::kInternal);
      busy[b] = true;
    }
    for (int b = 0; b < 2; ++b) {
      if (!busy[b]) continue;
      if (auto w = c.wait_event(u, c.staging_event(b), "mem_write"); !w) return w;
    }
    return {};
  }

  Result<void> read_now(uint64_t addr, std::span<std::byte> out) {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    if (out.empty()) return {};
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    if (auto s = c.ensure_staging(u); !s) return s;
    const DriverApi& a = c.api();
    auto chunks = plan_chunks(out.size(), c.bopts().staging_chunk_bytes);
    auto issue = [&](size_t i) -> CUresult {
      int b = static_cast<int>(i % 2);
      CUresult r =
          a.cuMemcpyDtoHAsync(c.staging(b), static_cast<CUdeviceptr>(addr + chunks[i].offset),
                              chunks[i].bytes, c.stream());
      if (r == CUDA_SUCCESS) r = a.cuEventRecord(c.staging_event(b), c.stream());
      return r;
    };
    for (size_t i = 0; i < std::min<size_t>(2, chunks.size()); ++i) {
      if (CUresult r = issue(i); r != CUDA_SUCCESS)
        return c.op_error("cuMemcpyDtoHAsync", r, Status::kInternal);
    }
    for (size_t i = 0; i < chunks.size(); ++i) {
      int b = static_cast<int>(i % 2);
      if (auto w = c.wait_event(u, c.staging_event(b), "mem_read"); !w) return w;
      std::memcpy(out.data() + chunks[i].offset, c.staging(b), chunks[i].bytes);
      if (i + 2 < chunks.size()) {
        if (CUresult r = issue(i + 2); r != CUDA_SUCCESS) {
          return c.op_error("cuMemcpyDtoHAsync", r, Status::kInternal);
        }
      }
    }
    return {};
  }

 public:
  Result<uint64_t> module_load(ImageKind kind, std::span<const std::byte> image) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    if (image.empty()) return make_error(Status::kLoadFailed, "empty module image");
    // The driver reads a PTX image as a NUL-terminated string.
    std::vector<std::byte> copy;
    const void* data = image.data();
    if (kind == ImageKind::kPtx && image.back() != std::byte{0}) {
      copy.assign(image.begin(), image.end());
      copy.push_back(std::byte{0});
      data = copy.data();
    }
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    constexpr unsigned kLogBytes = 16 * 1024;
    std::vector<char> err_log(kLogBytes, '\0');
    std::vector<char> info_log(kLogBytes, '\0');
    CUjit_option keys[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                           CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                           CU_JIT_LOG_VERBOSE};
    void* values[] = {err_log.data(), reinterpret_cast<void*>(uintptr_t{kLogBytes}),
                      info_log.data(), reinterpret_cast<void*>(uintptr_t{kLogBytes}),
                      reinterpret_cast<void*>(uintptr_t{0})};
    CUmodule mod = nullptr;
    CUresult r = c.api().cuModuleLoadDataEx(&mod, data, 5, keys, values);
    if (r != CUDA_SUCCESS) {
      if (is_sticky_error(static_cast<int>(r)))
        return c.op_error("cuModuleLoadDataEx", r, Status::kLoadFailed);
      Error e = load_failure(c.api().error_name(r), jit_log_text(err_log), jit_log_text(info_log));
      e.message = std::string(image_kind_name(kind)) + " " + e.message;
      return e;
    }
    uint64_t handle = reinterpret_cast<uintptr_t>(mod);
    ModuleRec& rec = c.modules()[handle];
    rec.mod = mod;
    if (kind == ImageKind::kPtx) {
      const std::string_view text(reinterpret_cast<const char*>(image.data()), image.size());
      for (auto& [name, space] : ptx_variable_spaces(text)) rec.spaces.emplace(name, space);
    }
    return handle;
  }

  Result<ModuleVariable> module_global(uint64_t module, std::string_view name) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    auto it = c.modules().find(module);
    if (it == c.modules().end()) return make_error(Status::kInvalidHandle, "not a loaded module");
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    const std::string n(name);  // NUL-terminated (the codec refuses names containing NUL)
    CUdeviceptr p = 0;
    size_t bytes = 0;
    CUresult r = c.api().cuModuleGetGlobal(&p, &bytes, it->second.mod, n.c_str());
    if (r == CUDA_ERROR_NOT_FOUND || r == CUDA_ERROR_INVALID_VALUE)
      return make_error(Status::kInvalidArgument,
                        "the module has no .global or .const variable '" + n + "'");
    if (r != CUDA_SUCCESS) return c.op_error("cuModuleGetGlobal", r, Status::kInternal);
    auto sp = it->second.spaces.find(n);
    return ModuleVariable{static_cast<uint64_t>(p), static_cast<uint64_t>(bytes),
                          sp == it->second.spaces.end() ? VariableSpace::kUnknown : sp->second};
  }

  Result<void> module_unload(uint64_t module) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    auto it = c.modules().find(module);
    if (it == c.modules().end()) return make_error(Status::kInvalidHandle, "not a loaded module");
    if (!run_inline()) {
      // Launches ahead of it may still use the module: unloaded on the op
      // thread after them; gone from the tables now.
      ModuleRec rec = std::move(it->second);
      c.modules().erase(it);
      CUmodule mod = rec.mod;
      ops_.post([this, module, rec = std::move(rec), mod](bool cancelled) mutable {
        if (cancelled) {
          core_->modules()[module] = std::move(rec);  // the destroy unloads it
          return;
        }
        LeaseCore& cc = *core_;
        LeaseCore::Use u(cc);
        if (!u.live()) return;
        if (auto d = cc.drain(u); !d) return;
        if (CUresult r = cc.api().cuModuleUnload(mod); r != CUDA_SUCCESS)
          (void)cc.op_error("cuModuleUnload", r, Status::kInternal);
      });
      return {};
    }
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    if (auto d = c.drain(u); !d) return d;
    CUresult r = c.api().cuModuleUnload(it->second.mod);
    if (r != CUDA_SUCCESS) return c.op_error("cuModuleUnload", r, Status::kInternal);
    c.modules().erase(it);
    return {};
  }

  Result<void> launch(const LaunchRequest& req) override {
    LeaseCore& c = *core_;
    if (c.faulted()) return c.fault_error();
    auto mit = c.modules().find(req.module);
    if (mit == c.modules().end()) return make_error(Status::kInvalidHandle, "not a loaded module");
    LeaseCore::Use u(c);
    if (!u.live()) return c.fault_error();
    const DriverApi& a = c.api();

    auto kit = mit->second.kernels.find(req.kernel);
    if (kit == mit->second.kernels.end()) {
      auto k = describe_kernel(mit->second.mod, req.kernel);
      if (!k) return std::move(k).error();
      kit = mit->second.kernels.emplace(req.kernel, std::move(k).value()).first;
    }
    KernelRec& k = kit->second;

    LaunchLimits lim;
    const DeviceInfo& d = c.info();
    lim.max_threads_per_block = std::min(d.max_threads_per_block, k.max_threads);
    lim.max_block = d.max_block;
    lim.max_grid = d.max_grid;
    lim.max_shared_per_block = d.max_shared_per_block;
    lim.static_shared_bytes = k.static_shared;
    if (auto s = check_launch_shape(lim, req.grid, req.block, req.shared_bytes, req.kernel); !s)
      return s;
    if (k.params) {
      if (auto s = check_args(*k.params, req.args, req.kernel); !s) return s;
    } else {
      if (auto s = check_args_unknown_params(req.args, req.kernel); !s) return s;
    }
    if (req.shared_bytes > k.dynamic_shared_allowed) {
      // Dynamic shared memory above the default 48 KiB is opt-in per kernel.
      CUresult r = a.cuFuncSetAttribute(k.fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                        static_cast<int>(req.shared_bytes));
      if (r != CUDA_SUCCESS) return c.op_error("cuFuncSetAttribute", r, Status::kLaunchFailed);
      k.dynamic_shared_allowed = req.shared_bytes;
    }
    // Backpressure: the driver's launch queue is finite and a full one would
    // block a thread inside cuLaunchKernel behind a runaway kernel; and work
    // queued on the op thread goes first (stream order). Either way the
    // launch is issued from the op thread, never waited for here.
    if (!ops_.idle() || c.inflight_count() >= c.bopts().max_inflight_launches) {
      u.pause();
      ops_.post([this, fn = k.fn, req](bool cancelled) {
        if (cancelled) return;
        LeaseCore& cc = *core_;
        LeaseCore::Use uu(cc);
        if (!uu.live()) return;
        while (cc.inflight_count() >= cc.bopts().max_inflight_launches) {
          if (cc.faulted()) return;
          uu.pause();
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          if (!uu.resume()) return;
        }
        if (auto r = issue(uu, fn, req); !r) {
          cc.fail(make_error(
              Status::kSyncFailed,
              "launch of kernel '" + req.kernel + "' failed when issued: " + r.error().message));
        }
      });
      return {};
    }
    return issue(u, k.fn, req);
  }

  // Issues a validated launch on the stream. REQUIRES: u is live.
  Result<void> issue(LeaseCore::Use& u, CUfunction fn, const LaunchRequest& req) {
    (void)u;
    LeaseCore& c = *core_;
    const DriverApi& a = c.api();
    CUevent ev = c.take_event();
    if (ev == nullptr) return make_error(Status::kInternal, "cuEventCreate failed");
    std::vector<void*> params = param_pointers(req.args);
    CUresult r = a.cuLaunchKernel(fn, req.grid[0], req.grid[1], req.grid[2], req.block[0],
                                  req.block[1], req.block[2], req.shared_bytes, c.stream(),
                                  params.empty() ? nullptr : params.data(), nullptr);
    if (r != CUDA_SUCCESS) {
      c.give_event(ev);
      return c.op_error("cuLaunchKernel", r, Status::kLaunchFailed);
    }
    r = a.cuEventRecord(ev, c.stream());
    if (r != CUDA_SUCCESS) {
      c.give_event(ev);
      return c.op_error("cuEventRecord", r, Status::kInternal);
    }
    c.record_launch(ev, req.kernel);
    // The monitor must see this launch for the watchdog, even if no sync
    // ever comes.
    if (c.opts().watchdog_ms != 0) shared_->monitor.watch(core_);
    return {};
  }

  void sync(std::function<void(Result<void>)> done) override {
    if (ops_.idle()) return core_->sync(std::move(done), core_);
    // After the launches still queued on the op thread.
    ops_.post([core = core_, done = std::move(done)](bool cancelled) mutable {
      if (cancelled)
        return done(make_error(Status::kSyncFailed,
                               "launches cancelled: the lease ended before they finished"));
      core->sync(std::move(done), core);
    });
  }

  bool faulted() const override { return core_->faulted(); }

 private:
  Result<KernelRec> describe_kernel(CUmodule mod, const std::string& name) {
    const DriverApi& a = core_->api();
    KernelRec k;
    CUresult r = a.cuModuleGetFunction(&k.fn, mod, name.c_str());
    if (r == CUDA_ERROR_NOT_FOUND) {
      return make_error(Status::kLaunchFailed, "no kernel named '" + name + "' in the module");
    }
    if (r != CUDA_SUCCESS) return core_->op_error("cuModuleGetFunction", r, Status::kLaunchFailed);
    int v = 0;
    if (a.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, k.fn) == CUDA_SUCCESS &&
        v > 0) {
      k.max_threads = static_cast<uint32_t>(v);
    }
    if (a.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, k.fn) == CUDA_SUCCESS &&
        v >= 0) {
      k.static_shared = static_cast<uint32_t>(v);
    }
    if (a.cuFuncGetAttribute(&v, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, k.fn) ==
            CUDA_SUCCESS &&
        v >= 0) {
      k.dynamic_shared_allowed = static_cast<uint32_t>(v);
    }
    if (a.has_param_info()) {
      std::vector<ParamInfo> params;
      for (size_t i = 0;; ++i) {
        ParamInfo p;
        r = a.cuFuncGetParamInfo(k.fn, i, &p.offset, &p.size);
        if (r == CUDA_ERROR_INVALID_VALUE) break;  // past the last parameter
        if (r != CUDA_SUCCESS) {
          params.clear();
          break;
        }
        params.push_back(p);
        if (i > 4096) break;  // more than the parameter space can hold
      }
      if (r == CUDA_ERROR_INVALID_VALUE) k.params = std::move(params);
    }
    return k;
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<LeaseCore> core_;
  OpQueue ops_;  // declared last: destroyed (joined) first
};

// ---------------------------------------------------------------------------

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(std::shared_ptr<Shared> s) : s_(std::move(s)) {}

  std::string_view name() const override { return "cuda"; }

  std::vector<DeviceInfo> devices() override {
    std::lock_guard lk(s_->mu);
    std::vector<DeviceInfo> out;
    const DriverApi& a = *s_->api;
    for (auto& d : s_->devices) {
      if (d.probe != nullptr && a.cuCtxPushCurrent(d.probe) == CUDA_SUCCESS) {
        size_t free = 0, total = 0;
        if (a.cuMemGetInfo(&free, &total) == CUDA_SUCCESS) d.info.free_bytes = free;
        CUcontext prev = nullptr;
        (void)a.cuCtxPopCurrent(&prev);
      }
      out.push_back(d.info);
    }
    return out;
  }

  uint64_t context_overhead_bytes(uint16_t device) const override {
    return device < s_->devices.size() ? s_->devices[device].overhead : 0;
  }

  Result<std::unique_ptr<DeviceContext>> create_context(uint16_t device,
                                                        const ContextOptions& opts) override {
    if (device >= s_->devices.size()) {
      return make_error(Status::kInvalidArgument, "no CUDA device " + std::to_string(device));
    }
    Device& d = s_->devices[device];
    auto core = std::make_shared<LeaseCore>(s_->api, s_->monitor, d.info, opts, s_->opts);
    if (opts.session_exclusive) {
      auto g = take_group(device);
      if (!g) return std::move(g).error();
      size_t gi = g.value();
      std::weak_ptr<Shared> ws = s_;
      auto release = [ws, device, gi] {
        if (auto s = ws.lock()) {
          std::lock_guard lk(s->mu);
          s->devices[device].group_used[gi] = false;
        }
      };
      CUdevResource res;
      {
        std::lock_guard lk(s_->mu);
        res = d.groups[gi];
      }
      if (auto r = core->init_green(d.dev, res, release); !r) return std::move(r).error();
    } else {
      if (auto r = core->init_regular(d.dev); !r) return std::move(r).error();
    }
    return std::unique_ptr<DeviceContext>(new CudaContext(s_, std::move(core)));
  }

 private:
  Result<size_t> take_group(uint16_t device) {
    const DriverApi& a = *s_->api;
    if (!s_->opts.green_contexts) {
      return make_error(Status::kUnsupported,
                        "SessionExclusive needs green contexts, which this node has disabled "
                        "(see docs/CUDA_BACKEND.md: they share one address space per device)");
    }
    if (!a.has_green_contexts()) {
      return make_error(Status::kUnsupported,
                        "SessionExclusive needs CUDA green contexts (driver 12.5 or newer); this "
                        "driver is " +
                            std::to_string(a.driver_version));
    }
    std::lock_guard lk(s_->mu);
    Device& d = s_->devices[device];
    if (!d.groups_built) {
      CUdevResource sm{};
      CUresult r = a.cuDeviceGetDevResource(d.dev, &sm, CU_DEV_RESOURCE_TYPE_SM);
      if (r != CUDA_SUCCESS) {
        return make_error(Status::kUnsupported,
                          "cuDeviceGetDevResource(SM) failed: " + a.describe(r));
      }
      // Minimum partition: 8 SMs (multiple of 8) on compute capability 9+,
      // 4 (multiple of 2) on 8.x, 2 before (driver API docs of
      // cuDevSmResourceSplitByCount).
      uint32_t gran = d.info.cc_major >= 9 ? 8 : (d.info.cc_major == 8 ? 4 : 2);
      uint32_t want = exclusive_sm_partition(sm.sm.smCount, s_->opts.exclusive_sm_count, gran);
      unsigned n = 0;
      r = a.cuDevSmResourceSplitByCount(nullptr, &n, &sm, nullptr, 0, want);
      if (r != CUDA_SUCCESS || n == 0) {
        return make_error(Status::kUnsupported,
                          "cuDevSmResourceSplitByCount failed: " + a.describe(r));
      }
      d.groups.resize(n);
      r = a.cuDevSmResourceSplitByCount(d.groups.data(), &n, &sm, nullptr, 0, want);
      if (r != CUDA_SUCCESS) {
        d.groups.clear();
        return make_error(Status::kUnsupported,
                          "cuDevSmResourceSplitByCount failed: " + a.describe(r));
      }
      d.groups.resize(n);
      d.group_used.assign(n, false);
      d.groups_built = true;
    }
    for (size_t i = 0; i < d.groups.size(); ++i) {
      if (!d.group_used[i]) {
        d.group_used[i] = true;
        return i;
      }
    }
    return make_error(Status::kCapacityExceeded, "every SM partition of device " +
                                                     std::to_string(device) +
                                                     " is held by a SessionExclusive lease");
  }

  std::shared_ptr<Shared> s_;
};

// Context overhead: free memory with one context (the probe) minus free
// memory with a second, lease-like context that has loaded a module and run
// a kernel (so deferred allocations are counted), rounded up to 2 MiB.
Result<uint64_t> measure_overhead(const DriverApi& a, const CudaBackendOptions& o, CUdevice dev,
                                  CUcontext probe) {
  size_t free0 = 0, free1 = 0, total = 0;
  if (CUresult r = a.cuCtxPushCurrent(probe); r != CUDA_SUCCESS) {
    return make_error(Status::kInternal, "cuCtxPushCurrent failed: " + a.describe(r));
  }
  CUresult r = a.cuMemGetInfo(&free0, &total);
  CUcontext prev = nullptr;
  (void)a.cuCtxPopCurrent(&prev);
  if (r != CUDA_SUCCESS)
    return make_error(Status::kInternal, "cuMemGetInfo failed: " + a.describe(r));

  CUcontext c = nullptr;
  r = a.cuCtxCreate(&c, CU_CTX_SCHED_AUTO, dev);
  if (r != CUDA_SUCCESS)
    return make_error(Status::kInternal, "cuCtxCreate failed: " + a.describe(r));
  (void)a.cuCtxSetLimit(CU_LIMIT_STACK_SIZE, o.stack_bytes_per_thread);
  (void)a.cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, o.printf_fifo_bytes);
  (void)a.cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, o.malloc_heap_bytes);
  CUstream s = nullptr;
  CUmodule m = nullptr;
  CUfunction f = nullptr;
  r = a.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
  if (r == CUDA_SUCCESS) r = a.cuModuleLoadDataEx(&m, kNoopPtx, 0, nullptr, nullptr);
  if (r == CUDA_SUCCESS) r = a.cuModuleGetFunction(&f, m, "gpulease_noop");
  if (r == CUDA_SUCCESS) r = a.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, nullptr, nullptr);
  if (r == CUDA_SUCCESS) r = a.cuStreamSynchronize(s);
  if (r == CUDA_SUCCESS) r = a.cuMemGetInfo(&free1, &total);
  (void)a.cuCtxDestroy(c);
  if (r != CUDA_SUCCESS) {
    return make_error(Status::kInternal, "measuring the context overhead failed: " + a.describe(r));
  }
  uint64_t used = free0 > free1 ? free0 - free1 : 0;
  used = std::max(used, kTwoMiB);
  return (used + kTwoMiB - 1) / kTwoMiB * kTwoMiB;
}

}  // namespace

Result<std::unique_ptr<DeviceBackend>> make_cuda_backend(const CudaBackendOptions& options) {
  auto loaded = load_driver(options.driver_path, options.lazy_loading);
  if (!loaded) return std::move(loaded).error();
  ApiPtr api = std::move(loaded).value();
  const DriverApi& a = *api;

  int count = 0;
  CUresult r = a.cuDeviceGetCount(&count);
  if (r != CUDA_SUCCESS)
    return make_error(Status::kUnsupported,
                      "no CUDA device: cuDeviceGetCount failed: " + a.describe(r));
  if (count <= 0)
    return make_error(Status::kUnsupported, "no CUDA device: the driver reports 0 devices");

  auto shared = std::make_shared<Shared>(api, options);
  for (int i = 0; i < count && i < 0xffff; ++i) {
    Device d;
    if ((r = a.cuDeviceGet(&d.dev, i)) != CUDA_SUCCESS) {
      return make_error(Status::kInternal, "cuDeviceGet failed: " + a.describe(r));
    }
    DeviceInfo& info = d.info;
    info.index = static_cast<uint16_t>(i);
    char name[256] = {};
    if (a.cuDeviceGetName(name, sizeof(name) - 1, d.dev) == CUDA_SUCCESS) info.name = name;
    CUuuid uuid{};
    if (a.cuDeviceGetUuid(&uuid, d.dev) == CUDA_SUCCESS)
      std::memcpy(info.uuid.data(), uuid.bytes, 16);
    auto attr = [&](CUdevice_attribute at, uint32_t fallback) -> uint32_t {
      int v = 0;
      return a.cuDeviceGetAttribute(&v, at, d.dev) == CUDA_SUCCESS && v > 0
                 ? static_cast<uint32_t>(v)
                 : fallback;
    };
    info.cc_major = static_cast<uint8_t>(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
    info.cc_minor = static_cast<uint8_t>(attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0));
    info.sm_count = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0);
    info.max_threads_per_block = attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024);
    info.max_block = {attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 1024),
                      attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 1024),
                      attr(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 64)};
    info.max_grid = {attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, 0x7fffffff),
                     attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 65535),
                     attr(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 65535)};
    info.max_shared_per_block =
        attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
             attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 48 * 1024));
    size_t total = 0;
    if ((r = a.cuDeviceTotalMem(&total, d.dev)) != CUDA_SUCCESS) {
      return make_error(Status::kInternal, "cuDeviceTotalMem failed: " + a.describe(r));
    }
    info.total_bytes = total;

    // The probe context answers cuMemGetInfo for the inventory; it is the
    // backend's own and is created before any lease, so its memory is
    // already missing from the free bytes the node admits against.
    if ((r = a.cuCtxCreate(&d.probe, CU_CTX_SCHED_AUTO, d.dev)) != CUDA_SUCCESS) {
      d.probe = nullptr;
      shared->devices.push_back(std::move(d));  // destroyed with `shared`
      return make_error(Status::kUnsupported, "cannot create a context on CUDA device " +
                                                  std::to_string(i) + ": " + a.describe(r));
    }
    (void)a.cuCtxSetLimit(CU_LIMIT_STACK_SIZE, options.stack_bytes_per_thread);
    (void)a.cuCtxSetLimit(CU_LIMIT_PRINTF_FIFO_SIZE, options.printf_fifo_bytes);
    (void)a.cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, options.malloc_heap_bytes);
    CUcontext prev = nullptr;
    (void)a.cuCtxPopCurrent(&prev);
    shared->devices.push_back(std::move(d));
    Device& dd = shared->devices.back();
    auto oh = measure_overhead(a, options, dd.dev, dd.probe);
    if (!oh) return std::move(oh).error();
    dd.overhead = oh.value();
  }
  return std::unique_ptr<DeviceBackend>(new CudaBackend(std::move(shared)));
}

}  // namespace gpulease::server::cuda
