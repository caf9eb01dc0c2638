// Launch::run_slice: a launch run in time slices on the caller's thread gives
// exactly what running it whole gives, resumes mid-block, mid-thread and
// across barriers, and can be cancelled between slices.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "gpulease/sim/interpreter.hpp"
#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

// Global memory of a test: buffers at fixed sim addresses.
class Memory {
 public:
  uint64_t add(std::vector<std::byte> bytes) {
    const uint64_t base = 0x7f0000000000ull + uint64_t{bufs_.size()} * 0x100000000ull;
    std::shared_ptr<std::byte> owner(new std::byte[std::max<size_t>(1, bytes.size())],
                                     std::default_delete<std::byte[]>());
    if (!bytes.empty()) std::memcpy(owner.get(), bytes.data(), bytes.size());
    bufs_.push_back({base, bytes.size(), owner});
    return base;
  }
  template <typename T>
  uint64_t add(const std::vector<T>& v) {
    std::vector<std::byte> b(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
    return add(std::move(b));
  }
  template <typename T>
  std::vector<T> get(uint64_t base) const {
    for (const auto& b : bufs_)
      if (b.base == base) {
        std::vector<T> v(b.size / sizeof(T));
        std::memcpy(v.data(), b.owner.get(), v.size() * sizeof(T));
        return v;
      }
    return {};
  }
  std::shared_ptr<const GlobalMemory> snapshot() const {
    auto m = std::make_shared<GlobalMemory>();
    for (const auto& b : bufs_) {
      m->ranges.push_back({b.base, b.size, b.owner.get()});
      m->owners.push_back(b.owner);
    }
    return m;
  }

 private:
  struct Buf {
    uint64_t base;
    uint64_t size;
    std::shared_ptr<std::byte> owner;
  };
  std::vector<Buf> bufs_;
};

template <typename... T>
std::vector<std::byte> params(T... v) {
  std::vector<std::byte> out;
  auto put = [&](auto x) {
    const size_t align = sizeof(x);
    while (out.size() % align) out.push_back(std::byte{0});
    const size_t at = out.size();
    out.resize(at + sizeof(x));
    std::memcpy(out.data() + at, &x, sizeof(x));
  };
  (put(v), ...);
  return out;
}

std::shared_ptr<const Module> load(const std::string& file) {
  auto m = load_ptx(read_ptx(file));
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
  return m.ok() ? *m : nullptr;
}

constexpr uint64_t kBudget = uint64_t{1} << 34;

// Runs `make()`'s launch whole (run_blocks) or in slices of `slice`; returns
// the slices it took (0 when whole).
template <typename Make>
uint64_t drive(Make make, uint64_t slice) {
  std::unique_ptr<Launch> l = make();
  if (slice == 0) {
    l->run_blocks(0, l->total_blocks());
    EXPECT_EQ(l->fault(), "");
    return 0;
  }
  uint64_t n = 0, before = 0;
  for (;;) {
    ++n;
    const bool done = l->run_slice(slice);
    const uint64_t now = l->instructions();
    EXPECT_GT(now, before) << "a slice must make progress";
    before = now;
    if (done) break;
    if (n > 10'000'000) {
      ADD_FAILURE() << "too many slices";
      break;
    }
  }
  EXPECT_EQ(l->fault(), "");
  EXPECT_TRUE(l->run_slice(slice)) << "a finished launch stays finished";
  return n;
}

TEST(PtxSlice, ReductionWithBarriersIsIdenticalAtEverySliceSize) {
  auto mod = load("reduce.ptx");
  ASSERT_NE(mod, nullptr);
  const Kernel* k = mod->find("reduce_sum");
  ASSERT_NE(k, nullptr);
  const int n = 1000;
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>((i * 37) % 101) * 0.25f - 3.0f;
  std::vector<std::vector<float>> results;
  std::vector<uint64_t> counts;
  for (uint64_t slice : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{1000}}) {
    Memory mem;
    const uint64_t din = mem.add(in);
    const uint64_t dout = mem.add(std::vector<float>(4, -1.0f));
    const uint64_t slices = drive(
        [&] {
          auto l = std::make_unique<Launch>(mod, k, std::array<uint32_t, 3>{4, 1, 1},
                                            std::array<uint32_t, 3>{256, 1, 1}, 0,
                                            params(din, dout, n), mem.snapshot(), kBudget);
          return l;
        },
        slice);
    if (slice == 1) {
      EXPECT_GT(slices, 1000u);
    }
    results.push_back(mem.get<float>(dout));
  }
  // The tree sum, computed the same way on the host.
  std::vector<float> want(4);
  for (int b = 0; b < 4; ++b) {
    std::vector<float> sh(256);
    for (int t = 0; t < 256; ++t) sh[t] = b * 256 + t < n ? in[b * 256 + t] : 0.0f;
    for (int s = 128; s > 0; s >>= 1)
      for (int t = 0; t < s; ++t) sh[t] += sh[t + s];
    want[b] = sh[0];
  }
  for (const auto& r : results) EXPECT_EQ(r, want);
}

