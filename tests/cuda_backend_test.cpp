// The cuda backend on a real GPU (ctest label `gpu`). Without a usable
// device every test here reports SKIPPED with the reason, e.g.
//   "no CUDA device: libcuda.so.1 not found: ..."
// Run them on a GPU machine with scripts/gpu-check (docs/CUDA_BACKEND.md).
#include "gpulease/cuda/cuda_backend.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "gpulease/cuda/driver_api.hpp"

namespace gpulease::server::cuda {
namespace {

using namespace std::chrono_literals;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The checked-in PTX says `.version 9.0` (CUDA 13's ptx ISA), which only a
// CUDA 13 driver JITs. On an older driver the tests lower the version line
// to 7.8 (CUDA 11.8), which these kernels need nothing beyond -- checked
// with `ptxas -arch=sm_90` on every file of kernels/ptx.
std::string ptx_for_driver(std::string ptx, int driver_version) {
  if (driver_version >= 13000) return ptx;
  auto pos = ptx.find(".version 9.0");
  if (pos != std::string::npos) ptx.replace(pos, 12, ".version 7.8");
  return ptx;
}

// The source tree: GPULEASE_SOURCE_DIR from the environment when set (a
// build carried to another machine, scripts/gpu-check --carried), else the
// one this binary was built from.
std::string source_dir() {
  const char* env = std::getenv("GPULEASE_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? env : GPULEASE_SOURCE_DIR;
}
std::string ptx_path(const std::string& file) { return source_dir() + "/kernels/ptx/" + file; }

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

template <typename T>
std::vector<std::byte> arg(T v) {
  std::vector<std::byte> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}
template <typename T>
std::span<std::byte> bytes_of(std::vector<T>& v) {
  return {reinterpret_cast<std::byte*>(v.data()), v.size() * sizeof(T)};
}

// Waits for sync's callback (which must come without this thread's help).
Result<void> sync_wait(DeviceContext& ctx, std::chrono::seconds limit = 120s) {
  auto p = std::make_shared<std::promise<Result<void>>>();
  auto f = p->get_future();
  ctx.sync([p](Result<void> r) { p->set_value(std::move(r)); });
  if (f.wait_for(limit) != std::future_status::ready) {
    return make_error(Status::kInternal, "sync did not complete within the test's limit");
  }
  return f.get();
}

class CudaBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto b = make_cuda_backend();
    if (b) {
      backend_ = std::move(b).value().release();
      auto d = load_driver("libcuda.so.1");
      driver_version_ = d ? d.value()->driver_version : 0;
    } else {
      skip_reason_ = b.error().message;
    }
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
  }
  void SetUp() override {
    if (backend_ == nullptr) GTEST_SKIP() << "no CUDA device: " << skip_reason_;
  }

  std::unique_ptr<DeviceContext> context(ContextOptions o = {}) {
    if (o.quota_bytes == 0) o.quota_bytes = uint64_t{1} << 30;
    auto c = backend_->create_context(0, o);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? std::move(c).value() : nullptr;
  }
  uint64_t load(DeviceContext& ctx, const std::string& file) {
    std::string ptx =
        ptx_for_driver(read_text(ptx_path(file)), driver_version_);
    auto m = ctx.module_load(ImageKind::kPtx, as_bytes(ptx));
    EXPECT_TRUE(m) << (m ? "" : m.error().message);
    return m ? m.value() : 0;
  }
  static LaunchRequest req(uint64_t mod, const char* kernel, uint32_t n, uint32_t block = 256) {
    LaunchRequest r;
    r.module = mod;
    r.kernel = kernel;
    r.grid = {(n + block - 1) / block, 1, 1};
    r.block = {block, 1, 1};
    return r;
  }
  uint64_t free_now() { return backend_->devices().at(0).free_bytes; }

  // Recipe 30 on one context; returns whether the result matched the CPU.
  ::testing::AssertionResult recipe30(DeviceContext& ctx, uint32_t n, float factor, float b) {
    std::vector<float> host(n);
    for (uint32_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 1000) * 0.25f - 17.0f;
    uint64_t mod = load(ctx, "transform.ptx");
    auto buf = ctx.mem_alloc(n * sizeof(float));
    if (!buf) return ::testing::AssertionFailure() << buf.error().message;
    if (auto r = ctx.mem_write(buf.value(), bytes_of(host)); !r) return ::testing::AssertionFailure() << r.error().message;
    auto s = req(mod, "scale", n);
    s.args = {arg(buf.value()), arg(static_cast<int32_t>(n)), arg(factor)};
    auto bi = req(mod, "bias", n);
    bi.args = {arg(buf.value()), arg(static_cast<int32_t>(n)), arg(b)};
    if (auto r = ctx.launch(s); !r) return ::testing::AssertionFailure() << r.error().message;
    if (auto r = ctx.launch(bi); !r) return ::testing::AssertionFailure() << r.error().message;
    if (auto r = sync_wait(ctx); !r) return ::testing::AssertionFailure() << r.error().message;
    std::vector<float> out(n);
    if (auto r = ctx.mem_read(buf.value(), bytes_of(out)); !r) return ::testing::AssertionFailure() << r.error().message;
    for (uint32_t i = 0; i < n; ++i) {
      float want = host[i] * factor;
      want = want + b;
      if (std::memcmp(&out[i], &want, 4) != 0) {
        return ::testing::AssertionFailure() << "element " << i << ": " << out[i] << " != " << want;
      }
    }
    if (auto r = ctx.mem_free(buf.value()); !r) return ::testing::AssertionFailure() << r.error().message;
    return ::testing::AssertionSuccess();
  }

  static inline DeviceBackend* backend_ = nullptr;
  static inline std::string skip_reason_;
  static inline int driver_version_ = 0;
};

TEST_F(CudaBackendTest, InventoryDescribesEveryDevice) {
  auto devs = backend_->devices();
  ASSERT_FALSE(devs.empty());
  for (const auto& d : devs) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_NE(d.uuid, (std::array<uint8_t, 16>{}));
    EXPECT_GE(d.cc_major, 7);
    EXPECT_GT(d.sm_count, 0u);
    EXPECT_GT(d.total_bytes, 0u);
    EXPECT_GT(d.free_bytes, 0u);
    EXPECT_LE(d.free_bytes, d.total_bytes);
    EXPECT_GE(d.max_threads_per_block, 1024u);
    EXPECT_GE(d.max_shared_per_block, 48u * 1024);
    uint64_t oh = backend_->context_overhead_bytes(d.index);
    EXPECT_GT(oh, 0u);
    EXPECT_LT(oh, d.total_bytes / 4);
    std::cout << "[ INFO     ] device " << d.index << ": " << d.name << " cc " << int(d.cc_major) << "."
              << int(d.cc_minor) << ", " << d.sm_count << " SMs, " << (d.total_bytes >> 20)
              << " MiB, context overhead " << (oh >> 20) << " MiB, driver " << driver_version_ << "\n";
  }
}

TEST_F(CudaBackendTest, MemoryRoundTripsAtEverySize) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  std::mt19937 rng(7);
  // 1 byte, one chunk, chunk + 3 (two chunks, uneven), 9 chunks + 5.
  for (size_t n : {size_t{1}, size_t{4096}, (size_t{4} << 20) + 3, (size_t{36} << 20) + 5}) {
    std::vector<uint8_t> in(n);
    for (auto& v : in) v = static_cast<uint8_t>(rng());
    auto buf = ctx->mem_alloc(n);
    ASSERT_TRUE(buf) << buf.error().message;
    ASSERT_TRUE(ctx->mem_write(buf.value(), bytes_of(in)));
    std::vector<uint8_t> out(n, 0);
    ASSERT_TRUE(ctx->mem_read(buf.value(), bytes_of(out)));
    EXPECT_EQ(in, out) << "size " << n;
    // A read of an interior range.
    if (n > 100) {
      std::vector<uint8_t> part(50);
      ASSERT_TRUE(ctx->mem_read(buf.value() + 37, bytes_of(part)));
      EXPECT_TRUE(std::equal(part.begin(), part.end(), in.begin() + 37));
    }
    ASSERT_TRUE(ctx->mem_free(buf.value()));
  }
}

