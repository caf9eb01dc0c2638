// Every kernel in kernels/ runs on the sim backend (alloc, write, load the
// checked-in PTX, launch, sync, read) and matches a plain C++ reference on
// random inputs of several sizes, including sizes that are not a multiple of
// the block size. Float results are compared bit for bit: the reference does
// the same IEEE operations in the same order as the kernel's PTX.
#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <random>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

const uint64_t kSizes[] = {1, 31, 256, 1000, 4099};
constexpr uint32_t kBlock = 256;

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -100.0f, float hi = 100.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <typename T>
std::vector<T> random_ints(size_t n, uint32_t seed, T lo, T hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<T> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
        << "element " << i << ": got " << got[i] << ", want " << want[i];
}

TEST(SimKernels, ScaleAndBiasMatchTheReference) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("transform.ptx");
    auto x = random_floats(n, 1);
    const uint64_t buf = h.upload(x);
    const uint32_t g = blocks_for(n, kBlock);
    ASSERT_TRUE(
        h.run(m, "scale", {g, 1, 1}, {kBlock, 1, 1}, Args().add(buf).add(int32_t(n)).add(1.5f))
            .ok());
    ASSERT_TRUE(
        h.run(m, "bias", {g, 1, 1}, {kBlock, 1, 1}, Args().add(buf).add(int32_t(n)).add(-0.25f))
            .ok());
    for (auto& v : x) v = v * 1.5f + -0.25f;  // two roundings, as the two kernels
    expect_bits_equal(h.download<float>(buf, n), x);
  }
}

TEST(SimKernels, VectorAddAndSaxpyMatchTheReference) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("vector.ptx");
    auto a = random_floats(n, 2), b = random_floats(n, 3);
    const uint64_t da = h.upload(a), db = h.upload(b), dc = h.alloc(n * 4);
    const uint32_t g = blocks_for(n, 128);
    ASSERT_TRUE(h.run(m, "vector_add", {g, 1, 1}, {128, 1, 1},
                      Args().add(da).add(db).add(dc).add(int32_t(n)))
                    .ok());
    std::vector<float> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = a[i] + b[i];
    expect_bits_equal(h.download<float>(dc, n), want);

    ASSERT_TRUE(
        h.run(m, "saxpy", {g, 1, 1}, {128, 1, 1}, Args().add(int32_t(n)).add(0.75f).add(da).add(db))
            .ok());
    for (size_t i = 0; i < n; ++i) want[i] = std::fma(0.75f, a[i], b[i]);
    expect_bits_equal(h.download<float>(db, n), want);
  }
}

TEST(SimKernels, DecodeDenoiseEncodeMatchTheReference) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("pipeline.ptx");
    auto raw = random_ints<uint32_t>(n, 4, 0, 255);
    std::vector<uint8_t> raw8(raw.begin(), raw.end());
    const uint64_t draw = h.upload(raw8), da = h.alloc(n * 4), db = h.alloc(n * 4),
                   dout = h.alloc(n);
    const uint32_t g = blocks_for(n, kBlock);
    ASSERT_TRUE(
        h.run(m, "decode", {g, 1, 1}, {kBlock, 1, 1}, Args().add(draw).add(da).add(int32_t(n)))
            .ok());
    std::vector<float> dec(n);
    for (size_t i = 0; i < n; ++i) dec[i] = static_cast<float>(raw8[i]) / 255.0f;
    expect_bits_equal(h.download<float>(da, n), dec);

    const float threshold = 0.3f;
    ASSERT_TRUE(h.run(m, "denoise", {g, 1, 1}, {kBlock, 1, 1},
                      Args().add(da).add(db).add(int32_t(n)).add(threshold))
                    .ok());
    std::vector<float> den(n);
    for (size_t i = 0; i < n; ++i) {
      const float c = dec[i], l = i > 0 ? dec[i - 1] : c, r = i + 1 < n ? dec[i + 1] : c;
      const float s = (l + c + r) / 3.0f;
      den[i] = s > threshold ? s : 0.0f;
    }
    expect_bits_equal(h.download<float>(db, n), den);

    ASSERT_TRUE(
        h.run(m, "encode", {g, 1, 1}, {kBlock, 1, 1}, Args().add(db).add(dout).add(int32_t(n)))
            .ok());
    auto out = h.download<uint8_t>(dout, n);
    for (size_t i = 0; i < n; ++i) {
      const float v = std::min(std::max(den[i], 0.0f), 1.0f);
      ASSERT_EQ(out[i], static_cast<uint8_t>(std::fma(v, 255.0f, 0.5f))) << i;
    }
  }
}