TEST(PtxSlice, MatmulSlicedMatchesWholeAndCountsTheSameInstructions) {
  auto mod = load("matmul.ptx");
  ASSERT_NE(mod, nullptr);
  const Kernel* k = mod->find("matmul_tiled");
  ASSERT_NE(k, nullptr);
  const int m = 20, n = 18, kk = 33;
  std::vector<float> a(m * kk), b(kk * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) - 2.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) * 0.5f;
  std::vector<std::vector<float>> results;
  std::vector<uint64_t> insts;
  for (uint64_t slice : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{1000}}) {
    Memory mem;
    const uint64_t da = mem.add(a), db = mem.add(b), dc = mem.add(std::vector<float>(m * n));
    auto make = [&] {
      return std::make_unique<Launch>(mod, k, std::array<uint32_t, 3>{2, 2, 1},
                                      std::array<uint32_t, 3>{16, 16, 1}, 0,
                                      params(da, db, dc, m, n, kk), mem.snapshot(), kBudget);
    };
    auto l = make();
    if (slice == 0) {
      l->run_blocks(0, l->total_blocks());
    } else {
      for (int guard = 0; guard < 100'000'000 && !l->run_slice(slice); ++guard) {
      }
    }
    EXPECT_EQ(l->fault(), "");
    insts.push_back(l->instructions());
    results.push_back(mem.get<float>(dc));
  }
  std::vector<float> want(m * n);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      float acc = 0;
      for (int j = 0; j < kk; ++j) acc = std::fma(a[r * kk + j], b[j * n + c], acc);
      want[r * n + c] = acc;
    }
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i], want) << "slice variant " << i;
    EXPECT_EQ(insts[i], insts[0]) << "slice variant " << i;
  }
}

TEST(PtxSlice, SpinningKernelRunsSliceAfterSliceUntilCancelled) {
  auto mod = load("faults.ptx");
  ASSERT_NE(mod, nullptr);
  const Kernel* k = mod->find("spin");
  ASSERT_NE(k, nullptr);
  Memory mem;
  const uint64_t flag = mem.add(std::vector<int>{0});
  Launch l(mod, k, {2, 1, 1}, {64, 1, 1}, 0, params(flag), mem.snapshot(), kBudget);
  const uint64_t block_setup =
      64 * std::max<uint64_t>(1, (uint64_t{k->num_slots()} * 8 + k->local_bytes) / 64);
  uint64_t before = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_FALSE(l.run_slice(500)) << "slice " << i;
    const uint64_t now = l.instructions();
    EXPECT_GT(now, before);
    // A slice overruns by at most a block's setup charge (plus a warp).
    EXPECT_LE(now - before, 500u + block_setup + 32u);
    before = now;
  }
  l.cancel();
  EXPECT_TRUE(l.run_slice(500));
  EXPECT_EQ(l.fault(), "") << "cancel is not a fault";
  EXPECT_EQ(l.instructions(), before) << "nothing runs after cancel";
}

TEST(PtxSlice, BudgetStillBoundsASlicedLaunch) {
  auto mod = load("faults.ptx");
  ASSERT_NE(mod, nullptr);
  const Kernel* k = mod->find("spin");
  ASSERT_NE(k, nullptr);
  Memory mem;
  const uint64_t flag = mem.add(std::vector<int>{0});
  Launch l(mod, k, {1, 1, 1}, {32, 1, 1}, 0, params(flag), mem.snapshot(), 100'000);
  int slices = 0;
  while (!l.run_slice(1000) && slices < 1000) ++slices;
  EXPECT_LT(slices, 1000);
  EXPECT_NE(l.fault().find("instruction budget exceeded"), std::string::npos) << l.fault();
  EXPECT_LE(l.instructions(), 100'000u);
}

TEST(PtxSlice, SpinReleasedByAnotherBlockBetweenSlices) {
  // Block 0 spins on a flag that the host sets between slices: the launch
  // then finishes, and the sliced run saw the write.
  auto mod = load("faults.ptx");
  ASSERT_NE(mod, nullptr);
  const Kernel* k = mod->find("spin");
  Memory mem;
  const uint64_t flag = mem.add(std::vector<int>{0});
  auto snap = mem.snapshot();
  Launch l(mod, k, {1, 1, 1}, {8, 1, 1}, 0, params(flag), snap, kBudget);
  for (int i = 0; i < 10; ++i) ASSERT_FALSE(l.run_slice(100));
  int one = 1;
  std::memcpy(snap->ranges[0].data, &one, sizeof one);
  int slices = 0;
  while (!l.run_slice(100) && slices < 1000) ++slices;
  EXPECT_LT(slices, 1000);
  EXPECT_EQ(l.fault(), "");
}

}  // namespace
}  // namespace gpulease::sim::testing
