// Ordinary kernels (kernels/ordinary.cu) as nvcc emits them for compute_75,
// 80 and 90, with and without --use_fast_math, each checked against a CPU
// reference: exact where the computation is exact or its order is fixed,
// within a small relative error where the kernel calls the math library.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

class Ordinary : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  bool fast() const { return GetParam().find(".fast") != std::string::npos; }
  Harness h_;
  uint64_t m_ = 0;
};

std::vector<float> floats(size_t n, uint32_t seed, float lo = -4, float hi = 4) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_near_rel(const std::vector<float>& got, const std::vector<double>& want, double rel,
                     double abs, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], std::fabs(want[i]) * rel + abs) << what << " at " << i;
}

TEST_P(Ordinary, PaddedTransposeIsExact) {
  const int rows = 70, cols = 45;
  auto in = floats(rows * cols, 1);
  const uint64_t din = h_.upload(in), dout = h_.upload(std::vector<float>(rows * cols));
  ASSERT_TRUE(
      h_.run(m_, "transpose", {2, 3, 1}, {32, 8, 1}, Args().add(din).add(dout).add(rows).add(cols))
          .ok());
  auto out = h_.download<float>(dout, rows * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) ASSERT_EQ(out[c * rows + r], in[r * cols + c]) << r << "," << c;
}

TEST_P(Ordinary, SoftmaxAndLayernormRows) {
  const int rows = 5, cols = 300;
  auto x = floats(rows * cols, 2);
  auto g = floats(cols, 3, 0.5f, 1.5f), b = floats(cols, 4);
  const uint64_t dx = h_.upload(x), dy = h_.upload(std::vector<float>(rows * cols)),
                 dg = h_.upload(g), db = h_.upload(b),
                 dz = h_.upload(std::vector<float>(rows * cols));
  ASSERT_TRUE(
      h_.run(m_, "softmax_rows", {rows, 1, 1}, {128, 1, 1}, Args().add(dx).add(dy).add(cols)).ok());
  ASSERT_TRUE(h_.run(m_, "layernorm_rows", {rows, 1, 1}, {128, 1, 1},
                     Args().add(dx).add(dg).add(db).add(dz).add(cols).add(1e-5f))
                  .ok());
  auto y = h_.download<float>(dy, rows * cols);
  auto z = h_.download<float>(dz, rows * cols);
  std::vector<double> ys(rows * cols), zs(rows * cols);
  for (int r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0, mean = 0, var = 0;
    for (int c = 0; c < cols; ++c) m = std::max(m, double(x[r * cols + c]));
    for (int c = 0; c < cols; ++c) s += std::exp(double(x[r * cols + c]) - m);
    for (int c = 0; c < cols; ++c) ys[r * cols + c] = std::exp(double(x[r * cols + c]) - m) / s;
    for (int c = 0; c < cols; ++c) mean += x[r * cols + c];
    mean /= cols;
    for (int c = 0; c < cols; ++c) var += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
    var /= cols;
    for (int c = 0; c < cols; ++c)
      zs[r * cols + c] = (x[r * cols + c] - mean) / std::sqrt(var + 1e-5) * g[c] + b[c];
  }
  expect_near_rel(y, ys, 1e-5, 1e-9, "softmax");
  expect_near_rel(z, zs, 1e-4, 1e-5, "layernorm");
}

TEST_P(Ordinary, GeluBothForms) {
  const int n = 1000;
  auto x = floats(n, 5, -6, 6);
  const uint64_t dx = h_.upload(x), dt = h_.upload(std::vector<float>(n)),
                 de = h_.upload(std::vector<float>(n));
  ASSERT_TRUE(h_.run(m_, "gelu", {blocks_for(n, 256), 1, 1}, {256, 1, 1},
                     Args().add(dx).add(dt).add(de).add(n))
                  .ok());
  auto t = h_.download<float>(dt, n), e = h_.download<float>(de, n);
  std::vector<double> wt(n), we(n);
  for (int i = 0; i < n; ++i) {
    const double v = x[i];
    wt[i] = 0.5 * v * (1 + std::tanh(0.7978845608 * (v + 0.044715 * v * v * v)));
    we[i] = 0.5 * v * (1 + std::erf(v * 0.70710678));
  }
  expect_near_rel(t, wt, fast() ? 1e-3 : 1e-5, 1e-6, "gelu tanh");
  expect_near_rel(e, we, 1e-5, 1e-6, "gelu erf");
}

