// kernels/intrinsics.cu as nvcc emits it for compute_75, 80 and 90, with and
// without --use_fast_math: the cases an independent corpus of ordinary kernels
// found refused at load (fns, bar.red, clock registers, nanosleep, f16x2/bf16x2
// packing conversions, the fp16 header's register declarations, mov.pred -1),
// each checked against a CPU reference.
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

class Intrinsics : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  Harness h_;
  uint64_t m_ = 0;
};

template <typename T>
std::vector<T> ints(size_t n, uint32_t seed, int64_t lo, int64_t hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

std::vector<float> floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// PTX ISA fns: offset 0 tests bit base; otherwise walk from base up
// (offset > 0) or down (offset < 0) to the |offset|-th set bit; ~0u if none.
uint32_t fns_ref(uint32_t mask, uint32_t base, int32_t offset) {
  if (offset == 0) return (mask >> base & 1) ? base : 0xffffffffu;
  int64_t count = std::abs(int64_t{offset}) - 1;
  for (int64_t pos = base; pos >= 0 && pos<32; pos += offset> 0 ? 1 : -1) {
    if ((mask >> pos & 1) == 0) continue;
    if (count-- == 0) return static_cast<uint32_t>(pos);
  }
  return 0xffffffffu;
}

// Round to nearest even of a float to f16 / bf16 bits (no _Float16: clang 14
// has none on x86).
uint16_t to_f16(float f) {
  const uint16_t sign = static_cast<uint16_t>((std::bit_cast<uint32_t>(f) >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(a)) return sign | 0x7e00u;
  if (a >= 65520.0f) return sign | 0x7c00u;
  if (a < std::ldexp(1.0f, -14))  // subnormal: units of 2^-24 (1024 carries into the exponent)
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  int e = std::ilogb(a);
  float q = std::nearbyint(std::ldexp(a, 10 - e));  // [1024, 2048]
  if (q == 2048.0f) q = 1024.0f, ++e;
  return sign | static_cast<uint16_t>((e + 15) << 10) | static_cast<uint16_t>(q - 1024.0f);
}
float from_f16(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  float v = e == 0    ? std::ldexp(static_cast<float>(m), -24)
            : e == 31 ? (m ? NAN : INFINITY)
                      : std::ldexp(static_cast<float>(1024 + m), e - 25);
  return (h & 0x8000u) ? -v : v;
}
uint16_t to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

TEST_P(Intrinsics, FnsMatchesTheIsaDefinition) {
  const int n = 500;
  auto mask = ints<uint32_t>(n, 1, 0, UINT32_MAX);
  auto base = ints<uint32_t>(n, 2, 0, 31);
  auto off = ints<int32_t>(n, 3, -40, 40);
  mask[0] = 0;
  mask[1] = 0xffffffffu;
  off[2] = 0;
  const uint64_t dm = h_.upload(mask), db = h_.upload(base), dof = h_.upload(off),
                 out = h_.alloc(n * 8);
  ASSERT_TRUE(h_.run(m_, "find_nth_set", {2, 1, 1}, {256, 1, 1},
                     Args().add(out).add(dm).add(db).add(dof).add(n))
                  .ok());
  auto y = h_.download<uint32_t>(out, 2 * n);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(y[2 * i], fns_ref(mask[i], base[i], off[i])) << i;
    ASSERT_EQ(y[2 * i + 1], fns_ref(mask[i], 0, 1)) << i;
  }
}

TEST_P(Intrinsics, SyncthreadsCountAndOrReduceOverTheBlock) {
  const int n = 700;  // three blocks of 256, the last one partly idle
  auto v = ints<int>(n, 4, -60, 100);
  const uint64_t dv = h_.upload(v), out = h_.alloc(n * 4);
  ASSERT_TRUE(
      h_.run(m_, "block_votes", {3, 1, 1}, {256, 1, 1}, Args().add(out).add(dv).add(n)).ok());
  auto y = h_.download<int>(out, n);
  for (int b = 0; b < 3; ++b) {
    int cnt = 0;
    bool all = true, any = false;
    for (int t = 0; t < 256; ++t) {
      const int i = b * 256 + t;
      const int x = i < n ? v[i] : 0;
      cnt += x > 0;
      all = all && x > -50;
      any = any || x > 90;
    }
    for (int t = 0; t < 256 && b * 256 + t < n; ++t)
      ASSERT_EQ(y[b * 256 + t], cnt + 1000 * all + 10000 * any) << b << " " << t;
  }
}

TEST_P(Intrinsics, ClockAndClock64AdvanceAndNanosleepReturns) {
  const uint64_t out = h_.alloc(64 * 8);
  ASSERT_TRUE(h_.run(m_, "clocks_advance", {1, 1, 1}, {64, 1, 1}, Args().add(out).add(20)).ok());
  for (int64_t v : h_.download<int64_t>(out, 64)) ASSERT_EQ(v, 2);
}

TEST_P(Intrinsics, Half2AndBf162PackingConversions) {
  const int n = 300;
  auto f = floats(2 * n, 5, -70000, 70000);  // beyond f16's range too: rounds to inf
  auto g = floats(n, 6, -8, 8);
  for (int i = 0; i < 40; ++i) f[i] = std::ldexp(f[i], -30);  // f16 subnormals and zero
  const uint64_t df = h_.upload(f), dg = h_.upload(g), out = h_.alloc(n * 4),
                 back = h_.alloc(n * 4);
  ASSERT_TRUE(h_.run(m_, "half2_pack", {2, 1, 1}, {256, 1, 1},
                     Args().add(out).add(back).add(df).add(dg).add(n))
                  .ok());
  auto y = h_.download<uint16_t>(out, 2 * n);
  auto b = h_.download<float>(back, n);
  for (int i = 0; i < n; ++i) {
    const uint16_t lo = to_f16(f[2 * i]), hi = to_f16(f[2 * i + 1]), gh = to_f16(g[i]);
    ASSERT_EQ(y[2 * i], to_f16(from_f16(lo) + from_f16(gh))) << i;
    ASSERT_EQ(y[2 * i + 1], to_f16(from_f16(hi) + from_f16(gh))) << i;
    const float want = from_f16(lo) - from_f16(hi);
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(b[i])) << i;
    else
      ASSERT_EQ(b[i], want) << i;
  }
  auto a = floats(n, 7, -1e30f, 1e30f), c = floats(n, 8, -1, 1);
  const uint64_t da = h_.upload(a), dc = h_.upload(c), o2 = h_.alloc(n * 4);
  ASSERT_TRUE(
      h_.run(m_, "bf16_pack", {2, 1, 1}, {256, 1, 1}, Args().add(o2).add(da).add(dc).add(n)).ok());
  auto z = h_.download<uint16_t>(o2, 2 * n);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(z[2 * i], to_bf16(a[i])) << i;
    ASSERT_EQ(z[2 * i + 1], to_bf16(c[i])) << i;
  }
}