TEST_F(CudaBackendTest, AllocationsBeyondTheQuotaFailAndFreesGiveItBack) {
  ContextOptions o;
  o.quota_bytes = 64 << 20;
  auto ctx = context(o);
  ASSERT_TRUE(ctx);
  auto a = ctx->mem_alloc(48 << 20);
  ASSERT_TRUE(a);
  auto b = ctx->mem_alloc(32 << 20);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status(), Status::kAllocFailed);
  EXPECT_NE(b.error().message.find("quota"), std::string::npos);
  ASSERT_TRUE(ctx->mem_free(a.value()));
  auto c = ctx->mem_alloc(64 << 20);
  EXPECT_TRUE(c);
  EXPECT_FALSE(ctx->mem_free(12345));
}

TEST_F(CudaBackendTest, DeviceOutOfMemoryIsAllocFailed) {
  ContextOptions o;
  o.quota_bytes = 0;  // backend quota off: the device itself must say no
  auto c = backend_->create_context(0, o);
  ASSERT_TRUE(c);
  auto huge = c.value()->mem_alloc(backend_->devices()[0].total_bytes * 2);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.status(), Status::kAllocFailed);
  EXPECT_FALSE(c.value()->faulted());
}

TEST_F(CudaBackendTest, Recipe30ScaleThenBiasMatchesTheCpu) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(recipe30(*ctx, (1u << 20) + 7, 2.5f, -0.75f));
}

