// The sim backend honours the DeviceBackend / DeviceContext contract:
// recipes 30 and 34 run end to end, faults are reported at sync and poison
// only their own context, runaway kernels are stopped by the budget, bad
// launches and modules are refused up front, and memory is accounted.
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

TEST(SimBackend, DescribesOneEightGibDeviceByDefault) {
  auto b = make_sim_backend({});
  EXPECT_EQ(b->name(), "sim");
  auto d = b->devices();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "gpulease sim device");
  EXPECT_EQ(d[0].total_bytes, uint64_t{8} << 30);
  EXPECT_EQ(d[0].free_bytes, d[0].total_bytes);
  EXPECT_GT(b->context_overhead_bytes(0), 0u);
}

// The nice value of each thread of this process named `name`
// (/proc/self/task/TID/stat, field 19).
std::vector<int> nice_of_threads_named(const std::string& name) {
  std::vector<int> out;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
    std::string comm;
    std::getline(std::ifstream(t.path() / "comm"), comm);
    if (comm != name) continue;
    std::string stat;
    std::getline(std::ifstream(t.path() / "stat"), stat);
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));  // field 3 on
    std::string field;
    for (int i = 3; i < 19 && rest >> field; ++i) {
    }
    int nice = 0;
    if (rest >> nice) out.push_back(nice);
  }
  return out;
}

TEST(SimBackend, InterpreterThreadsRunAtTheirConfiguredNiceValue) {
  SimConfig cfg;
  cfg.worker_threads = 2;
  cfg.worker_nice = 7;
  auto b = make_sim_backend(cfg);
  // The workers set their name and priority as they start: seven levels
  // below the priority the process runs at (which the ticker, enforcing
  // the watchdog, keeps).
  std::vector<int> nice, ticker;
  int want = 0;
  for (int i = 0; i < 500; ++i) {
    ticker = nice_of_threads_named("sim-ticker");
    nice = nice_of_threads_named("sim-worker");
    want = ticker.empty() ? -100 : std::min(ticker[0] + 7, 19);
    if (nice == std::vector<int>{want, want}) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(ticker.size(), 1u);
  EXPECT_EQ(nice, (std::vector<int>{want, want}));
}

TEST(SimBackend, ConfiguredDevicesHaveTheirOwnCapacity) {
  SimConfig cfg;
  cfg.devices = {{"a", 1 << 20}, {"b", 64 << 20}};
  cfg.context_overhead_bytes = 4096;
  auto b = make_sim_backend(cfg);
  ASSERT_EQ(b->devices().size(), 2u);
  EXPECT_EQ(b->devices()[1].total_bytes, uint64_t{64} << 20);
  auto ctx = b->create_context(1, {});
  ASSERT_TRUE(ctx.ok());
  EXPECT_EQ(b->devices()[1].free_bytes, (uint64_t{64} << 20) - 4096);
  EXPECT_EQ(b->devices()[0].free_bytes, uint64_t{1} << 20);
  EXPECT_EQ(b->create_context(2, {}).status(), Status::kInvalidArgument);
}

TEST(SimBackend, Recipe30ScaleThenBiasGivesTwoIPlusTen) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  std::vector<float> x(1024);
  for (int i = 0; i < 1024; ++i) x[i] = float(i);
  const uint64_t buf = h.upload(x);
  ASSERT_TRUE(
      h.launch(m, "scale", {4, 1, 1}, {256, 1, 1}, Args().add(buf).add(int32_t(1024)).add(2.0f))
          .ok());
  ASSERT_TRUE(
      h.launch(m, "bias", {4, 1, 1}, {256, 1, 1}, Args().add(buf).add(int32_t(1024)).add(10.0f))
          .ok());
  ASSERT_TRUE(h.sync().ok());
  auto y = h.download<float>(buf, 1024);
  for (int i = 0; i < 1024; ++i) ASSERT_EQ(y[i], 2.0f * i + 10.0f) << i;
}

TEST(SimBackend, MemReadIsOrderedAfterEarlierLaunchesWithoutSync) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  const uint64_t buf = h.upload(std::vector<float>(4096, 1.0f));
  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE(
        h.launch(m, "bias", {16, 1, 1}, {256, 1, 1}, Args().add(buf).add(int32_t(4096)).add(1.0f))
            .ok());
  auto y = h.download<float>(buf, 4096);  // no sync: stream order alone
  for (float v : y) ASSERT_EQ(v, 9.0f);
}