TEST_P(Intrinsics, NormfAndRnormfWithinTheirUlpBounds) {
  const int n = 400;
  auto x = floats(n, 9, -1e3f, 1e3f);
  const uint64_t dx = h_.upload(x), out = h_.alloc(n * 8);
  ASSERT_TRUE(h_.run(m_, "norms", {2, 1, 1}, {256, 1, 1}, Args().add(out).add(dx).add(n)).ok());
  auto y = h_.download<float>(out, 2 * n);
  const bool fast = GetParam().find(".fast") != std::string::npos;
  for (int i = 0; i < n; ++i) {
    const float v[3] = {x[i], x[i] * 0.5f - 1.0f, 3.0f - x[i]};
    long double s = 0;
    for (float e : v) s += static_cast<long double>(e) * e;
    const long double nrm = std::sqrt(s);
    // CUDA Programming Guide: normf 4 ulp, rnormf 3 ulp (fast math: 2^-20 relative).
    auto ulp = [](long double w) {
      return std::ldexp(1.0L, std::ilogb(static_cast<float>(w)) - 23);
    };
    const long double tol_n = fast ? nrm * 1e-6L : 4 * ulp(nrm);
    const long double tol_r = fast ? (1 / nrm) * 1e-6L : 3 * ulp(1 / nrm);
    ASSERT_LE(std::fabs(y[2 * i] - nrm), tol_n) << i;
    ASSERT_LE(std::fabs(y[2 * i + 1] - 1 / nrm), tol_r) << i;
  }
}

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/intrinsics.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Intrinsics, ::testing::ValuesIn(variants()),
                         [](const auto& info) {
                           std::string s = info.param.substr(9);
                           for (char& ch : s)
                             if (ch == '.') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace gpulease::sim::testing
