// Warp matrix multiply-accumulate (kernels/wmma.cu): nvcuda::wmma GEMMs with
// f32 and f16 accumulators, every layout, global and shared sources, the
// shapes m16n16k16, m32n8k16 and m8n32k16, f16 and bf16 inputs, as nvcc
// emits them for compute_75, 80 and 90 (with and without --use_fast_math),
// against a CPU reference. The inputs are small integers, so every sum is
// exact whatever the order, as a tensor core gives it.
#include <cstring>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

uint16_t to_half(int v) {  // small integers are exact in f16
  if (v == 0) return 0;
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  unsigned a = static_cast<unsigned>(v < 0 ? -v : v);
  int e = 31 - __builtin_clz(a);
  const unsigned man = (a << (10 - e)) & 0x3ff;
  return static_cast<uint16_t>(sign | (e + 15) << 10 | man);
}
int from_half(uint16_t h) {
  const int e = (h >> 10 & 31) - 15;
  const int m = (h & 0x3ff) | 0x400;
  if ((h & 0x7fff) == 0) return 0;
  const int v = e >= 10 ? m << (e - 10) : m >> (10 - e);
  return (h & 0x8000) ? -v : v;
}

class Wmma : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  Harness h_;
  uint64_t m_ = 0;
};

TEST_P(Wmma, GemmWithF32AccumulatorsAndElementwiseScale) {
  const int m = 32, n = 48, k = 48;
  std::vector<int> a(m * k), b(k * n);  // a row-major, b column-major
  for (int i = 0; i < m * k; ++i) a[i] = (i * 7 + 3) % 7 - 3;
  for (int i = 0; i < k * n; ++i) b[i] = (i * 5 + 1) % 5 - 2;
  std::vector<uint16_t> ha(a.size()), hb(b.size());
  for (size_t i = 0; i < a.size(); ++i) ha[i] = to_half(a[i]);
  for (size_t i = 0; i < b.size(); ++i) hb[i] = to_half(b[i]);
  const uint64_t da = h_.upload(ha), db = h_.upload(hb), dc = h_.upload(std::vector<float>(m * n));
  auto r = h_.run(m_, "wmma_gemm_f32", {1, n / 16, 1}, {64, 1, 1},
                  Args().add(da).add(db).add(dc).add(m).add(n).add(k));
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto c = h_.download<float>(dc, m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      int want = 0;
      for (int t = 0; t < k; ++t) want += a[i * k + t] * b[j * k + t];
      ASSERT_EQ(c[i * n + j], 2.0f * float(want)) << i << "," << j;
    }
}

TEST_P(Wmma, GemmWithF16AccumulatorsColumnMajorAndSharedStaging) {
  const int m = 32, n = 32, k = 48;
  std::vector<int> a(m * k), b(k * n), c(m * n);  // a, c column-major; b row-major
  for (int i = 0; i < m * k; ++i) a[i] = (i * 3 + 1) % 7 - 3;
  for (int i = 0; i < k * n; ++i) b[i] = (i * 11 + 2) % 5 - 2;
  for (int i = 0; i < m * n; ++i) c[i] = (i * 13) % 11 - 5;
  auto halves = [](const std::vector<int>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = to_half(v[i]);
    return h;
  };
  const uint64_t da = h_.upload(halves(a)), db = h_.upload(halves(b)), dc = h_.upload(halves(c)),
                 dd = h_.upload(std::vector<uint16_t>(m * n, 0xffff));
  auto r = h_.run(m_, "wmma_gemm_f16", {1, n / 16, 1}, {128, 1, 1},
                  Args().add(da).add(db).add(dc).add(dd).add(m).add(n).add(k));
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto d = h_.download<uint16_t>(dd, m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      int want = c[j * m + i];
      for (int t = 0; t < k; ++t) want += a[t * m + i] * b[t * n + j];
      ASSERT_EQ(from_half(d[j * m + i]), want) << i << "," << j;
    }
}

// One tile of D = A * B + C, A row-major, B column-major, C and D row-major.
std::vector<int> tile_ref(int M, int N, int K, const std::vector<int>& a, const std::vector<int>& b,
                          const std::vector<int>& c) {
  std::vector<int> d(M * N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      int v = c[i * N + j];
      for (int t = 0; t < K; ++t) v += a[i * K + t] * b[j * K + t];
      d[i * N + j] = v;
    }
  return d;
}
std::vector<int> ints(int n, int mul, int add, int mod) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = (i * mul + add) % mod - mod / 2;
  return v;
}
std::vector<uint16_t> halves(const std::vector<int>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = to_half(v[i]);
  return h;
}
std::vector<uint16_t> bf16s(const std::vector<int>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = float(v[i]);  // small integers: exact in bf16
    uint32_t u;
    std::memcpy(&u, &f, 4);
    h[i] = uint16_t(u >> 16);
  }
  return h;
}
std::vector<float> floats(const std::vector<int>& v) {
  return std::vector<float>(v.begin(), v.end());
}