TEST(SimBackend, Recipe34PipelineRunsThreeStagesOnDeviceBuffers) {
  Harness h;
  const uint64_t m = h.load_file("pipeline.ptx");
  const int n = 1000;
  std::vector<uint8_t> raw(n);
  for (int i = 0; i < n; ++i) raw[i] = uint8_t((i * 37) % 256);
  const uint64_t draw = h.upload(raw), da = h.alloc(n * 4), db = h.alloc(n * 4), dout = h.alloc(n);
  const uint32_t g = blocks_for(n, 256);
  ASSERT_TRUE(h.launch(m, "decode", {g, 1, 1}, {256, 1, 1}, Args().add(draw).add(da).add(n)).ok());
  ASSERT_TRUE(
      h.launch(m, "denoise", {g, 1, 1}, {256, 1, 1}, Args().add(da).add(db).add(n).add(0.2f)).ok());
  ASSERT_TRUE(h.launch(m, "encode", {g, 1, 1}, {256, 1, 1}, Args().add(db).add(dout).add(n)).ok());
  ASSERT_TRUE(h.sync().ok());
  auto out = h.download<uint8_t>(dout, n);
  for (int i = 0; i < n; ++i) {
    auto dec = [&](int j) { return float(raw[j]) / 255.0f; };
    const float c = dec(i), l = i > 0 ? dec(i - 1) : c, r = i + 1 < n ? dec(i + 1) : c;
    const float s = (l + c + r) / 3.0f;
    const float d = s > 0.2f ? s : 0.0f;
    ASSERT_EQ(out[i], uint8_t(std::fma(std::min(std::max(d, 0.0f), 1.0f), 255.0f, 0.5f))) << i;
  }
}

TEST(SimBackend, OutOfBoundsReadFaultsWithAddressAndKernelAndOtherContextsKeepWorking) {
  auto backend = make_sim_backend(Harness::small_config());
  auto bad = std::move(backend->create_context(0, {})).value();
  auto good = std::move(backend->create_context(0, {})).value();

  auto mod = bad->module_load(server::ImageKind::kPtx, as_bytes(read_ptx("faults.ptx")));
  ASSERT_TRUE(mod.ok());
  const uint64_t in = *bad->mem_alloc(256 * 4), out = *bad->mem_alloc(256 * 4);
  server::LaunchRequest req;
  req.module = *mod;
  req.kernel = "oob_read";
  req.grid = {1, 1, 1};
  req.block = {256, 1, 1};
  req.args = Args().add(in).add(out).add(int32_t(256)).add(int32_t(1 << 20)).take();
  ASSERT_TRUE(bad->launch(req).ok());  // the fault shows at sync, not at launch
  auto r = wait_sync(*bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("illegal address 0x"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("(global ld, 4 bytes)"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("in kernel oob_read"), std::string::npos) << r.error().message;
  EXPECT_TRUE(bad->faulted());
  // The fault is sticky, and further launches are refused.
  EXPECT_EQ(wait_sync(*bad).status(), Status::kSyncFailed);
  EXPECT_EQ(bad->launch(req).status(), Status::kLaunchFailed);

  // A second lease on the same backend is unaffected.
  EXPECT_FALSE(good->faulted());
  auto gm = good->module_load(server::ImageKind::kPtx, as_bytes(read_ptx("transform.ptx")));
  ASSERT_TRUE(gm.ok());
  const uint64_t buf = *good->mem_alloc(64 * 4);
  std::vector<float> ones(64, 1.0f);
  ASSERT_TRUE(good->mem_write(buf, {reinterpret_cast<const std::byte*>(ones.data()), 256}).ok());
  server::LaunchRequest s;
  s.module = *gm;
  s.kernel = "scale";
  s.block = {64, 1, 1};
  s.args = Args().add(buf).add(int32_t(64)).add(3.0f).take();
  ASSERT_TRUE(good->launch(s).ok());
  ASSERT_TRUE(wait_sync(*good).ok());
  ASSERT_TRUE(good->mem_read(buf, {reinterpret_cast<std::byte*>(ones.data()), 256}).ok());
  EXPECT_EQ(ones[63], 3.0f);
}

TEST(SimBackend, AnotherContextsBufferIsNotReachable) {
  auto backend = make_sim_backend(Harness::small_config());
  auto a = std::move(backend->create_context(0, {})).value();
  auto b = std::move(backend->create_context(0, {})).value();
  const uint64_t secret = *b->mem_alloc(1024);
  auto mod = a->module_load(server::ImageKind::kPtx, as_bytes(read_ptx("vector.ptx")));
  const uint64_t mine = *a->mem_alloc(1024);
  server::LaunchRequest req;
  req.module = *mod;
  req.kernel = "vector_add";
  req.block = {32, 1, 1};
  req.args = Args().add(secret).add(mine).add(mine).add(int32_t(32)).take();
  ASSERT_TRUE(a->launch(req).ok());
  auto r = wait_sync(*a);
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("illegal address"), std::string::npos);
}

TEST(SimBackend, MisalignedAccessFaults) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  const uint64_t buf = h.alloc(1024);
  auto r = h.run(m, "scale", {1, 1, 1}, {4, 1, 1}, Args().add(buf + 2).add(int32_t(4)).add(2.0f));
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("misaligned address"), std::string::npos) << r.error().message;
}