TEST(SimKernels, EncodeClampsOutOfRangeAndNaNInputs) {
  Harness h;
  const uint64_t m = h.load_file("pipeline.ptx");
  std::vector<float> in = {-1.0f, 2.0f, NAN, 0.5f, 1.0f, 0.0f, INFINITY, -INFINITY};
  const uint64_t din = h.upload(in), dout = h.alloc(in.size());
  ASSERT_TRUE(
      h.run(m, "encode", {1, 1, 1}, {32, 1, 1}, Args().add(din).add(dout).add(int32_t(in.size())))
          .ok());
  EXPECT_EQ(h.download<uint8_t>(dout, in.size()),
            (std::vector<uint8_t>{0, 255, 0, 128, 255, 0, 255, 0}));
}

TEST(SimKernels, InferComputesADenseReluLayer) {
  const std::pair<int, int> shapes[] = {{1, 1}, {7, 3}, {64, 100}, {33, 257}};
  for (auto [in_dim, out_dim] : shapes) {
    Harness h;
    const uint64_t m = h.load_file("infer.ptx");
    auto W = random_floats(size_t(in_dim) * out_dim, 5, -1, 1), x = random_floats(in_dim, 6, -1, 1),
         b = random_floats(out_dim, 7, -1, 1);
    const uint64_t dW = h.upload(W), dx = h.upload(x), db = h.upload(b), dy = h.alloc(out_dim * 4);
    ASSERT_TRUE(
        h.run(m, "infer", {blocks_for(out_dim, 64), 1, 1}, {64, 1, 1},
              Args().add(dW).add(dx).add(db).add(dy).add(int32_t(in_dim)).add(int32_t(out_dim)))
            .ok());
    std::vector<float> want(out_dim);
    for (int o = 0; o < out_dim; ++o) {
      float acc = 0.0f;
      for (int k = 0; k < in_dim; ++k) acc = std::fma(W[size_t(o) * in_dim + k], x[k], acc);
      acc += b[o];
      want[o] = acc > 0.0f ? acc : 0.0f;
    }
    expect_bits_equal(h.download<float>(dy, out_dim), want);
  }
}

TEST(SimKernels, ReduceSumFollowsTheSharedMemoryTree) {
  for (uint64_t n : kSizes) {
    for (uint32_t block : {32u, 256u, 1024u}) {
      Harness h;
      const uint64_t m = h.load_file("reduce.ptx");
      auto in = random_floats(n, 8);
      const uint32_t g = blocks_for(n, block);
      const uint64_t din = h.upload(in), dout = h.alloc(g * 4);
      ASSERT_TRUE(h.run(m, "reduce_sum", {g, 1, 1}, {block, 1, 1},
                        Args().add(din).add(dout).add(int32_t(n)))
                      .ok());
      std::vector<float> want(g);
      for (uint32_t b = 0; b < g; ++b) {
        std::vector<float> sh(block);
        for (uint32_t t = 0; t < block; ++t) sh[t] = b * block + t < n ? in[b * block + t] : 0.0f;
        for (uint32_t s = block / 2; s > 0; s >>= 1)
          for (uint32_t t = 0; t < s; ++t) sh[t] += sh[t + s];
        want[b] = sh[0];
      }
      expect_bits_equal(h.download<float>(dout, g), want);
    }
  }
}

TEST(SimKernels, ReduceMaxUsesDynamicSharedMemory) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("reduce.ptx");
    auto in = random_ints<int32_t>(n, 9, INT_MIN, INT_MAX);
    const uint32_t block = 128, g = blocks_for(n, block);
    const uint64_t din = h.upload(in), dout = h.alloc(g * 4);
    ASSERT_TRUE(h.run(m, "reduce_max_dyn", {g, 1, 1}, {block, 1, 1},
                      Args().add(din).add(dout).add(int32_t(n)), block * 4)
                    .ok());
    auto got = h.download<int32_t>(dout, g);
    for (uint32_t b = 0; b < g; ++b) {
      int32_t want = INT_MIN;
      for (uint64_t i = uint64_t(b) * block; i < std::min<uint64_t>(n, uint64_t(b + 1) * block);
           ++i)
        want = std::max(want, in[i]);
      EXPECT_EQ(got[b], want) << "block " << b;
    }
  }
}

