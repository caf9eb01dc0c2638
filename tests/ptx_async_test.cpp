// Asynchronous copies (kernels/async_copy.cu): cp.async (sm_80) as nvcc
// emits it for __pipeline_memcpy_async / __pipeline_commit /
// __pipeline_wait_prior and cooperative_groups::memcpy_async, at compute_75
// (plain copies), 80 and 90, with and without --use_fast_math, against CPU
// references; and cp.async's forms and refusals at the loader.
#include <cmath>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

class Async : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  Harness h_;
  uint64_t m_ = 0;
};

TEST_P(Async, DoubleBufferedTiledMatmulIsExact) {
  const int n = 48;
  std::vector<float> a(n * n), b(n * n);
  for (int i = 0; i < n * n; ++i) {
    a[i] = float((i * 7) % 13) - 6.0f;
    b[i] = float((i * 11) % 17) * 0.25f - 2.0f;
  }
  const uint64_t da = h_.upload(a), db = h_.upload(b), dc = h_.upload(std::vector<float>(n * n));
  auto r = h_.run(m_, "matmul_async", {n / 16, n / 16, 1}, {16, 16, 1},
                  Args().add(da).add(db).add(dc).add(n));
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto c = h_.download<float>(dc, n * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;  // the kernel's order: k ascending, one fma per step (exact here)
      for (int k = 0; k < n; ++k) acc = std::fma(a[i * n + k], b[k * n + j], acc);
      ASSERT_EQ(c[i * n + j], acc) << i << "," << j;
    }
}

TEST_P(Async, ZeroFillTail) {
  for (int n : {1, 5, 1023, 1026}) {
    std::vector<int> in(n);
    for (int i = 0; i < n; ++i) in[i] = i * 3 + 1;
    const int padded = (n + 3) / 4 * 4;
    const uint64_t din = h_.upload(in), dout = h_.upload(std::vector<int>(padded, 77));
    auto r = h_.run(m_, "copy_zfill", {blocks_for(padded / 4, 256), 1, 1}, {256, 1, 1},
                    Args().add(din).add(dout).add(n));
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto out = h_.download<int>(dout, padded);
    for (int i = 0; i < padded; ++i) EXPECT_EQ(out[i], i < n ? in[i] : 0) << n << " " << i;
  }
}

TEST_P(Async, CooperativeGroupsMemcpyAsync) {
  const int blocks = 3, per = 200;
  std::vector<float> in(blocks * per);
  for (int i = 0; i < blocks * per; ++i) in[i] = float(i % 29) * 0.5f;
  const uint64_t din = h_.upload(in), dout = h_.upload(std::vector<float>(blocks));
  auto r = h_.run(m_, "memcpy_async_sum", {blocks, 1, 1}, {64, 1, 1},
                  Args().add(din).add(dout).add(per), per * 4);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto out = h_.download<float>(dout, blocks);
  for (int b = 0; b < blocks; ++b) {
    float s = 0.0f;
    for (int i = 0; i < per; ++i) s += in[b * per + i];
    EXPECT_EQ(out[b], s) << b;
  }
}

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/async_copy.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Async, ::testing::ValuesIn(variants()), [](const auto& info) {
  std::string s = info.param.substr(20);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
});

// A hand-written module: every operand form of cp.async, and the faults.
const char* kForms = R"(
.version 8.0
.target sm_80
.address_size 64
.visible .entry forms(.param .u64 src, .param .u64 dst, .param .u32 srcsize)
{
  .reg .pred %p<2>;
  .reg .b32 %r<4>;
  .reg .b64 %rd<4>;
  .shared .align 16 .b8 buf[64];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [dst];
  ld.param.u32 %r1, [srcsize];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r2, buf;
  setp.ne.s32 %p1, %r1, 99;
  cp.async.ca.shared.global [buf], [%rd1], 4;
  cp.async.ca.shared::cta.global.L2::128B [%r2+8], [%rd1+8], 8, %r1;
  cp.async.cg.shared.global [buf+16], [%rd1+16], 16, %p1;
  cp.async.cg.shared.global [buf+32], [%rd1+32], 16, 3;
  cp.async.ca.shared.global [buf+48], [%rd1+48], 16, %p1;
  cp.async.commit_group;
  cp.async.wait_group 0;
  cp.async.wait_all;
  bar.sync 0;
  ld.shared.v4.u32 {%r0, %r1, %r2, %r3}, [buf];
  st.global.v4.u32 [%rd2], {%r0, %r1, %r2, %r3};
  ld.shared.v4.u32 {%r0, %r1, %r2, %r3}, [buf+16];
  st.global.v4.u32 [%rd2+16], {%r0, %r1, %r2, %r3};
  ld.shared.v4.u32 {%r0, %r1, %r2, %r3}, [buf+32];
  st.global.v4.u32 [%rd2+32], {%r0, %r1, %r2, %r3};
  ld.shared.v4.u32 {%r0, %r1, %r2, %r3}, [buf+48];
  st.global.v4.u32 [%rd2+48], {%r0, %r1, %r2, %r3};
  ret;
}
)";