TEST(SimBackend, InfiniteLoopIsStoppedByTheInstructionBudget) {
  server::ContextOptions opts;
  opts.instruction_budget = 1'000'000;
  Harness h(opts);
  const uint64_t m = h.load_file("faults.ptx");
  const uint64_t flag = h.upload(std::vector<int32_t>{0});
  auto r = h.run(m, "spin", {8, 1, 1}, {64, 1, 1}, Args().add(flag));
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("instruction budget exceeded"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("in kernel spin"), std::string::npos) << r.error().message;
  EXPECT_TRUE(h.ctx().faulted());
}

TEST(SimBackend, TheBudgetIsPerLaunchNotPerContext) {
  server::ContextOptions opts;
  opts.instruction_budget = 200'000;  // one launch below needs ~ 4096 * 12
  Harness h(opts);
  const uint64_t m = h.load_file("transform.ptx");
  const uint64_t buf = h.alloc(4096 * 4);
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(
        h.launch(m, "scale", {16, 1, 1}, {256, 1, 1}, Args().add(buf).add(int32_t(4096)).add(1.0f))
            .ok());
  EXPECT_TRUE(h.sync().ok());
}

TEST(SimBackend, LaunchRefusesAnUnknownKernel) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  auto r = h.launch(m, "nope", {1, 1, 1}, {1, 1, 1}, Args());
  ASSERT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("nope"), std::string::npos);
  EXPECT_EQ(h.launch(m + 100, "scale", {1, 1, 1}, {1, 1, 1}, Args()).status(),
            Status::kLaunchFailed);
}

TEST(SimBackend, LaunchRefusesAWrongArgumentCount) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  auto r = h.launch(m, "scale", {1, 1, 1}, {1, 1, 1}, Args().add(uint64_t(0)).add(int32_t(1)));
  ASSERT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("takes 3 arguments, got 2"), std::string::npos)
      << r.error().message;
}

TEST(SimBackend, LaunchRefusesAWrongArgumentSize) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  auto r =
      h.launch(m, "scale", {1, 1, 1}, {1, 1, 1}, Args().add(uint64_t(0)).add(int64_t(1)).add(2.0f));
  ASSERT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("argument 1"), std::string::npos) << r.error().message;
}

TEST(SimBackend, LaunchRefusesBadDimensionsAndSharedMemory) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  auto args = [] { return Args().add(uint64_t(0)).add(int32_t(0)).add(1.0f); };
  EXPECT_EQ(h.launch(m, "scale", {0, 1, 1}, {1, 1, 1}, args()).status(), Status::kLaunchFailed);
  EXPECT_EQ(h.launch(m, "scale", {1, 1, 1}, {1025, 1, 1}, args()).status(), Status::kLaunchFailed);
  EXPECT_EQ(h.launch(m, "scale", {1, 1, 1}, {32, 32, 2}, args()).status(), Status::kLaunchFailed);
  EXPECT_EQ(h.launch(m, "scale", {1, 70000, 1}, {1, 1, 1}, args()).status(), Status::kLaunchFailed);
  EXPECT_EQ(h.launch(m, "scale", {1, 1, 1}, {1, 1, 1}, args(), 49 * 1024).status(),
            Status::kLaunchFailed);
  const uint64_t r = h.load_file("reduce.ptx");  // 4 KiB static shared
  EXPECT_EQ(h.launch(r, "reduce_sum", {1, 1, 1}, {32, 1, 1},
                     Args().add(uint64_t(0)).add(uint64_t(0)).add(int32_t(0)), 45 * 1024)
                .status(),
            Status::kLaunchFailed);
}