TEST(SimKernels, ReduceMaxWithoutDynamicSharedMemoryFaults) {
  Harness h;
  const uint64_t m = h.load_file("reduce.ptx");
  const uint64_t din = h.upload(std::vector<int32_t>(64, 1)), dout = h.alloc(4);
  auto r = h.run(m, "reduce_max_dyn", {1, 1, 1}, {64, 1, 1},
                 Args().add(din).add(dout).add(int32_t(64)), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kSyncFailed);
  EXPECT_NE(r.error().message.find("shared st"), std::string::npos) << r.error().message;
}

TEST(SimKernels, TiledMatmulMatchesTheReference) {
  const std::array<int, 3> shapes[] = {
      {1, 1, 1}, {16, 16, 16}, {17, 5, 33}, {40, 70, 20}, {64, 64, 64}};
  for (auto [M, N, K] : shapes) {
    Harness h;
    const uint64_t m = h.load_file("matmul.ptx");
    auto A = random_floats(size_t(M) * K, 10, -2, 2), B = random_floats(size_t(K) * N, 11, -2, 2);
    const uint64_t dA = h.upload(A), dB = h.upload(B), dC = h.alloc(size_t(M) * N * 4);
    ASSERT_TRUE(h.run(m, "matmul_tiled", {blocks_for(N, 16), blocks_for(M, 16), 1}, {16, 16, 1},
                      Args().add(dA).add(dB).add(dC).add(M).add(N).add(K))
                    .ok());
    std::vector<float> want(size_t(M) * N);
    for (int r = 0; r < M; ++r)
      for (int c = 0; c < N; ++c) {
        float acc = 0.0f;
        for (int t0 = 0; t0 < K; t0 += 16)
          for (int j = 0; j < 16; ++j) {  // padded tiles contribute fma(0, 0, acc)
            const int k = t0 + j;
            acc = std::fma(k < K ? A[size_t(r) * K + k] : 0.0f, k < K ? B[size_t(k) * N + c] : 0.0f,
                           acc);
          }
        want[size_t(r) * N + c] = acc;
      }
    expect_bits_equal(h.download<float>(dC, size_t(M) * N), want);
  }
}

TEST(SimKernels, HistogramCountsWithGlobalAtomics) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("histogram.ptx");
    auto data = random_ints<uint32_t>(n, 12, 0, 1000);
    const uint32_t nbins = 7;
    const uint64_t dd = h.upload(data), dbins = h.upload(std::vector<uint32_t>(nbins, 0));
    ASSERT_TRUE(h.run(m, "histogram", {blocks_for(n, 64), 1, 1}, {64, 1, 1},
                      Args().add(dd).add(dbins).add(int32_t(n)).add(nbins))
                    .ok());
    std::vector<uint32_t> want(nbins, 0);
    for (auto v : data) ++want[v % nbins];
    EXPECT_EQ(h.download<uint32_t>(dbins, nbins), want);
  }
}

TEST(SimKernels, MinmaxUsesMinMaxAddExchAndCas) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("histogram.ptx");
    auto v = random_ints<int32_t>(n, 13, -50, 50);
    const uint64_t dv = h.upload(v),
                   ds = h.upload(std::vector<int32_t>{INT_MAX, INT_MIN, 0, -1, INT_MAX});
    ASSERT_TRUE(h.run(m, "minmax", {blocks_for(n, 32), 1, 1}, {32, 1, 1},
                      Args().add(dv).add(ds).add(int32_t(n)))
                    .ok());
    auto s = h.download<int32_t>(ds, 5);
    EXPECT_EQ(s[0], *std::min_element(v.begin(), v.end()));
    EXPECT_EQ(s[1], *std::max_element(v.begin(), v.end()));
    EXPECT_EQ(s[2], std::count(v.begin(), v.end(), 0));
    if (s[2] > 0) {
      ASSERT_GE(s[3], 0);
      EXPECT_EQ(v[s[3]], 0);
    } else {
      EXPECT_EQ(s[3], -1);
    }
    auto neg = std::find_if(v.begin(), v.end(), [](int32_t x) { return x < 0; });
    EXPECT_EQ(s[4], neg == v.end() ? INT_MAX : int32_t(neg - v.begin()));
  }
}

TEST(SimKernels, CollatzLoopsWithDivergentTripCounts) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("branchy.ptx");
    auto start = random_ints<uint32_t>(n, 14, 0, 100000);
    start[0] = 0;
    const uint32_t cap = 200;
    const uint64_t ds = h.upload(start), dsteps = h.alloc(n * 4);
    ASSERT_TRUE(h.run(m, "collatz", {blocks_for(n, kBlock), 1, 1}, {kBlock, 1, 1},
                      Args().add(ds).add(dsteps).add(int32_t(n)).add(cap))
                    .ok());
    auto got = h.download<uint32_t>(dsteps, n);
    for (size_t i = 0; i < n; ++i) {
      uint32_t v = start[i], s = 0;
      if (v != 0)
        while (v != 1 && s < cap) {
          v = (v & 1) ? 3 * v + 1 : v >> 1;
          ++s;
        }
      ASSERT_EQ(got[i], s) << "start " << start[i];
    }
  }
}