TEST_P(Ordinary, SharedHistogramScanCasMaxAndStencil) {
  const int n = 5000;
  std::vector<unsigned char> data(n);
  for (int i = 0; i < n; ++i) data[i] = static_cast<unsigned char>((i * 131 + i / 7) & 0xff);
  const uint64_t dd = h_.upload(data), dbins = h_.upload(std::vector<unsigned>(256));
  ASSERT_TRUE(
      h_.run(m_, "hist_shared", {4, 1, 1}, {128, 1, 1}, Args().add(dd).add(dbins).add(n)).ok());
  auto bins = h_.download<unsigned>(dbins, 256);
  std::vector<unsigned> want(256);
  for (auto c : data) ++want[c];
  EXPECT_EQ(bins, want);

  const int m = 700;
  std::vector<int> in(m);
  for (int i = 0; i < m; ++i) in[i] = (i * 37) % 19 - 9;
  const uint64_t di = h_.upload(in), dout = h_.upload(std::vector<int>(m));
  ASSERT_TRUE(
      h_.run(m_, "block_scan", {3, 1, 1}, {256, 1, 1}, Args().add(di).add(dout).add(m)).ok());
  auto scan = h_.download<int>(dout, m);
  for (int i = 0; i < m; ++i) {
    int s = 0;
    for (int j = (i / 256) * 256; j <= i; ++j) s += in[j];
    ASSERT_EQ(scan[i], s) << i;
  }

  auto x = floats(999, 6, -100, 100);
  const uint64_t dx = h_.upload(x), dmax = h_.upload(std::vector<float>{-1e30f});
  ASSERT_TRUE(
      h_.run(m_, "float_max_cas", {4, 1, 1}, {256, 1, 1}, Args().add(dx).add(dmax).add(999)).ok());
  EXPECT_EQ(h_.download<float>(dmax, 1)[0], *std::max_element(x.begin(), x.end()));

  std::vector<double> s(333);
  for (int i = 0; i < 333; ++i) s[i] = std::sin(i * 0.1);
  const uint64_t ds = h_.upload(s), dso = h_.upload(std::vector<double>(333));
  ASSERT_TRUE(
      h_.run(m_, "stencil_d", {2, 1, 1}, {256, 1, 1}, Args().add(ds).add(dso).add(333)).ok());
  auto so = h_.download<double>(dso, 333);
  for (int i = 0; i < 333; ++i) {
    const double w = (i == 0 || i == 332) ? s[i] : 0.25 * s[i - 1] + 0.5 * s[i] + 0.25 * s[i + 1];
    ASSERT_EQ(so[i], w) << i;
  }
}