TEST(SimBackend, ModuleLoadRejectsNonPtxImagesAndBadPtx) {
  Harness h;
  std::string text = "garbage";
  EXPECT_EQ(h.ctx().module_load(server::ImageKind::kCubin, as_bytes(text)).status(),
            Status::kLoadFailed);
  auto r = h.ctx().module_load(server::ImageKind::kPtx, as_bytes(text));
  EXPECT_EQ(r.status(), Status::kLoadFailed);
}

TEST(SimBackend, AllocFailsWhenTheDeviceIsFullAndFreeGivesRoomBack) {
  SimConfig cfg = Harness::small_config();
  cfg.devices = {{"tiny", 1 << 20}};
  cfg.context_overhead_bytes = 0;
  Harness h({}, cfg);
  auto a = h.ctx().mem_alloc(768 << 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(h.ctx().mem_alloc(512 << 10).status(), Status::kAllocFailed);
  EXPECT_EQ(h.backend().devices()[0].free_bytes, uint64_t{256} << 10);
  ASSERT_TRUE(h.ctx().mem_free(*a).ok());
  EXPECT_TRUE(h.ctx().mem_alloc(512 << 10).ok());
  EXPECT_EQ(h.ctx().mem_free(12345).status(), Status::kInvalidHandle);
}

TEST(SimBackend, AllocRespectsTheLeaseQuota) {
  server::ContextOptions opts;
  opts.quota_bytes = 4096;
  Harness h(opts);
  EXPECT_TRUE(h.ctx().mem_alloc(4000).ok());
  EXPECT_EQ(h.ctx().mem_alloc(200).status(), Status::kAllocFailed);
}

TEST(SimBackend, DestroyingAContextReturnsItsMemoryToTheDevice) {
  SimConfig cfg = Harness::small_config();
  cfg.devices = {{"d", 64 << 20}};
  auto b = make_sim_backend(cfg);
  {
    auto ctx = std::move(b->create_context(0, {})).value();
    ASSERT_TRUE(ctx->mem_alloc(10 << 20).ok());
    EXPECT_LT(b->devices()[0].free_bytes, uint64_t{54} << 20);
  }
  EXPECT_EQ(b->devices()[0].free_bytes, uint64_t{64} << 20);
}

TEST(SimBackend, AllocationsAreSeparatedByUnmappedGuards) {
  Harness h;
  const uint64_t a = h.alloc(100), b = h.alloc(100);
  EXPECT_GE(a, 0x7f0000000000ull);
  EXPECT_EQ(a % 256, 0u);
  EXPECT_GE(b - a, 64u << 10);
  std::vector<std::byte> buf(8);
  EXPECT_EQ(h.ctx().mem_read(a + 96, buf).status(), Status::kOutOfRange);
  EXPECT_EQ(h.ctx().mem_read(a + 200, buf).status(), Status::kInvalidHandle);
}

TEST(SimBackend, SyncWithNothingQueuedCallsBackAtOnce) {
  Harness h;
  bool called = false;
  h.ctx().sync([&](Result<void> r) {
    called = true;
    EXPECT_TRUE(r.ok());
  });
  EXPECT_TRUE(called);
}

TEST(SimBackend, SyncDoesNotBlockTheCaller) {
  Harness h;
  const uint64_t m = h.load_file("branchy.ptx");
  std::vector<uint32_t> start(1 << 14, 837799);  // 524 steps each
  const uint64_t ds = h.upload(start), dsteps = h.alloc(start.size() * 4);
  ASSERT_TRUE(h.launch(m, "collatz", {64, 1, 1}, {256, 1, 1},
                       Args().add(ds).add(dsteps).add(int32_t(start.size())).add(1000u))
                  .ok());
  std::atomic<bool> done{false};
  const auto t0 = std::chrono::steady_clock::now();
  h.ctx().sync([&](Result<void> r) {
    EXPECT_TRUE(r.ok());
    done = true;
  });
  const auto returned = std::chrono::steady_clock::now() - t0;
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto finished = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(returned, finished);
  EXPECT_EQ(h.download<uint32_t>(dsteps, 1)[0], 524u);
}

TEST(SimBackend, DestroyingAContextWithQueuedWorkAbandonsItSafely) {
  auto b = make_sim_backend(Harness::small_config());
  std::atomic<int> callbacks{0};
  {
    auto ctx = std::move(b->create_context(0, {})).value();
    auto m = ctx->module_load(server::ImageKind::kPtx, as_bytes(read_ptx("faults.ptx")));
    const uint64_t flag = *ctx->mem_alloc(4);
    server::LaunchRequest req;
    req.module = *m;
    req.kernel = "spin";
    req.grid = {64, 1, 1};
    req.block = {32, 1, 1};
    req.args = Args().add(flag).take();
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(ctx->launch(req).ok());
    ctx->sync([&](Result<void> r) {
      EXPECT_EQ(r.status(), Status::kSyncFailed);
      ++callbacks;
    });
  }  // spins forever (default budget) until the destructor cancels it
  EXPECT_EQ(callbacks.load(), 1);
  // The pool is free for new work.
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  const uint64_t buf = h.alloc(4);
  EXPECT_TRUE(
      h.run(m, "scale", {1, 1, 1}, {1, 1, 1}, Args().add(buf).add(int32_t(1)).add(1.0f)).ok());
}

// A spinning single-block launch on a context of its own; returns the context.
std::unique_ptr<server::DeviceContext> spinning(server::DeviceBackend& b,
                                                server::ContextOptions opts = {}) {
  auto ctx = std::move(b.create_context(0, opts)).value();
  auto m = ctx->module_load(server::ImageKind::kPtx, as_bytes(read_ptx("faults.ptx")));
  const uint64_t flag = *ctx->mem_alloc(4);
  server::LaunchRequest req;
  req.module = *m;
  req.kernel = "spin";
  req.args = Args().add(flag).take();
  EXPECT_TRUE(ctx->launch(req).ok());
  return ctx;
}

TEST(SimBackend, MemoryOpsBehindARunningKernelCompleteLaterAndNeverBlockTheCaller) {
  auto b = make_sim_backend(Harness::small_config());
  auto ctx = spinning(*b);
  const uint64_t buf = *ctx->mem_alloc(64);
  std::vector<std::byte> data(64, std::byte{7}), out(64);
  std::atomic<int> write_done{0}, read_done{0}, sync_done{0};
  Status write_status = Status::kOk, read_status = Status::kOk, sync_status = Status::kOk;
  std::string sync_message;
  // Each returns at once (the kernel spins until its ~2^32 budget).
  ctx->mem_write_async(buf, data, [&](Result<void> r) {
    write_status = r.status();
    ++write_done;
  });
  ctx->mem_read_async(buf, out, [&](Result<void> r) {
    read_status = r.status();
    ++read_done;
  });
  ctx->sync([&](Result<void> r) {
    sync_status = r.status();
    sync_message = r.ok() ? "" : r.error().message;
    ++sync_done;
  });
  EXPECT_EQ(write_done.load(), 0);  // queued behind the kernel, stream order
  EXPECT_EQ(read_done.load(), 0);
  // A free is immediate: the buffer is gone for later ops at once.
  const uint64_t other = *ctx->mem_alloc(16);
  EXPECT_TRUE(ctx->mem_free(other).ok());
  // The lease ends: the kernel is cancelled, queued ops answered LEASE_EXPIRED
  // and the sync reports the cancellation as a failure, not success.
  ctx.reset();
  EXPECT_EQ(write_done.load(), 1);
  EXPECT_EQ(read_done.load(), 1);
  EXPECT_EQ(sync_done.load(), 1);
  EXPECT_EQ(write_status, Status::kLeaseExpired);
  EXPECT_EQ(read_status, Status::kLeaseExpired);
  EXPECT_EQ(sync_status, Status::kSyncFailed);
  EXPECT_NE(sync_message.find("cancelled"), std::string::npos) << sync_message;
}

// try_view (a zero-copy MEM_READ): the bytes in place while the stream is
// idle, none while a launch is queued or running, and a view keeps its
// buffer readable after a free and after the context is gone.
TEST(SimBackend, AViewShowsTheBytesOfAnIdleStreamAndOutlivesItsBuffer) {
  auto b = make_sim_backend(Harness::small_config());
  auto idle = std::move(b->create_context(0, {})).value();
  const uint64_t buf = *idle->mem_alloc(256);
  std::vector<std::byte> data(256);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i);
  ASSERT_TRUE(idle->mem_write(buf, data).ok());
  auto view = idle->try_view(buf + 16, 200);
  ASSERT_TRUE(view.has_value());
  ASSERT_EQ(view->bytes.size(), 200u);
  EXPECT_TRUE(std::equal(view->bytes.begin(), view->bytes.end(), data.begin() + 16));
  EXPECT_TRUE(idle->mem_free(buf).ok());
  idle.reset();
  // Read after both (ASan would report a use after free here).
  EXPECT_TRUE(std::equal(view->bytes.begin(), view->bytes.end(), data.begin() + 16));

  auto busy = spinning(*b);
  const uint64_t other = *busy->mem_alloc(64);
  EXPECT_FALSE(busy->try_view(other, 64).has_value()) << "a queued kernel may still write it";
}