TEST(SimKernels, ClassifyTakesEveryBranch) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("branchy.ptx");
    auto x = random_floats(n, 15, -2, 2);
    if (n > 3) x[3] = NAN;
    const uint64_t dx = h.upload(x), dout = h.alloc(n * 4);
    ASSERT_TRUE(h.run(m, "classify", {blocks_for(n, 96), 1, 1}, {96, 1, 1},
                      Args().add(dx).add(dout).add(int32_t(n)).add(-1.0f).add(1.0f))
                    .ok());
    auto got = h.download<int32_t>(dout, n);
    for (size_t i = 0; i < n; ++i) {
      const float v = x[i];
      const int want = v != v ? 3 : v < -1.0f ? 1 : v > 1.0f ? 2 : (i & 1) ? 4 : 0;
      ASSERT_EQ(got[i], want) << i;
    }
  }
}

TEST(SimKernels, Mix64DoesSixtyFourBitIntegerMath) {
  for (uint64_t n : kSizes) {
    Harness h;
    const uint64_t m = h.load_file("int64.ptx");
    auto in = random_ints<uint64_t>(n, 16, 0, ~uint64_t{0});
    if (n > 2) {
      in[0] = 0;
      in[1] = uint64_t{1} << 63;  // INT64_MIN as signed
      in[2] = ~uint64_t{0};
    }
    const uint64_t seed = 0x0123456789abcdefull;
    const uint64_t din = h.upload(in), dout = h.alloc(n * 8), ddiv = h.alloc(n * 8),
                   dmax = h.alloc(n * 8);
    ASSERT_TRUE(h.run(m, "mix64", {blocks_for(n, kBlock), 1, 1}, {kBlock, 1, 1},
                      Args().add(din).add(dout).add(ddiv).add(dmax).add(int32_t(n)).add(seed))
                    .ok());
    auto out = h.download<uint64_t>(dout, n);
    auto sdiv = h.download<int64_t>(ddiv, n);
    auto smax = h.download<int64_t>(dmax, n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t x = in[i];
      uint64_t z = x + seed;
      z ^= z >> 30;
      z *= 0xBF58476D1CE4E5B9ull;
      z ^= z >> 27;
      z *= 0x94D049BB133111EBull;
      z ^= z >> 31;
      const uint64_t hi = static_cast<uint64_t>((static_cast<unsigned __int128>(x) * seed) >> 64);
      ASSERT_EQ(out[i], (z ^ ((x * 0x9E3779B97F4A7C15ull) >> 7)) + x / 7 - x % 13 + hi) << i;
      ASSERT_EQ(sdiv[i], static_cast<int64_t>(x) / -3) << i;
      ASSERT_EQ(smax[i], std::max(static_cast<int64_t>(x), static_cast<int64_t>(seed))) << i;
    }
  }
}

TEST(SimKernels, OobReadCopiesWhenTheOffsetStaysInBounds) {
  Harness h;
  const uint64_t m = h.load_file("faults.ptx");
  auto in = random_floats(300, 17);
  const uint64_t din = h.upload(in), dout = h.alloc(200 * 4);
  ASSERT_TRUE(h.run(m, "oob_read", {2, 1, 1}, {128, 1, 1},
                    Args().add(din).add(dout).add(int32_t(200)).add(int32_t(100)))
                  .ok());
  expect_bits_equal(h.download<float>(dout, 200), std::vector<float>(in.begin() + 100, in.end()));
}

TEST(SimKernels, SpinReturnsOnceTheFlagIsSet) {
  Harness h;
  const uint64_t m = h.load_file("faults.ptx");
  const uint64_t flag = h.upload(std::vector<int32_t>{1});
  EXPECT_TRUE(h.run(m, "spin", {4, 1, 1}, {32, 1, 1}, Args().add(flag)).ok());
}