TEST(AsyncForms, EveryOperandFormAndZeroFill) {
  Harness h;
  const uint64_t m = h.load(kForms);
  ASSERT_NE(m, 0u);
  std::vector<uint8_t> src(64);
  for (int i = 0; i < 64; ++i) src[i] = uint8_t(i + 1);
  for (uint32_t srcsize : {8u, 5u, 0u, 99u}) {
    const uint64_t ds = h.upload(src), dd = h.upload(std::vector<uint8_t>(64, 0xee));
    auto r = h.run(m, "forms", {1, 1, 1}, {1, 1, 1}, Args().add(ds).add(dd).add(srcsize));
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto out = h.download<uint8_t>(dd, 64);
    std::vector<uint8_t> want(64, 0);
    for (int i = 0; i < 4; ++i) want[i] = src[i];  // 4 bytes
    for (uint32_t i = 0; i < std::min(srcsize, 8u); ++i) want[8 + i] = src[8 + i];
    // ignore-src %p1 = (src-size != 99): true -> zeros, false (99) -> 16 bytes
    if (srcsize == 99)
      for (int i = 16; i < 32; ++i) want[i] = src[i];
    for (int i = 32; i < 35; ++i) want[i] = src[i];  // src-size 3 of 16
    if (srcsize == 99)
      for (int i = 48; i < 64; ++i) want[i] = src[i];
    EXPECT_EQ(out, want) << "src-size " << srcsize;
  }
}

TEST(AsyncForms, OutOfBoundsSourceFaultsUnlessNothingIsRead) {
  const std::string one = R"(
.version 8.0
.target sm_80
.address_size 64
.visible .entry oob(.param .u64 src, .param .u32 n)
{
  .reg .b32 %r<2>;
  .reg .b64 %rd<2>;
  .shared .align 16 .b8 buf[16];
  ld.param.u64 %rd1, [src];
  ld.param.u32 %r1, [n];
  cp.async.cg.shared.global [buf], [%rd1+4096], 16, %r1;
  cp.async.wait_all;
  ret;
}
)";
  Harness h;
  const uint64_t m = h.load(one);
  ASSERT_NE(m, 0u);
  const uint64_t ds = h.upload(std::vector<uint8_t>(64));
  EXPECT_TRUE(h.run(m, "oob", {1, 1, 1}, {1, 1, 1}, Args().add(ds).add(0u)).ok());
  auto r = h.run(m, "oob", {1, 1, 1}, {1, 1, 1}, Args().add(ds).add(16u));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("illegal address"), std::string::npos) << r.error().message;
}

TEST(AsyncForms, UnmodelledFormsAreRefusedByName) {
  const std::string head =
      ".version 8.0\n.target sm_90\n.address_size 64\n"
      ".visible .entry k(.param .u64 p)\n{\n.reg .b64 %rd<3>;\n.reg .b32 %r<2>;\n"
      ".shared .align 16 .b8 buf[64];\n";
  for (const char* line :
       {"cp.async.cg.shared.global [buf], [%rd1], 8;",
        "cp.async.ca.shared.global [buf], [%rd1], 2;", "cp.async.mbarrier.arrive.b64 [buf];",
        "cp.async.bulk.shared::cluster.global [buf], [%rd1], 16, [buf];",
        "cp.async.ca.local.global [buf], [%rd1], 4;"}) {
    auto m = load_ptx(head + line + "\nret;\n}\n");
    ASSERT_FALSE(m.ok()) << line;
    EXPECT_NE(m.error().message.find("cp.async"), std::string::npos) << m.error().message;
  }
}

}  // namespace
}  // namespace gpulease::sim::testing