TEST(SimBackend, OneContextsSpinningKernelsDoNotDelayAnothersMemoryOps) {
  SimConfig cfg = Harness::small_config();
  cfg.worker_threads = 2;
  auto b = make_sim_backend(cfg);
  // More spinning kernels than workers.
  std::vector<std::unique_ptr<server::DeviceContext>> spinners;
  for (int i = 0; i < 4; ++i) spinners.push_back(spinning(*b));
  auto victim = std::move(b->create_context(0, {})).value();
  const uint64_t buf = *victim->mem_alloc(64);
  for (int i = 0; i < 100; ++i) {
    std::vector<std::byte> in(64, std::byte(i)), out(64);
    ASSERT_TRUE(victim->mem_write(buf, in).ok());
    ASSERT_TRUE(victim->mem_read(buf, out).ok());
    ASSERT_EQ(out, in);
  }
  // Every spinner is still running (its sync is pending) after all that.
  std::atomic<int> synced{0};
  for (auto& s : spinners) s->sync([&](Result<void>) { ++synced; });
  EXPECT_EQ(synced.load(), 0);
  spinners.clear();
  EXPECT_EQ(synced.load(), 4);
}

TEST(SimBackend, TheWatchdogStopsAKernelThatRunsTooLong) {
  auto b = make_sim_backend(Harness::small_config());
  server::ContextOptions opts;
  opts.watchdog_ms = 50;
  auto ctx = spinning(*b, opts);
  std::promise<Result<void>> p;
  ctx->sync([&](Result<void> r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();  // bounded: the watchdog, else the budget
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("watchdog"), std::string::npos) << r.error().message;
  EXPECT_TRUE(ctx->faulted());
}

TEST(SimBackend, ManyContextsRunConcurrentlyOnTheSharedPool) {
  auto b = make_sim_backend(Harness::small_config());
  const std::string ptx = read_ptx("transform.ptx");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = std::move(b->create_context(0, {})).value();
      auto m = ctx->module_load(server::ImageKind::kPtx, as_bytes(ptx));
      std::vector<float> x(2000, float(t));
      const uint64_t buf = *ctx->mem_alloc(x.size() * 4);
      (void)ctx->mem_write(buf, {reinterpret_cast<const std::byte*>(x.data()), x.size() * 4});
      server::LaunchRequest req;
      req.module = *m;
      req.kernel = "bias";
      req.grid = {8, 1, 1};
      req.block = {256, 1, 1};
      req.args = Args().add(buf).add(int32_t(2000)).add(1.0f).take();
      for (int i = 0; i < 10; ++i) (void)ctx->launch(req);
      if (!wait_sync(*ctx).ok()) return;
      (void)ctx->mem_read(buf, {reinterpret_cast<std::byte*>(x.data()), x.size() * 4});
      if (std::all_of(x.begin(), x.end(), [&](float v) { return v == float(t) + 10.0f; })) ++ok;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 8);
}