// kernels/globals.cu: the host sets a __constant__ table and its length,
// reads and resets a __device__ counter, and passes a variable's address as a
// kernel's pointer argument (MODULE_GLOBAL through the node in
// node_kernels_test, the sim context's own lookup in sim_kernels_test).
TEST(SimKernels, ModuleGlobalsAreSetReadAndPassedAsPointers) {
  Harness h;
  const uint64_t m = h.load_file("globals.ptx");
  server::DeviceContext& ctx = h.ctx();
  auto table = ctx.module_global(m, "kTable");
  auto terms = ctx.module_global(m, "kTerms");
  auto count = ctx.module_global(m, "gCount");
  auto calls = ctx.module_global(m, "gCalls");
  ASSERT_TRUE(table.ok() && terms.ok() && count.ok() && calls.ok());
  EXPECT_EQ(table->size, 64u);
  EXPECT_EQ(table->space, server::VariableSpace::kConst);
  EXPECT_EQ(terms->size, 4u);
  EXPECT_EQ(count->size, 4u);
  EXPECT_EQ(count->space, server::VariableSpace::kGlobal);
  // The initialiser is there before any launch; a name that is not a
  // variable (a kernel's, an unknown one) is INVALID_ARGUMENT.
  EXPECT_EQ(h.download<uint32_t>(calls->address, 1)[0], 7u);
  auto kernel_name = ctx.module_global(m, "poly_table");
  ASSERT_FALSE(kernel_name.ok());
  EXPECT_EQ(kernel_name.status(), Status::kInvalidArgument);

  const std::vector<float> coeffs{0.5f, -1.25f, 0.375f, 2.0f, -0.0625f};
  std::vector<float> padded(16, 0.0f);
  std::copy(coeffs.begin(), coeffs.end(), padded.begin());
  ASSERT_TRUE(ctx.mem_write(table->address, {reinterpret_cast<const std::byte*>(padded.data()),
                                             padded.size() * sizeof(float)})
                  .ok());
  const int32_t n_terms = static_cast<int32_t>(coeffs.size());
  ASSERT_TRUE(
      ctx.mem_write(terms->address, {reinterpret_cast<const std::byte*>(&n_terms), 4}).ok());
  const uint64_t n = 1000;
  auto x = random_floats(n, 7);
  const uint64_t dx = h.upload(x);
  const uint64_t dy = h.alloc(n * sizeof(float));
  ASSERT_TRUE(h.run(m, "poly_table", {blocks_for(n, kBlock), 1, 1}, {kBlock, 1, 1},
                    Args().add(dx).add(dy).add(int32_t(n)))
                  .ok());
  std::vector<float> want(n);
  for (uint64_t i = 0; i < n; ++i) {
    float acc = 0.0f, p = 1.0f;
    for (float c : coeffs) {
      acc = std::fma(c, p, acc);
      p = p * x[i];
    }
    want[i] = acc;
  }
  expect_bits_equal(h.download<float>(dy, n), want);
  EXPECT_EQ(h.download<uint32_t>(count->address, 1)[0], n);
  EXPECT_EQ(h.download<uint32_t>(calls->address, 1)[0], 8u);
  // The counter's address as a kernel's pointer argument.
  ASSERT_TRUE(h.run(m, "bump", {4, 1, 1}, {32, 1, 1}, Args().add(count->address).add(3u)).ok());
  EXPECT_EQ(h.download<uint32_t>(count->address, 1)[0], n + 4 * 32 * 3);
  // Reset from the host; a second launch sees the new table (4 terms).
  const uint32_t zero = 0;
  ASSERT_TRUE(ctx.mem_write(count->address, {reinterpret_cast<const std::byte*>(&zero), 4}).ok());
  const int32_t four = 4;
  ASSERT_TRUE(ctx.mem_write(terms->address, {reinterpret_cast<const std::byte*>(&four), 4}).ok());
  ASSERT_TRUE(
      h.run(m, "poly_table", {1, 1, 1}, {kBlock, 1, 1}, Args().add(dx).add(dy).add(int32_t(10)))
          .ok());
  EXPECT_EQ(h.download<uint32_t>(count->address, 1)[0], 10u);
  auto y = h.download<float>(dy, 10);
  for (int i = 0; i < 10; ++i) {
    float acc = 0.0f, p = 1.0f;
    for (int k = 0; k < 4; ++k) {
      acc = std::fma(coeffs[k], p, acc);
      p = p * x[i];
    }
    EXPECT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(acc)) << i;
  }
  // Each load of a module has its own variables.
  const uint64_t m2 = h.load_file("globals.ptx");
  auto calls2 = ctx.module_global(m2, "gCalls");
  ASSERT_TRUE(calls2.ok());
  EXPECT_NE(calls2->address, calls->address);
  EXPECT_EQ(h.download<uint32_t>(calls2->address, 1)[0], 7u);
}

}  // namespace
}  // namespace gpulease::sim::testing