TEST_F(CudaBackendTest, Recipe34PipelineMatchesTheCpu) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  uint64_t mod = load(*ctx, "pipeline.ptx");
  const uint32_t n = 1 << 20;
  const float threshold = 0.2f;
  std::vector<uint8_t> raw(n);
  std::mt19937 rng(34);
  for (auto& v : raw) v = static_cast<uint8_t>(rng());
  // CPU reference, written from kernels/pipeline.cu's contract.
  std::vector<float> dec(n), den(n);
  std::vector<uint8_t> want(n);
  for (uint32_t i = 0; i < n; ++i) dec[i] = static_cast<float>(raw[i]) / 255.0f;
  for (uint32_t i = 0; i < n; ++i) {
    float c = dec[i];
    float l = i > 0 ? dec[i - 1] : c;
    float r = i + 1 < n ? dec[i + 1] : c;
    float s = (l + c + r) / 3.0f;
    den[i] = s > threshold ? s : 0.0f;
  }
  for (uint32_t i = 0; i < n; ++i) {
    float v = std::fmin(std::fmax(den[i], 0.0f), 1.0f);
    want[i] = static_cast<uint8_t>(v * 255.0f + 0.5f);
  }
  auto d_raw = ctx->mem_alloc(n), d_dec = ctx->mem_alloc(n * 4), d_den = ctx->mem_alloc(n * 4),
       d_out = ctx->mem_alloc(n);
  ASSERT_TRUE(d_raw && d_dec && d_den && d_out);
  ASSERT_TRUE(ctx->mem_write(d_raw.value(), bytes_of(raw)));
  auto l1 = req(mod, "decode", n);
  l1.args = {arg(d_raw.value()), arg(d_dec.value()), arg(int32_t(n))};
  auto l2 = req(mod, "denoise", n);
  l2.args = {arg(d_dec.value()), arg(d_den.value()), arg(int32_t(n)), arg(threshold)};
  auto l3 = req(mod, "encode", n);
  l3.args = {arg(d_den.value()), arg(d_out.value()), arg(int32_t(n))};
  ASSERT_TRUE(ctx->launch(l1));
  ASSERT_TRUE(ctx->launch(l2));
  ASSERT_TRUE(ctx->launch(l3));
  auto s = sync_wait(*ctx);
  ASSERT_TRUE(s) << s.error().message;
  std::vector<uint8_t> out(n);
  ASSERT_TRUE(ctx->mem_read(d_out.value(), bytes_of(out)));
  EXPECT_EQ(out, want);
}

TEST_F(CudaBackendTest, SyncWithNothingInFlightCompletesAtOnce) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(sync_wait(*ctx, 5s));
}