// Kernels for the limits below: a loop of 3 * n instructions, and kernels
// whose setup (registers, .local, .shared) dwarfs their single instruction.
const char* const kLimitsPtx = R"(
.version 9.0
.target sm_75
.address_size 64
.visible .entry loop(.param .u32 n)
{
  .reg .b32 %r<3>;
  .reg .pred %p;
  ld.param.u32 %r1, [n];
  mov.u32 %r2, 0;
$L_top:
  add.u32 %r2, %r2, 1;
  setp.lt.u32 %p, %r2, %r1;
  @%p bra $L_top;
  ret;
}
.visible .entry fat_thread()
{
  .reg .b64 %rd<60000>;
  .local .align 8 .b8 scratch[524288];
  ret;
}
.visible .entry fat_block()
{
  .shared .align 4 .b8 tile[49152];
  ret;
}
.visible .entry odd_shared()
{
  .shared .align 4 .b8 small[20];
  .extern .shared .align 16 .b8 dyn[];
  ret;
}
)";

TEST(SimBackend, ThreadSetupIsChargedToTheInstructionBudget) {
  // 64 threads of ~1 MB of registers and .local each: 64 instructions, but
  // ~15,700 budget units of setup per thread.
  server::ContextOptions opts;
  opts.instruction_budget = 500'000;
  Harness h(opts);
  const uint64_t m = h.load(kLimitsPtx);
  auto r = h.run(m, "fat_thread", {1, 1, 1}, {64, 1, 1}, Args());
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("instruction budget exceeded"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("fat_thread"), std::string::npos) << r.error().message;
}

