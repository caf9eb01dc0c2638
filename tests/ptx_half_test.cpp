// f16 / bf16 kernels (kernels/half.cu) as nvcc emits them for compute_75,
// 80 and 90, with and without --use_fast_math. References round by brute
// force: the nearest of all finite values of the format (ties to even), so
// they share nothing with the interpreter's rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

// All finite non-negative values of a 16-bit format, ascending, with their bits.
struct Table {
  std::vector<std::pair<double, uint16_t>> v;
};

double decode(uint16_t h, bool bf) {
  if (bf) {
    uint32_t b = uint32_t{h} << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  const int e = h >> 10 & 31, m = h & 1023;
  const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(m | 1024), e - 25);
  if (e == 31) return m ? NAN : INFINITY;
  return (h & 0x8000) ? -mag : mag;
}

const Table& table(bool bf) {
  static std::map<bool, Table> t;
  auto& x = t[bf];
  if (x.v.empty()) {
    for (uint32_t h = 0; h < 0x8000; ++h) {
      const double d = decode(uint16_t(h), bf);
      if (std::isfinite(d)) x.v.emplace_back(d, uint16_t(h));
    }
    std::sort(x.v.begin(), x.v.end());
  }
  return x;
}

// Round to nearest, ties to even, overflow to infinity.
uint16_t nearest(double v, bool bf) {
  const auto& t = table(bf).v;
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  const double maxf = t.back().first;
  const double ulp_max = maxf - t[t.size() - 2].first;
  if (a >= maxf + ulp_max / 2) return sign | (bf ? 0x7f80 : 0x7c00);
  auto it = std::lower_bound(t.begin(), t.end(), std::make_pair(a, uint16_t(0)));
  if (it == t.end()) return sign | t.back().second;
  if (it->first == a || it == t.begin()) return sign | it->second;
  auto lo = it - 1;
  const double dl = a - lo->first, dh = it->first - a;
  if (dl < dh) return sign | lo->second;
  if (dh < dl) return sign | it->second;
  return sign | ((lo->second & 1) ? it->second : lo->second);
}

class Half : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  Harness h_;
  uint64_t m_ = 0;
};

std::vector<float> inputs() {
  std::vector<float> x;
  for (int i = 0; i < 200; ++i)
    x.push_back(std::ldexp(float((i * 7919) % 2001 - 1000), (i % 13) - 8));
  for (float f : {0.0f, -0.0f, 65504.0f, 65520.0f, 1e-7f, -3e-5f, 1.0f + 1.0f / 2048, 3.0e38f})
    x.push_back(f);
  return x;
}

TEST_P(Half, ConversionsAndArithmetic) {
  const auto x = inputs();
  const int n = int(x.size());
  const uint64_t dx = h_.upload(x), dout = h_.upload(std::vector<float>(4 * n));
  ASSERT_TRUE(h_.run(m_, "half_math", {blocks_for(n, 128), 1, 1}, {128, 1, 1},
                     Args().add(dx).add(dout).add(n))
                  .ok());
  auto out = h_.download<float>(dout, 4 * n);
  for (int i = 0; i < n; ++i) {
    const uint16_t h = nearest(x[i], false);
    const double hv = decode(h, false);
    EXPECT_EQ(out[4 * i], float(hv)) << x[i];
    const double m = decode(nearest(hv * 1.5, false), false);
    const double s = decode(nearest(hv - 0.25, false), false);
    const double g = decode(nearest(m + s, false), false);
    if (std::isnan(g))
      EXPECT_TRUE(std::isnan(out[4 * i + 1])) << x[i];
    else
      EXPECT_EQ(out[4 * i + 1], float(g)) << x[i];
    const double q = hv / 3;  // __hdiv: within one ulp of the f16 quotient
    if (std::isfinite(q) && std::fabs(q) < 65504) {
      const double ulp = std::max(std::fabs(q) * std::ldexp(1.0, -10), std::ldexp(1.0, -24));
      EXPECT_NEAR(out[4 * i + 2], q, ulp) << x[i];
    }
    EXPECT_EQ(out[4 * i + 3], float(-std::fabs(hv))) << x[i];
  }
}

TEST_P(Half, ReluAndHalf2Fma) {
  const auto x = inputs();
  const int n = int(x.size());
  std::vector<uint16_t> hx(n);
  for (int i = 0; i < n; ++i) hx[i] = nearest(x[i], false);
  const uint64_t dh = h_.upload(hx);
  ASSERT_TRUE(
      h_.run(m_, "relu_half", {blocks_for(n, 128), 1, 1}, {128, 1, 1}, Args().add(dh).add(n)).ok());
  auto r = h_.download<uint16_t>(dh, n);
  for (int i = 0; i < n; ++i) {
    const double v = decode(hx[i], false);
    EXPECT_EQ(r[i], v > 0 ? hx[i] : uint16_t(0)) << x[i];
  }
  // y = a * x + y on pairs; moderate values so the double reference is exact.
  const int m = 64;
  std::vector<uint16_t> xs(2 * m), ys(2 * m);
  for (int i = 0; i < 2 * m; ++i) {
    xs[i] = nearest((i % 17) * 0.375 - 3, false);
    ys[i] = nearest((i % 11) * 0.7 - 2, false);
  }
  const uint32_t a = uint32_t(nearest(1.25, false)) | uint32_t(nearest(-0.5, false)) << 16;
  const uint64_t dxs = h_.upload(xs), dys = h_.upload(ys);
  ASSERT_TRUE(
      h_.run(m_, "axpy_half2", {1, 1, 1}, {64, 1, 1}, Args().add(a).add(dxs).add(dys).add(m)).ok());
  auto y = h_.download<uint16_t>(dys, 2 * m);
  for (int i = 0; i < 2 * m; ++i) {
    const double av = i % 2 == 0 ? 1.25 : -0.5;
    const double want = av * decode(xs[i], false) + decode(ys[i], false);
    EXPECT_EQ(y[i], nearest(want, false)) << i;
  }
}

TEST_P(Half, Bfloat16ConversionAndArithmetic) {
  const auto x = inputs();
  const int n = int(x.size());
  const uint64_t dx = h_.upload(x), dout = h_.upload(std::vector<float>(2 * n)),
                 draw = h_.upload(std::vector<uint16_t>(n));
  ASSERT_TRUE(h_.run(m_, "bf16_convert", {blocks_for(n, 128), 1, 1}, {128, 1, 1},
                     Args().add(dx).add(dout).add(draw).add(n))
                  .ok());
  auto out = h_.download<float>(dout, 2 * n);
  auto raw = h_.download<uint16_t>(draw, n);
  for (int i = 0; i < n; ++i) {
    const uint16_t b = nearest(x[i], true);
    EXPECT_EQ(raw[i], b) << x[i];
    const double bv = decode(b, true);
    EXPECT_EQ(out[2 * i], float(bv)) << x[i];
    const double c = decode(nearest(3 * bv, true), true);
    if (std::isfinite(c)) {
      EXPECT_EQ(out[2 * i + 1], float(c)) << x[i];
    }
  }
}

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/half.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Half, ::testing::ValuesIn(variants()), [](const auto& info) {
  std::string s = info.param.substr(9);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
});

}  // namespace
}  // namespace gpulease::sim::testing