TEST_F(CudaBackendTest, AFutureJitVersionIsLoadFailedWithTheLog) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  std::string ptx = ".version 99.0\n.target sm_50\n.address_size 64\n.visible .entry k() { ret; }\n";
  auto m = ctx->module_load(ImageKind::kPtx, as_bytes(ptx));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.status(), Status::kLoadFailed);
  EXPECT_NE(m.error().message.find("99.0"), std::string::npos) << m.error().message;
  EXPECT_FALSE(ctx->faulted());
}

TEST_F(CudaBackendTest, GarbageImagesAreLoadFailed) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  std::string junk(1000, '\x7f');
  for (ImageKind k : {ImageKind::kPtx, ImageKind::kCubin, ImageKind::kFatbin}) {
    auto m = ctx->module_load(k, as_bytes(junk));
    ASSERT_FALSE(m);
    EXPECT_EQ(m.status(), Status::kLoadFailed) << m.error().message;
  }
}

TEST_F(CudaBackendTest, UnknownKernelsAndBadShapesAreLaunchFailed) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  uint64_t mod = load(*ctx, "transform.ptx");
  auto buf = ctx->mem_alloc(4096);
  ASSERT_TRUE(buf);
  auto r = req(mod, "no_such_kernel", 1);
  auto l = ctx->launch(r);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.status(), Status::kLaunchFailed);

  r = req(mod, "scale", 1024);
  r.args = {arg(buf.value()), arg(int32_t(1024)), arg(1.0f)};
  r.block = {2048, 1, 1};
  EXPECT_EQ(ctx->launch(r).status(), Status::kLaunchFailed);
  r.block = {32, 1, 1};
  r.shared_bytes = 16u << 20;
  EXPECT_EQ(ctx->launch(r).status(), Status::kLaunchFailed);
  r.shared_bytes = 0;
  r.grid = {1, 1u << 17, 1};
  EXPECT_EQ(ctx->launch(r).status(), Status::kLaunchFailed);
  EXPECT_FALSE(ctx->faulted());
  EXPECT_TRUE(sync_wait(*ctx));
}

TEST_F(CudaBackendTest, ArgumentMismatchIsLaunchFailedNotACorruptLaunch) {
  auto d = load_driver("libcuda.so.1");
  ASSERT_TRUE(d);
  if (!d.value()->has_param_info()) {
    GTEST_SKIP() << "driver " << d.value()->driver_version << " has no cuFuncGetParamInfo (12.4+)";
  }
  auto ctx = context();
  ASSERT_TRUE(ctx);
  uint64_t mod = load(*ctx, "transform.ptx");
  auto buf = ctx->mem_alloc(4096);
  ASSERT_TRUE(buf);
  auto r = req(mod, "scale", 1024);
  r.args = {arg(buf.value()), arg(int32_t(1024))};  // factor missing
  auto l = ctx->launch(r);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.status(), Status::kLaunchFailed);
  EXPECT_NE(l.error().message.find("takes 3 parameters"), std::string::npos) << l.error().message;
  r.args = {arg(buf.value()), arg(int64_t(1024)), arg(1.0f)};  // n as 8 bytes
  l = ctx->launch(r);
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("parameter 1 is 4 bytes"), std::string::npos) << l.error().message;
  EXPECT_FALSE(ctx->faulted());
}

TEST_F(CudaBackendTest, AnIllegalAddressFaultsThatLeaseOnly) {
  auto bad = context();
  auto good = context();
  ASSERT_TRUE(bad && good);
  uint64_t mod = load(*bad, "faults.ptx");
  const uint32_t n = 1024;
  auto in = bad->mem_alloc(n * 4), out = bad->mem_alloc(n * 4);
  ASSERT_TRUE(in && out);
  auto r = req(mod, "oob_read", n);
  // 2^28 floats (1 GiB) past the buffer: unmapped in this context.
  r.args = {arg(in.value()), arg(out.value()), arg(int32_t(n)), arg(int32_t(1 << 28))};
  ASSERT_TRUE(bad->launch(r));
  auto s = sync_wait(*bad);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.status(), Status::kSyncFailed);
  EXPECT_NE(s.error().message.find("CUDA_ERROR_ILLEGAL_ADDRESS"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("oob_read"), std::string::npos) << s.error().message;
  EXPECT_TRUE(bad->faulted());
  EXPECT_EQ(bad->mem_alloc(16).status(), Status::kLeaseFaulted);
  EXPECT_FALSE(sync_wait(*bad));  // stays faulted
  // Another lease's context is untouched.
  EXPECT_FALSE(good->faulted());
  EXPECT_TRUE(recipe30(*good, 4096, 3.0f, 1.0f));
}