TEST(SimBackend, BlockSharedMemorySetupIsChargedToTheInstructionBudget) {
  // 200 one-thread blocks of 48 KiB shared: 768 units each.
  server::ContextOptions opts;
  opts.instruction_budget = 100'000;
  Harness h(opts);
  const uint64_t m = h.load(kLimitsPtx);
  auto r = h.run(m, "fat_block", {200, 1, 1}, {1, 1, 1}, Args());
  ASSERT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("instruction budget exceeded"), std::string::npos)
      << r.error().message;
  // A grid within the budget still runs.
  server::ContextOptions roomy;
  roomy.instruction_budget = 1'000'000;  // fuel is claimed in 64Ki chunks per worker
  Harness h2(roomy);
  EXPECT_TRUE(h2.run(h2.load(kLimitsPtx), "fat_block", {200, 1, 1}, {1, 1, 1}, Args()).ok());
}

TEST(SimBackend, PerThreadStateIsCappedAtLaunch) {
  SimConfig cfg = Harness::small_config();
  cfg.launch_limits.max_thread_state_bytes = 64 << 10;
  Harness h({}, cfg);
  auto r = h.launch(h.load(kLimitsPtx), "fat_thread", {1, 1, 1}, {1, 1, 1}, Args());
  ASSERT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("per thread"), std::string::npos) << r.error().message;
}

TEST(SimBackend, DynamicSharedMemoryIsCheckedWhereItReallyStarts) {
  auto m = load_ptx(kLimitsPtx);
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel* k = (*m)->find("odd_shared");
  ASSERT_EQ(k->dynamic_shared_offset, 32u);  // 20 static bytes, rounded up to 16
  const LaunchLimits lim;                    // 48 KiB per block
  EXPECT_TRUE(validate_launch(*k, {1, 1, 1}, {1, 1, 1}, (48 << 10) - 32, lim).ok());
  auto r = validate_launch(*k, {1, 1, 1}, {1, 1, 1}, (48 << 10) - 20, lim);
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
}

TEST(SimBackend, LaunchesQueuedPastTheLimitAreRefusedUntilASync) {
  SimConfig cfg = Harness::small_config();
  cfg.max_queued_launches = 4;
  Harness h({}, cfg);
  const uint64_t m = h.load(kLimitsPtx);
  // The first runs for tens of milliseconds at least; the others queue behind it.
  ASSERT_TRUE(h.launch(m, "loop", {1, 1, 1}, {1, 1, 1}, Args().add(10'000'000u)).ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(h.launch(m, "loop", {1, 1, 1}, {1, 1, 1}, Args().add(1u)).ok());
  auto r = h.launch(m, "loop", {1, 1, 1}, {1, 1, 1}, Args().add(1u));
  ASSERT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("sync first"), std::string::npos) << r.error().message;
  ASSERT_TRUE(h.sync().ok());
  EXPECT_TRUE(h.run(m, "loop", {1, 1, 1}, {1, 1, 1}, Args().add(1u)).ok());
}

