// cuda backend benchmarks, each against an in-process Driver API baseline
// measured in the same run (reported as the `ratio` counter: backend time /
// baseline time, or baseline bandwidth / backend bandwidth -- 1.0 is parity).
//
//   BM_CudaAcquire            create_context+destroy  vs cuCtxCreate+cuCtxDestroy
//   BM_CudaContextOverhead    context_overhead_bytes and the measured cost of 4 leases
//   BM_CudaLaunchRoundTrip    launch+sync (callback)  vs cuLaunchKernel+cuStreamSynchronize
//   BM_CudaMemWrite/Read      mem_write / mem_read    vs cuMemcpyHtoD / DtoH from pinned memory
//
// Without a device every benchmark reports the reason via SkipWithError.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>

#include "gpulease/cuda/cuda_backend.hpp"
#include "gpulease/cuda/driver_api.hpp"

namespace gpulease::server::cuda {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kNoopPtx[] =
    ".version 7.0\n.target sm_50\n.address_size 64\n.visible .entry noop()\n{\n\tret;\n}\n";

struct Env {
  std::unique_ptr<DeviceBackend> backend;
  std::shared_ptr<const DriverApi> api;
  std::string error;
};

Env& env() {
  static Env e = [] {
    Env x;
    auto b = make_cuda_backend();
    if (!b) {
      x.error = "no CUDA device: " + b.error().message;
      return x;
    }
    x.backend = std::move(b).value();
    auto a = load_driver("libcuda.so.1");
    if (!a) {
      x.error = a.error().message;
      x.backend.reset();
      return x;
    }
    x.api = a.value();
    return x;
  }();
  return e;
}

bool ready(benchmark::State& state) {
  if (env().backend) return true;
  state.SkipWithError(env().error.c_str());
  return false;
}

// An in-process context for baselines (RAII).
struct RawCtx {
  const DriverApi& a;
  CUcontext ctx = nullptr;
  CUstream stream = nullptr;
  explicit RawCtx(const DriverApi& api) : a(api) {
    CUdevice dev = 0;
    (void)a.cuDeviceGet(&dev, 0);
    (void)a.cuCtxCreate(&ctx, CU_CTX_SCHED_AUTO, dev);
    (void)a.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
  }
  ~RawCtx() {
    (void)a.cuCtxDestroy(ctx);  // frees the stream and everything; pops it
  }
};

Result<void> sync_wait(DeviceContext& ctx) {
  std::promise<Result<void>> p;
  auto f = p.get_future();
  ctx.sync([&p](Result<void> r) { p.set_value(std::move(r)); });
  return f.get();
}

template <typename Fn>
double seconds_per_call(int reps, Fn&& fn) {
  auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return std::chrono::duration<double>(Clock::now() - t0).count() / reps;
}

void BM_CudaAcquire(benchmark::State& state) {
  if (!ready(state)) return;
  const DriverApi& a = *env().api;
  double base = seconds_per_call(20, [&] {
    CUdevice dev = 0;
    CUcontext c = nullptr;
    (void)a.cuDeviceGet(&dev, 0);
    (void)a.cuCtxCreate(&c, CU_CTX_SCHED_AUTO, dev);
    (void)a.cuCtxDestroy(c);
  });
  auto t0 = Clock::now();
  int64_t n = 0;
  for (auto _ : state) {
    auto c = env().backend->create_context(0, {.quota_bytes = 1 << 20});
    if (!c) {
      state.SkipWithError(c.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(c.value().get());
    ++n;
  }
  double per = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(n);
  state.counters["baseline_us"] = base * 1e6;
  state.counters["ratio"] = per / base;
}
BENCHMARK(BM_CudaAcquire)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CudaContextOverhead(benchmark::State& state) {
  if (!ready(state)) return;
  auto& b = *env().backend;
  for (auto _ : state) {
    uint64_t before = b.devices()[0].free_bytes;
    std::vector<std::unique_ptr<DeviceContext>> held;
    for (int i = 0; i < 4; ++i) {
      auto c = b.create_context(0, {.quota_bytes = 1 << 20});
      if (!c) {
        state.SkipWithError(c.error().message.c_str());
        return;
      }
      auto m = c.value()->module_load(
          ImageKind::kPtx, {reinterpret_cast<const std::byte*>(kNoopPtx), sizeof(kNoopPtx)});
      if (m) {
        LaunchRequest r;
        r.module = m.value();
        r.kernel = "noop";
        (void)c.value()->launch(r);
        (void)sync_wait(*c.value());
      }
      held.push_back(std::move(c).value());
    }
    uint64_t after = b.devices()[0].free_bytes;
    state.counters["reported_MiB"] = static_cast<double>(b.context_overhead_bytes(0)) / (1 << 20);
    state.counters["measured_MiB_per_lease"] =
        static_cast<double>(before > after ? before - after : 0) / 4 / (1 << 20);
  }
}
BENCHMARK(BM_CudaContextOverhead)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_CudaLaunchRoundTrip(benchmark::State& state) {
  if (!ready(state)) return;
  const DriverApi& a = *env().api;
  double base = 0;
  {
    RawCtx raw(a);
    CUmodule m = nullptr;
    CUfunction f = nullptr;
    (void)a.cuModuleLoadDataEx(&m, kNoopPtx, 0, nullptr, nullptr);
    (void)a.cuModuleGetFunction(&f, m, "noop");
    auto once = [&] {
      (void)a.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, raw.stream, nullptr, nullptr);
      (void)a.cuStreamSynchronize(raw.stream);
    };
    for (int i = 0; i < 100; ++i) once();
    base = seconds_per_call(2000, once);
  }
  auto c = env().backend->create_context(0, {.quota_bytes = 1 << 20});
  if (!c) {
    state.SkipWithError(c.error().message.c_str());
    return;
  }
  auto& ctx = *c.value();
  auto m = ctx.module_load(ImageKind::kPtx,
                           {reinterpret_cast<const std::byte*>(kNoopPtx), sizeof(kNoopPtx)});
  if (!m) {
    state.SkipWithError(m.error().message.c_str());
    return;
  }
  LaunchRequest r;
  r.module = m.value();
  r.kernel = "noop";
  r.block = {32, 1, 1};
  for (int i = 0; i < 100; ++i) {
    (void)ctx.launch(r);
    (void)sync_wait(ctx);
  }
  auto t0 = Clock::now();
  int64_t n = 0;
  for (auto _ : state) {
    (void)ctx.launch(r);
    auto s = sync_wait(ctx);
    if (!s) {
      state.SkipWithError(s.error().message.c_str());
      return;
    }
    ++n;
  }
  double per = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(n);
  state.counters["baseline_us"] = base * 1e6;
  state.counters["ratio"] = per / base;
}
BENCHMARK(BM_CudaLaunchRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

void mem_bench(benchmark::State& state, bool write) {
  if (!ready(state)) return;
  const DriverApi& a = *env().api;
  const size_t bytes = static_cast<size_t>(state.range(0));
  double base = 0;
  {
    RawCtx raw(a);
    void* pinned = nullptr;
    CUdeviceptr d = 0;
    if (a.cuMemHostAlloc(&pinned, bytes, 0) != CUDA_SUCCESS ||
        a.cuMemAlloc(&d, bytes) != CUDA_SUCCESS) {
      state.SkipWithError("baseline allocation failed");
      return;
    }
    std::memset(pinned, 1, bytes);
    auto once = [&] {
      if (write) {
        (void)a.cuMemcpyHtoD(d, pinned, bytes);
      } else {
        (void)a.cuMemcpyDtoH(pinned, d, bytes);
      }
    };
    once();
    base = seconds_per_call(10, once);
    (void)a.cuMemFreeHost(pinned);
  }
  auto c = env().backend->create_context(0, {.quota_bytes = bytes});
  if (!c) {
    state.SkipWithError(c.error().message.c_str());
    return;
  }
  auto& ctx = *c.value();
  auto buf = ctx.mem_alloc(bytes);
  if (!buf) {
    state.SkipWithError(buf.error().message.c_str());
    return;
  }
  std::vector<std::byte> host(bytes, std::byte{1});  // pageable, as the node's frame buffers are
  auto t0 = Clock::now();
  int64_t n = 0;
  for (auto _ : state) {
    Result<void> r = write ? ctx.mem_write(buf.value(), host) : ctx.mem_read(buf.value(), host);
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(host.data());
    ++n;
  }
  double per = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(n);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * n);
  state.counters["baseline_GBps"] = static_cast<double>(bytes) / base / 1e9;
  state.counters["ratio"] = base / per;  // backend bandwidth / baseline bandwidth
}

void BM_CudaMemWrite(benchmark::State& state) {
  mem_bench(state, true);
}
void BM_CudaMemRead(benchmark::State& state) {
  mem_bench(state, false);
}
BENCHMARK(BM_CudaMemWrite)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(256 << 20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CudaMemRead)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(256 << 20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace gpulease::server::cuda

BENCHMARK_MAIN();