TEST_P(Wmma, OtherShapes) {
  {  // m32n8k16, f32 accumulators
    const auto a = ints(32 * 16, 7, 1, 7), b = ints(16 * 8, 3, 2, 5), c = ints(32 * 8, 5, 0, 9);
    const uint64_t da = h_.upload(halves(a)), db = h_.upload(halves(b)), dc = h_.upload(floats(c)),
                   dd = h_.upload(std::vector<float>(32 * 8));
    auto r =
        h_.run(m_, "wmma_m32n8k16", {1, 1, 1}, {32, 1, 1}, Args().add(da).add(db).add(dc).add(dd));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(h_.download<float>(dd, 32 * 8), floats(tile_ref(32, 8, 16, a, b, c)));
  }
  {  // m8n32k16, f16 accumulators
    const auto a = ints(8 * 16, 5, 3, 7), b = ints(16 * 32, 11, 1, 5), c = ints(8 * 32, 3, 4, 9);
    const uint64_t da = h_.upload(halves(a)), db = h_.upload(halves(b)), dc = h_.upload(halves(c)),
                   dd = h_.upload(std::vector<uint16_t>(8 * 32));
    auto r =
        h_.run(m_, "wmma_m8n32k16", {1, 1, 1}, {32, 1, 1}, Args().add(da).add(db).add(dc).add(dd));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(h_.download<uint16_t>(dd, 8 * 32), halves(tile_ref(8, 32, 16, a, b, c)));
  }
}

// bf16 wmma exists from compute_80 on.
class WmmaBf16 : public Wmma {};

TEST_P(WmmaBf16, Bfloat16Inputs) {
  for (int shape = 0; shape < 2; ++shape) {
    const int M = shape == 0 ? 16 : 32, N = shape == 0 ? 16 : 8, K = 16;
    const auto a = ints(M * K, 7, 2, 9), b = ints(K * N, 5, 1, 7), c = ints(M * N, 3, 0, 11);
    const uint64_t da = h_.upload(bf16s(a)), db = h_.upload(bf16s(b)), dc = h_.upload(floats(c)),
                   dd = h_.upload(std::vector<float>(M * N));
    auto r = h_.run(m_, shape == 0 ? "wmma_bf16" : "wmma_bf16_m32n8k16", {1, 1, 1}, {32, 1, 1},
                    Args().add(da).add(db).add(dc).add(dd));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(h_.download<float>(dd, M * N), floats(tile_ref(M, N, K, a, b, c))) << shape;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, WmmaBf16,
                         ::testing::Values("variants/wmma.80.ptx", "variants/wmma.80.fast.ptx",
                                           "variants/wmma.90.ptx", "variants/wmma.90.fast.ptx"),
                         [](const auto& info) {
                           std::string s = std::string(info.param).substr(14);
                           for (char& ch : s)
                             if (ch == '.') ch = '_';
                           return s;
                         });

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/wmma.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Wmma, ::testing::ValuesIn(variants()), [](const auto& info) {
  std::string s = info.param.substr(14);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
});

// A warp with missing lanes cannot run wmma (the fragments span all 32).
TEST(WmmaForms, PartialWarpFaultsAndUnsupportedShapesAreRefused) {
  Harness h;
  const uint64_t m = h.load_file("variants/wmma.80.ptx");
  ASSERT_NE(m, 0u);
  const uint64_t buf = h.upload(std::vector<float>(64 * 64));
  auto r = h.run(m, "wmma_gemm_f32", {1, 1, 1}, {16, 1, 1},
                 Args().add(buf).add(buf).add(buf).add(16).add(16).add(16));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("wmma needs all 32 lanes"), std::string::npos)
      << r.error().message;
  const std::string head =
      ".version 8.0\n.target sm_90\n.address_size 64\n"
      ".visible .entry k(.param .u64 p)\n{\n.reg .b32 %r<9>;\n.reg .f32 %f<9>;\n"
      ".reg .b64 %rd<3>;\n";
  for (const char* line : {
           "wmma.load.a.sync.aligned.row.m16n8k8.global.f16 {%r1,%r2,%r3,%r4,%r5,%r6,%r7,%r8}, "
           "[%rd1];",
           "wmma.load.a.sync.aligned.row.m16n16k8.global.tf32 {%r1,%r2,%r3,%r4}, [%rd1];",
           "wmma.load.a.sync.aligned.row.m16n16k16.global.f16 {%r1,%r2,%r3,%r4}, [%rd1];",
           "wmma.mma.sync.aligned.row.col.m16n16k16.f32.f32.satfinite "
           "{%f1,%f2,%f3,%f4,%f5,%f6,%f7,%f8}, {%r1,%r2,%r3,%r4,%r5,%r6,%r7,%r8}, "
           "{%r1,%r2,%r3,%r4,%r5,%r6,%r7,%r8}, {%f1,%f2,%f3,%f4,%f5,%f6,%f7,%f8};",
           "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f1,%f2,%f3,%f4}, "
           "{%r1,%r2,%r3,%r4}, {%r5,%r6}, {%f5,%f6,%f7,%f8};",
       }) {
    auto mod = load_ptx(head + line + "\nret;\n}\n");
    ASSERT_FALSE(mod.ok()) << line;
    const std::string op = std::string(line).substr(0, std::string(line).find(' '));
    EXPECT_NE(mod.error().message.find(op), std::string::npos) << mod.error().message;
  }
}

}  // namespace
}  // namespace gpulease::sim::testing