TEST_P(Ordinary, Grid3dStructByValueLocalArrayConstantsAndTemplates) {
  const int nx = 13, ny = 7, nz = 5;
  const uint64_t dg = h_.upload(std::vector<int>(nx * ny * nz, -1));
  ASSERT_TRUE(
      h_.run(m_, "grid3d", {4, 2, 3}, {4, 4, 2}, Args().add(dg).add(nx).add(ny).add(nz)).ok());
  auto g = h_.download<int>(dg, nx * ny * nz);
  for (int z = 0; z < nz; ++z)
    for (int y = 0; y < ny; ++y)
      for (int x = 0; x < nx; ++x) ASSERT_EQ(g[(z * ny + y) * nx + x], x + 1000 * y + 1000000 * z);

  struct Params {
    float a;
    int b;
    double c;
  } p{1.5f, -3, 0.25};
  auto x = floats(100, 7);
  const uint64_t dx = h_.upload(x), dy = h_.upload(std::vector<float>(100));
  ASSERT_TRUE(
      h_.run(m_, "by_value", {1, 1, 1}, {128, 1, 1}, Args().add(p).add(dx).add(dy).add(100)).ok());
  auto y = h_.download<float>(dy, 100);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(y[i], std::fma(1.5f, x[i], -3.0f) + 0.25f) << i;

  std::vector<int> v(8 * 40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = int((i * 7919) % 101) - 50;
  const uint64_t dv = h_.upload(v), dvo = h_.upload(std::vector<int>(v.size()));
  ASSERT_TRUE(
      h_.run(m_, "local_sort", {1, 1, 1}, {64, 1, 1}, Args().add(dv).add(dvo).add(int(v.size())))
          .ok());
  auto sorted = h_.download<int>(dvo, v.size());
  for (size_t t = 0; t < 40; ++t) {
    std::vector<int> w(v.begin() + t * 8, v.begin() + t * 8 + 8);
    std::sort(w.begin(), w.end());
    for (int k = 0; k < 8; ++k) ASSERT_EQ(sorted[t * 8 + k], w[k]) << t;
  }

  const float c[8] = {1.0f, -0.5f, 0.25f, -0.125f, 0.0625f, 0.03125f, -0.015625f, 0.0078125f};
  const uint64_t dpo = h_.upload(std::vector<float>(100));
  ASSERT_TRUE(
      h_.run(m_, "poly_const", {1, 1, 1}, {128, 1, 1}, Args().add(dx).add(dpo).add(100)).ok());
  auto po = h_.download<float>(dpo, 100);
  for (int i = 0; i < 100; ++i) {
    float acc = 0;
    for (int k = 7; k >= 0; --k) acc = std::fma(acc, x[i], c[k]);
    ASSERT_EQ(po[i], acc) << i;
  }

  std::vector<int> ints(50);
  std::iota(ints.begin(), ints.end(), -20);
  const uint64_t di = h_.upload(ints);
  ASSERT_TRUE(
      h_.run(m_, "_Z7scale_tIiEvPT_S0_i", {1, 1, 1}, {64, 1, 1}, Args().add(di).add(3).add(50))
          .ok());
  auto io = h_.download<int>(di, 50);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(io[i], (i - 20) * 3 + 1);
  ASSERT_TRUE(
      h_.run(m_, "_Z7scale_tIfEvPT_S0_i", {1, 1, 1}, {128, 1, 1}, Args().add(dx).add(0.5f).add(100))
          .ok());
  auto fo = h_.download<float>(dx, 100);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(fo[i], std::fma(x[i], 0.5f, 1.0f)) << i;
}

TEST_P(Ordinary, WideArithmeticBitIntrinsicsAndChainedBlocks) {
  const int n = 64;
  std::mt19937_64 rng(9);
  std::vector<unsigned long long> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[i] = rng();
    b[i] = rng();
    c[i] = rng();
  }
  a[0] = b[0] = c[0] = ~0ull;
  const uint64_t da = h_.upload(a), db = h_.upload(b), dc = h_.upload(c),
                 dlo = h_.upload(std::vector<unsigned long long>(n)),
                 dhi = h_.upload(std::vector<unsigned long long>(n));
  ASSERT_TRUE(h_.run(m_, "mad128", {1, 1, 1}, {64, 1, 1},
                     Args().add(da).add(db).add(dc).add(dlo).add(dhi).add(n))
                  .ok());
  auto lo = h_.download<unsigned long long>(dlo, n), hi = h_.download<unsigned long long>(dhi, n);
  for (int i = 0; i < n; ++i) {
    const unsigned __int128 p = static_cast<unsigned __int128>(a[i]) * b[i] + c[i];
    ASSERT_EQ(lo[i], static_cast<unsigned long long>(p)) << i;
    ASSERT_EQ(hi[i], static_cast<unsigned long long>(p >> 64)) << i;
  }

  std::vector<unsigned> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<unsigned>(rng());
    y[i] = static_cast<unsigned>(rng());
  }
  x[0] = 0;
  y[1] = 0;
  const uint64_t dx = h_.upload(x), dy = h_.upload(y),
                 dout = h_.upload(std::vector<unsigned>(8 * n));
  ASSERT_TRUE(
      h_.run(m_, "bits", {1, 1, 1}, {64, 1, 1}, Args().add(dx).add(dy).add(dout).add(n)).ok());
  auto o = h_.download<unsigned>(dout, 8 * n);
  for (int i = 0; i < n; ++i) {
    const unsigned v = x[i], w = y[i];
    unsigned brev = 0;
    for (int k = 0; k < 32; ++k) brev |= ((v >> k) & 1u) << (31 - k);
    const uint64_t both = (uint64_t(v) << 32) | w;
    auto byte = [&](unsigned s) { return unsigned((((uint64_t(w) << 32) | v) >> (8 * s)) & 0xff); };
    const unsigned perm = byte(0) | byte(4) << 8 | byte(1) << 16 | byte(5) << 24;
    const unsigned sh = w & 31;
    const uint64_t fun = (uint64_t(w) << 32) | v;
    ASSERT_EQ(o[8 * i + 0], unsigned(__builtin_popcount(v))) << i;
    ASSERT_EQ(o[8 * i + 1], v ? unsigned(__builtin_clz(v)) : 32u) << i;
    ASSERT_EQ(o[8 * i + 2], v ? unsigned(__builtin_ctz(v)) + 1 : 0u) << i;
    ASSERT_EQ(o[8 * i + 3], brev) << i;
    ASSERT_EQ(o[8 * i + 4], perm) << i;
    ASSERT_EQ(o[8 * i + 5], unsigned((fun << sh) >> 32)) << i;
    ASSERT_EQ(o[8 * i + 6], unsigned(fun >> sh)) << i;
    ASSERT_EQ(o[8 * i + 7], unsigned(__builtin_popcountll(both)) +
                                (w ? unsigned(__builtin_clzll(uint64_t(w))) : 64u))
        << i;
  }

  const int m = 20 * 64;
  std::vector<int> in(m);
  for (int i = 0; i < m; ++i) in[i] = i % 13;
  const uint64_t di = h_.upload(in), dt = h_.upload(std::vector<int>(20)),
                 df = h_.upload(std::vector<int>(20));
  ASSERT_TRUE(
      h_.run(m_, "chained_sum", {20, 1, 1}, {64, 1, 1}, Args().add(di).add(dt).add(df).add(m))
          .ok());
  auto totals = h_.download<int>(dt, 20);
  int run = 0;
  for (int bl = 0; bl < 20; ++bl) {
    for (int j = 0; j < 64; ++j) run += in[bl * 64 + j];
    ASSERT_EQ(totals[bl], run) << bl;
  }
}

TEST_P(Ordinary, PrintfIsDiscardedAndTheKernelRuns) {
  const uint64_t d = h_.upload(std::vector<int>(50, -1));
  ASSERT_TRUE(h_.run(m_, "print_ids", {1, 1, 1}, {64, 1, 1}, Args().add(d).add(50)).ok());
  auto o = h_.download<int>(d, 50);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(o[i], 2 * i);
}

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/ordinary.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Ordinary, ::testing::ValuesIn(variants()), [](const auto& info) {
  std::string s = info.param.substr(9);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
});

}  // namespace
}  // namespace gpulease::sim::testing