TEST_F(CudaBackendTest, TheWatchdogStopsALongKernel) {
  ContextOptions o;
  o.watchdog_ms = 300;
  auto ctx = context(o);
  ASSERT_TRUE(ctx);
  std::string ptx = read_text(source_dir() + "/tests/data/spin_cycles.ptx");
  auto mod = ctx->module_load(ImageKind::kPtx, as_bytes(ptx));
  ASSERT_TRUE(mod) << mod.error().message;
  LaunchRequest r;
  r.module = mod.value();
  r.kernel = "spin_cycles";
  r.args = {arg(uint64_t{60} * 2'000'000'000)};  // about a minute at 2 GHz
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(ctx->launch(r));
  auto s = sync_wait(*ctx);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(s);
  EXPECT_EQ(s.status(), Status::kSyncFailed);
  EXPECT_NE(s.error().message.find("watchdog"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("spin_cycles"), std::string::npos) << s.error().message;
  EXPECT_LT(took, 10s);
  EXPECT_TRUE(ctx->faulted());
  EXPECT_EQ(ctx->mem_alloc(16).status(), Status::kLeaseFaulted);
}

TEST_F(CudaBackendTest, TheWatchdogStopsAnInfiniteKernelByDestroyingItsContext) {
  ContextOptions o;
  o.watchdog_ms = 300;
  auto ctx = context(o);
  ASSERT_TRUE(ctx);
  uint64_t mod = load(*ctx, "faults.ptx");
  auto flag = ctx->mem_alloc(4);
  ASSERT_TRUE(flag);
  int32_t zero = 0;
  ASSERT_TRUE(ctx->mem_write(flag.value(), {reinterpret_cast<const std::byte*>(&zero), 4}));
  LaunchRequest r;
  r.module = mod;
  r.kernel = "spin";
  r.args = {arg(flag.value())};
  ASSERT_TRUE(ctx->launch(r));
  auto s = sync_wait(*ctx, 30s);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("watchdog"), std::string::npos) << s.error().message;
  // A mem op queued behind the runaway kernel returns instead of hanging.
  std::vector<uint8_t> out(4);
  EXPECT_FALSE(ctx->mem_read(flag.value(), bytes_of(out)));
  // Releasing the lease must finish; if the driver could not stop the
  // kernel it would hang here, so the test gives up loudly instead.
  auto done = std::async(std::launch::async, [&] { ctx.reset(); });
  if (done.wait_for(60s) != std::future_status::ready) {
    ADD_FAILURE() << "destroying a context with a hung kernel did not return in 60 s";
    std::cerr.flush();
    ::_exit(1);
  }
  // The device is usable afterwards.
  auto fresh = context();
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(recipe30(*fresh, 4096, 1.5f, 2.0f));
}

TEST_F(CudaBackendTest, SixLeasesRunAtOnceOnOneCard) {
  std::vector<std::unique_ptr<DeviceContext>> ctxs;
  for (int i = 0; i < 6; ++i) {
    ctxs.push_back(context());
    ASSERT_TRUE(ctxs.back());
  }
  std::vector<std::future<bool>> runs;
  for (int i = 0; i < 6; ++i) {
    runs.push_back(std::async(std::launch::async, [&, i] {
      bool ok = true;
      for (int round = 0; round < 5; ++round) ok = ok && recipe30(*ctxs[i], 1 << 18, 1.0f + i, float(round));
      return ok;
    }));
  }
  for (auto& f : runs) EXPECT_TRUE(f.get());
}

TEST_F(CudaBackendTest, VramReturnsToItsValueAfterRelease) {
  // Warm up: the first context after start may leave driver caches behind.
  { auto warm = context(); }
  uint64_t before = free_now();
  {
    auto ctx = context();
    ASSERT_TRUE(ctx);
    auto a = ctx->mem_alloc(256 << 20);
    ASSERT_TRUE(a);
    EXPECT_TRUE(recipe30(*ctx, 1 << 16, 2.0f, 1.0f));
    EXPECT_LT(free_now(), before);
  }
  uint64_t after = free_now();
  for (int i = 0; i < 20 && after != before; ++i) {
    std::this_thread::sleep_for(100ms);
    after = free_now();
  }
  EXPECT_EQ(after, before);
}

TEST_F(CudaBackendTest, TheMeasuredOverheadCoversARealLease) {
  uint64_t oh = backend_->context_overhead_bytes(0);
  uint64_t before = free_now();
  auto ctx = context();
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(recipe30(*ctx, 1024, 1.0f, 0.0f));  // a module loaded, kernels run
  uint64_t after = free_now();
  uint64_t used = before > after ? before - after : 0;
  std::cout << "[ INFO     ] one context: measured " << (oh >> 10) << " KiB at start, " << (used >> 10)
            << " KiB now\n";
  EXPECT_LE(used, oh + (uint64_t{4} << 20));  // module code may add a little
}

TEST_F(CudaBackendTest, ModulesUnloadAndTheirHandlesDie) {
  auto ctx = context();
  ASSERT_TRUE(ctx);
  uint64_t mod = load(*ctx, "transform.ptx");
  ASSERT_TRUE(ctx->module_unload(mod));
  EXPECT_EQ(ctx->module_unload(mod).status(), Status::kInvalidHandle);
  auto r = req(mod, "scale", 1);
  EXPECT_FALSE(ctx->launch(r));
}

TEST_F(CudaBackendTest, SessionExclusiveIsUnsupportedUnlessGreenContextsAreEnabled) {
  ContextOptions o;
  o.session_exclusive = true;
  auto c = backend_->create_context(0, o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status(), Status::kUnsupported);
}

TEST_F(CudaBackendTest, SessionExclusiveRunsOnAGreenContextWhereTheDriverHasThem) {
  CudaBackendOptions bo;
  bo.green_contexts = true;
  auto b = make_cuda_backend(bo);
  ASSERT_TRUE(b) << b.error().message;
  ContextOptions o;
  o.session_exclusive = true;
  o.quota_bytes = 1 << 30;
  auto c = b.value()->create_context(0, o);
  if (!c && c.status() == Status::kUnsupported) GTEST_SKIP() << c.error().message;
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(recipe30(*c.value(), 1 << 16, 2.0f, 3.0f));
  uint64_t before = b.value()->devices()[0].free_bytes;
  auto a = c.value()->mem_alloc(64 << 20);
  ASSERT_TRUE(a);
  c.value().reset();  // frees the green lease's memory one by one
  EXPECT_GE(b.value()->devices()[0].free_bytes + (uint64_t{2} << 20), before);
}

TEST_F(CudaBackendTest, DestroyingAContextWithPendingSyncsCompletesThem) {
  ContextOptions o;
  o.watchdog_ms = 0;
  auto ctx = context(o);
  ASSERT_TRUE(ctx);
  std::string ptx = read_text(source_dir() + "/tests/data/spin_cycles.ptx");
  auto mod = ctx->module_load(ImageKind::kPtx, as_bytes(ptx));
  ASSERT_TRUE(mod);
  LaunchRequest r;
  r.module = mod.value();
  r.kernel = "spin_cycles";
  r.args = {arg(uint64_t{200'000'000})};  // ~0.1 s
  ASSERT_TRUE(ctx->launch(r));
  auto p = std::make_shared<std::promise<Result<void>>>();
  auto f = p->get_future();
  ctx->sync([p](Result<void> res) { p->set_value(std::move(res)); });
  ctx.reset();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  (void)f.get();  // OK (finished first) or an error: either way called once
}

}  // namespace
}  // namespace gpulease::server::cuda