TEST(SimBackend, LiveAllocationsPerContextAreCapped) {
  SimConfig cfg = Harness::small_config();
  cfg.max_allocations = 8;
  Harness h({}, cfg);
  std::vector<uint64_t> bufs;
  for (int i = 0; i < 8; ++i) bufs.push_back(h.alloc(16));
  EXPECT_EQ(h.ctx().mem_alloc(16).status(), Status::kAllocFailed);
  ASSERT_TRUE(h.ctx().mem_free(bufs[3]).ok());
  EXPECT_TRUE(h.ctx().mem_alloc(16).ok());
}

TEST(SimBackend, InterleavedAllocationsAndLaunchesEachSeeTheBuffersBeforeThem) {
  Harness h;
  const uint64_t m = h.load_file("transform.ptx");
  std::vector<uint64_t> bufs;
  auto scale = [&](uint64_t buf) {
    return h.launch(m, "scale", {1, 1, 1}, {4, 1, 1}, Args().add(buf).add(int32_t(4)).add(2.0f));
  };
  for (int i = 0; i < 40; ++i) {  // never synced in between
    bufs.push_back(h.upload(std::vector<float>(4, float(i))));
    ASSERT_TRUE(scale(bufs.back()).ok());
  }
  // A free rebuilds the table; later launches see later allocations.
  ASSERT_TRUE(h.ctx().mem_free(bufs[10]).ok());
  bufs[10] = h.upload(std::vector<float>(4, 10.0f));
  ASSERT_TRUE(scale(bufs[10]).ok());
  bufs.push_back(h.upload(std::vector<float>(4, 40.0f)));
  ASSERT_TRUE(scale(bufs.back()).ok());
  ASSERT_TRUE(h.sync().ok());
  for (size_t i = 0; i < bufs.size(); ++i)
    EXPECT_EQ(h.download<float>(bufs[i], 4), std::vector<float>(4, 2.0f * float(i))) << i;
}

TEST(SimBackend, DestroyingAContextWaitsForASyncCallbackBeingDelivered) {
  auto b = make_sim_backend(Harness::small_config());
  auto ctx = std::move(b->create_context(0, {})).value();
  auto m = ctx->module_load(server::ImageKind::kPtx, as_bytes(kLimitsPtx));
  ASSERT_TRUE(m.ok());
  server::LaunchRequest req;
  req.module = *m;
  req.kernel = "loop";
  req.grid = {1, 1, 1};
  req.block = {1, 1, 1};
  req.args = Args().add(10'000'000u).take();
  ASSERT_TRUE(ctx->launch(req).ok());
  const auto test_thread = std::this_thread::get_id();
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> inline_call{false}, callback_done{false};
  ctx->sync([&](Result<void>) {
    if (std::this_thread::get_id() == test_thread) {
      inline_call = true;  // the launch finished first: nothing to race with
    } else {
      entered.set_value();
      released.wait();
    }
    callback_done = true;
  });
  if (inline_call) GTEST_SKIP() << "the launch finished before sync";
  entered.get_future().wait();  // a worker is inside the callback
  auto destroyer = std::async(std::launch::async, [&] {
    ctx.reset();
    return callback_done.load();  // what the callback had done when destruction returned
  });
  release.set_value();
  EXPECT_TRUE(destroyer.get());
}

// Module variables live in a window chosen by a node-wide load counter that
// wraps after kModuleTags loads; a context keeps the windows of its modules
// with variables distinct, so a variable's address names one variable of
// the lease (MODULE_GLOBAL handles are addresses).
TEST(SimBackend, ModuleVariableWindowsOfOneContextNeverCollide) {
  Harness h;
  const std::string text = read_ptx("globals.ptx");
  const uint64_t first = h.load(text);
  auto g = h.ctx().module_global(first, "gCalls");
  ASSERT_TRUE(g.ok());
  const uint32_t seven = 7;
  for (uint64_t i = 0; i < kModuleTags + 2; ++i) {
    const uint64_t m = h.load(text);
    auto v = h.ctx().module_global(m, "gCalls");
    ASSERT_TRUE(v.ok());
    ASSERT_NE(v->address, g->address) << "load " << i << " reused the first module's window";
    // Each module's variables are its own: writing this one leaves the first as it was.
    ASSERT_TRUE(h.ctx().mem_write(v->address, {reinterpret_cast<const std::byte*>(&i), 4}).ok());
    ASSERT_TRUE(h.ctx().module_unload(m).ok());
  }
  EXPECT_EQ(h.download<uint32_t>(g->address, 1)[0], seven);
}

}  // namespace
}  // namespace gpulease::sim::testing
