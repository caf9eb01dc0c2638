// Hand-written PTX snippets pin down the interpreter's semantics: rounding
// modes, conversions, predicates and guards, integer edge cases, atomics,
// generic/shared/local addressing and vector accesses. Exact operations are
// compared bit for bit with the same IEEE operation on the host.
#include <bit>
#include <climits>
#include <cmath>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

// Runs `body` in kernel k(u64* out, u64* in) on `threads` threads of one
// block; %out and %in hold the two pointers (cvta'd to global). Returns the
// 16 u64 words of `out`.
std::vector<uint64_t> run(const std::string& body, std::vector<uint64_t> in = {},
                          uint32_t threads = 1, Status expect = Status::kOk,
                          std::string* message = nullptr) {
  const std::string text =
      ".version 9.0\n.target sm_75\n.address_size 64\n"
      ".visible .entry k(.param .u64 k_out, .param .u64 k_in)\n{\n"
      ".reg .b64 %out, %in;\n"
      "ld.param.u64 %out, [k_out];\nld.param.u64 %in, [k_in];\n"
      "cvta.to.global.u64 %out, %out;\ncvta.to.global.u64 %in, %in;\n" +
      body + "\nret;\n}\n";
  Harness h;
  const uint64_t m = h.load(text);
  in.resize(16, 0);
  const uint64_t dout = h.upload(std::vector<uint64_t>(16, 0)), din = h.upload(in);
  auto r = h.run(m, "k", {1, 1, 1}, {threads, 1, 1}, Args().add(dout).add(din));
  EXPECT_EQ(r.status(), expect) << (r.ok() ? "" : r.error().message);
  if (!r.ok() && message) *message = r.error().message;
  return h.download<uint64_t>(dout, 16);
}

uint64_t fbits(float f) {
  return std::bit_cast<uint32_t>(f);
}
uint64_t dbits(double d) {
  return std::bit_cast<uint64_t>(d);
}
float as_f(uint64_t v) {
  return std::bit_cast<float>(static_cast<uint32_t>(v));
}

TEST(PtxSemantics, CvtRoundsFloatToIntegerAsRequestedAndSaturates) {
  auto o = run(R"(
    .reg .f32 %f<10>; .reg .b32 %r<10>;
    ld.global.f32 %f1, [%in];   ld.global.f32 %f2, [%in+8];
    ld.global.f32 %f3, [%in+16]; ld.global.f32 %f4, [%in+24];
    cvt.rni.s32.f32 %r1, %f1; st.global.u32 [%out], %r1;
    cvt.rni.s32.f32 %r2, %f2; st.global.u32 [%out+8], %r2;
    cvt.rzi.s32.f32 %r3, %f3; st.global.u32 [%out+16], %r3;
    cvt.rmi.s32.f32 %r4, %f3; st.global.u32 [%out+24], %r4;
    cvt.rpi.s32.f32 %r5, %f3; st.global.u32 [%out+32], %r5;
    cvt.rzi.s32.f32 %r6, %f4; st.global.u32 [%out+40], %r6;
    cvt.rzi.u32.f32 %r7, %f3; st.global.u32 [%out+48], %r7;
    mov.f32 %f5, 0f7FC00000;
    cvt.rzi.s32.f32 %r8, %f5; st.global.u32 [%out+56], %r8;
    cvt.rni.f32.f32 %f6, %f1; st.global.f32 [%out+64], %f6;
  )",
               {fbits(2.5f), fbits(3.5f), fbits(-2.7f), fbits(1e10f)});
  EXPECT_EQ(int32_t(o[0]), 2);  // ties to even
  EXPECT_EQ(int32_t(o[1]), 4);
  EXPECT_EQ(int32_t(o[2]), -2);  // toward zero
  EXPECT_EQ(int32_t(o[3]), -3);  // toward -inf
  EXPECT_EQ(int32_t(o[4]), -2);  // toward +inf
  EXPECT_EQ(int32_t(o[5]), INT_MAX);
  EXPECT_EQ(uint32_t(o[6]), 0u);  // unsigned saturates at 0
  EXPECT_EQ(uint32_t(o[7]), 0u);  // NaN -> 0
  EXPECT_EQ(as_f(o[8]), 2.0f);
}

TEST(PtxSemantics, CvtIntegerToFloatRoundsToNearestOnce) {
  const int64_t big = (int64_t{1} << 53) + 1;
  auto o = run(R"(
    .reg .b64 %rd<3>; .reg .f32 %f<3>; .reg .f64 %fd<3>; .reg .b32 %r<2>; .reg .b16 %rs<2>;
    ld.global.u64 %rd1, [%in];
    cvt.rn.f32.s64 %f1, %rd1; st.global.f32 [%out], %f1;
    cvt.rn.f64.s64 %fd1, %rd1; st.global.f64 [%out+8], %fd1;
    cvt.rn.f32.f64 %f2, %fd1; st.global.f32 [%out+16], %f2;
    cvt.f64.f32 %fd2, %f2; st.global.f64 [%out+24], %fd2;
    ld.global.u32 %r1, [%in+8];
    cvt.u16.u32 %rs1, %r1; cvt.rn.f32.u16 %f2, %rs1; st.global.f32 [%out+32], %f2;
    cvt.s64.s32 %rd2, %r1; st.global.u64 [%out+40], %rd2;
    cvt.sat.s16.s32 %rs1, %r1; cvt.s32.s16 %r1, %rs1; st.global.u32 [%out+48], %r1;
  )",
               {uint64_t(big), 0xFFFF8001u});
  EXPECT_EQ(o[0], fbits(static_cast<float>(big)));
  EXPECT_EQ(o[1], dbits(static_cast<double>(big)));
  EXPECT_EQ(o[2], fbits(static_cast<float>(static_cast<double>(big))));
  EXPECT_EQ(o[3], dbits(double(static_cast<float>(static_cast<double>(big)))));
  EXPECT_EQ(as_f(o[4]), 32769.0f);
  EXPECT_EQ(int64_t(o[5]), -32767);
  EXPECT_EQ(int32_t(o[6]), -32767);
}

TEST(PtxSemantics, FmaRoundsOnceAndMulAddTwice) {
  const float a = std::bit_cast<float>(0x3F800001u), c = -std::bit_cast<float>(0x3F800002u);
  auto o = run(R"(
    .reg .f32 %f<8>;
    ld.global.f32 %f1, [%in]; ld.global.f32 %f2, [%in+8];
    fma.rn.f32 %f3, %f1, %f1, %f2; st.global.f32 [%out], %f3;
    mul.rn.f32 %f4, %f1, %f1; add.rn.f32 %f5, %f4, %f2; st.global.f32 [%out+8], %f5;
    mad.rn.f32 %f6, %f1, %f1, %f2; st.global.f32 [%out+16], %f6;
    div.rn.f32 %f7, %f1, 0f40400000; st.global.f32 [%out+24], %f7;
    sqrt.rn.f32 %f7, 0f40000000; st.global.f32 [%out+32], %f7;
    rcp.rn.f32 %f7, 0f40400000; st.global.f32 [%out+40], %f7;
    div.full.f32 %f7, %f1, 0f40400000; st.global.f32 [%out+48], %f7;
  )",
               {fbits(a), fbits(c)});
  EXPECT_EQ(o[0], fbits(std::fma(a, a, c)));
  EXPECT_EQ(o[1], fbits(a * a + c));
  EXPECT_NE(o[0], o[1]);  // the inputs are chosen so the two differ
  EXPECT_EQ(o[2], o[0]);
  EXPECT_EQ(o[3], fbits(a / 3.0f));
  EXPECT_EQ(o[4], fbits(std::sqrt(2.0f)));
  EXPECT_EQ(o[5], fbits(1.0f / 3.0f));
  EXPECT_LE(std::fabs(as_f(o[6]) - a / 3.0f), 2 * std::nextafter(a / 3.0f, 1.0f) - 2 * (a / 3.0f));
}

TEST(PtxSemantics, DoublePrecisionIsExact) {
  auto o = run(R"(
    .reg .f64 %fd<6>;
    ld.global.f64 %fd1, [%in]; ld.global.f64 %fd2, [%in+8];
    fma.rn.f64 %fd3, %fd1, %fd2, %fd1; st.global.f64 [%out], %fd3;
    div.rn.f64 %fd4, %fd1, %fd2; st.global.f64 [%out+8], %fd4;
    sqrt.rn.f64 %fd5, %fd2; st.global.f64 [%out+16], %fd5;
  )",
               {dbits(0.1), dbits(3.0)});
  EXPECT_EQ(o[0], dbits(std::fma(0.1, 3.0, 0.1)));
  EXPECT_EQ(o[1], dbits(0.1 / 3.0));
  EXPECT_EQ(o[2], dbits(std::sqrt(3.0)));
}

TEST(PtxSemantics, ApproximationsStayWithinTheirDocumentedError) {
  auto o = run(R"(
    .reg .f32 %f<8>;
    ex2.approx.f32 %f1, 0f3FC00000; st.global.f32 [%out], %f1;
    lg2.approx.f32 %f2, 0f41200000; st.global.f32 [%out+8], %f2;
    rsqrt.approx.f32 %f3, 0f40000000; st.global.f32 [%out+16], %f3;
    div.approx.f32 %f4, 0f3F800000, 0f40400000; st.global.f32 [%out+24], %f4;
    sin.approx.f32 %f5, 0f3F800000; st.global.f32 [%out+32], %f5;
  )");
  EXPECT_NEAR(as_f(o[0]), std::exp2(1.5f), 2e-6f * std::exp2(1.5f));
  EXPECT_NEAR(as_f(o[1]), std::log2(10.0f), 2e-6f);
  EXPECT_NEAR(as_f(o[2]), 1.0f / std::sqrt(2.0f), 2e-6f);
  EXPECT_NEAR(as_f(o[3]), 1.0f / 3.0f, 2e-7f);
  EXPECT_NEAR(as_f(o[4]), std::sin(1.0f), 1e-6f);
}

TEST(PtxSemantics, FtzAndSatModifiersFlushAndClamp) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  auto o = run(R"(
    .reg .f32 %f<6>;
    ld.global.f32 %f1, [%in];
    add.ftz.f32 %f2, %f1, 0f00000000; st.global.f32 [%out], %f2;
    add.f32 %f3, %f1, 0f00000000; st.global.f32 [%out+8], %f3;
    mul.sat.f32 %f4, 0f40000000, 0f40000000; st.global.f32 [%out+16], %f4;
    add.sat.f32 %f5, 0fBF800000, 0f00000000; st.global.f32 [%out+24], %f5;
  )",
               {fbits(tiny)});
  EXPECT_EQ(as_f(o[0]), 0.0f);
  EXPECT_EQ(as_f(o[1]), tiny);
  EXPECT_EQ(as_f(o[2]), 1.0f);
  EXPECT_EQ(as_f(o[3]), 0.0f);
}

TEST(PtxSemantics, MinMaxPreferNumbersOverNaNAndOrderSignedZeros) {
  auto o = run(R"(
    .reg .f32 %f<6>;
    min.f32 %f1, 0f7FC00000, 0f40000000; st.global.f32 [%out], %f1;
    max.f32 %f2, 0f40000000, 0f7FC00000; st.global.f32 [%out+8], %f2;
    min.f32 %f3, 0f00000000, 0f80000000; st.global.f32 [%out+16], %f3;
    max.f32 %f4, 0f80000000, 0f00000000; st.global.f32 [%out+24], %f4;
    add.f32 %f5, 0f7F800000, 0fFF800000; st.global.f32 [%out+32], %f5;
  )");
  EXPECT_EQ(as_f(o[0]), 2.0f);
  EXPECT_EQ(as_f(o[1]), 2.0f);
  EXPECT_EQ(o[2], 0x80000000u);
  EXPECT_EQ(o[3], 0u);
  EXPECT_EQ(o[4], 0x7fffffffu);  // canonical NaN
}

TEST(PtxSemantics, PredicatesGuardAndCombine) {
  auto o = run(R"(
    .reg .pred %p<8>; .reg .b32 %r<8>; .reg .f32 %f<2>;
    mov.u32 %r1, 5;
    setp.lt.s32 %p1, %r1, 10;
    setp.gt.s32 %p2, %r1, 10;
    mov.u32 %r2, 100;
    @%p1 mov.u32 %r2, 1;
    @!%p2 add.s32 %r2, %r2, 1;
    @%p2 mov.u32 %r2, 999;
    st.global.u32 [%out], %r2;
    setp.lt.and.s32 %p3, %r1, 10, %p2;
    setp.lt.or.s32 %p4, %r1, 10, %p2;
    setp.lt.and.s32 %p5, %r1, 10, !%p2;
    selp.b32 %r3, 1, 0, %p3; st.global.u32 [%out+8], %r3;
    selp.b32 %r4, 1, 0, %p4; st.global.u32 [%out+16], %r4;
    selp.b32 %r5, 1, 0, %p5; st.global.u32 [%out+24], %r5;
    mov.f32 %f1, 0f7FC00000;
    setp.ltu.f32 %p6, %f1, 0f00000000; selp.u32 %r6, 1, 0, %p6; st.global.u32 [%out+32], %r6;
    setp.lt.f32 %p6, %f1, 0f00000000; selp.u32 %r6, 1, 0, %p6; st.global.u32 [%out+40], %r6;
    setp.nan.f32 %p7, %f1, %f1; not.pred %p7, %p7; selp.u32 %r7, 1, 0, %p7; st.global.u32 [%out+48], %r7;
    mov.u32 %r1, -1;
    setp.lo.u32 %p1, %r1, 5; selp.u32 %r7, 1, 0, %p1; st.global.u32 [%out+56], %r7;
    setp.lt.s32 %p1, %r1, 5; selp.u32 %r7, 1, 0, %p1; st.global.u32 [%out+64], %r7;
  )");
  EXPECT_EQ(o[0], 2u);
  EXPECT_EQ(o[1], 0u);
  EXPECT_EQ(o[2], 1u);
  EXPECT_EQ(o[3], 1u);
  EXPECT_EQ(o[4], 1u);
  EXPECT_EQ(o[5], 0u);
  EXPECT_EQ(o[6], 0u);
  EXPECT_EQ(o[7], 0u);
  EXPECT_EQ(o[8], 1u);
}

TEST(PtxSemantics, IntegerEdgeCasesAreDefined) {
  auto o = run(R"(
    .reg .b32 %r<16>; .reg .b64 %rd<4>;
    mov.u32 %r1, -8;
    shl.b32 %r2, %r1, 33;   st.global.u32 [%out], %r2;
    shr.s32 %r3, %r1, 40;   st.global.u32 [%out+8], %r3;
    shr.u32 %r4, %r1, 1;    st.global.u32 [%out+16], %r4;
    div.s32 %r5, %r1, 0;    st.global.u32 [%out+24], %r5;
    rem.s32 %r6, %r1, 3;    st.global.u32 [%out+32], %r6;
    mul.hi.s32 %r7, %r1, 1073741824; st.global.u32 [%out+40], %r7;
    mul.wide.u32 %rd1, %r1, 4; st.global.u64 [%out+48], %rd1;
    mul.wide.s32 %rd2, %r1, 4; st.global.u64 [%out+56], %rd2;
    mov.u32 %r8, -2147483648;
    div.s32 %r9, %r8, -1;   st.global.u32 [%out+64], %r9;
    abs.s32 %r10, %r1;      st.global.u32 [%out+72], %r10;
    min.u32 %r11, %r1, 3;   st.global.u32 [%out+80], %r11;
    min.s32 %r12, %r1, 3;   st.global.u32 [%out+88], %r12;
    popc.b32 %r13, %r1;     st.global.u32 [%out+96], %r13;
    clz.b32 %r14, 255;      st.global.u32 [%out+104], %r14;
    brev.b32 %r15, 1;       st.global.u32 [%out+112], %r15;
    mad.lo.s32 %r15, %r1, %r1, 7; st.global.u32 [%out+120], %r15;
  )");
  EXPECT_EQ(o[0], 0u);
  EXPECT_EQ(o[1], 0xFFFFFFFFu);
  EXPECT_EQ(o[2], 0x7FFFFFFCu);
  EXPECT_EQ(o[3], 0xFFFFFFFFu);
  EXPECT_EQ(int32_t(o[4]), -2);
  EXPECT_EQ(int32_t(o[5]), -2);
  EXPECT_EQ(o[6], uint64_t(0xFFFFFFF8u) * 4);
  EXPECT_EQ(int64_t(o[7]), -32);
  EXPECT_EQ(o[8], 0x80000000u);
  EXPECT_EQ(o[9], 8u);
  EXPECT_EQ(o[10], 3u);
  EXPECT_EQ(int32_t(o[11]), -8);
  EXPECT_EQ(o[12], 29u);
  EXPECT_EQ(o[13], 24u);
  EXPECT_EQ(o[14], 0x80000000u);
  EXPECT_EQ(o[15], 71u);
}

TEST(PtxSemantics, SixtyFourBitDivRemAndPackUnpack) {
  auto o = run(R"(
    .reg .b64 %rd<8>; .reg .b32 %r<3>;
    ld.global.u64 %rd1, [%in]; ld.global.u64 %rd2, [%in+8];
    div.u64 %rd3, %rd1, %rd2; st.global.u64 [%out], %rd3;
    rem.s64 %rd4, %rd1, %rd2; st.global.u64 [%out+8], %rd4;
    mul.hi.u64 %rd5, %rd1, %rd1; st.global.u64 [%out+16], %rd5;
    mov.b64 {%r1, %r2}, %rd1; st.global.u32 [%out+24], %r2;
    mov.b64 %rd6, {%r2, %r1}; st.global.u64 [%out+32], %rd6;
  )",
               {0xF000000000000007ull, 10});
  EXPECT_EQ(o[0], 0xF000000000000007ull / 10);
  EXPECT_EQ(int64_t(o[1]), int64_t(0xF000000000000007ull) % 10);
  EXPECT_EQ(o[2], uint64_t((static_cast<unsigned __int128>(0xF000000000000007ull) *
                            0xF000000000000007ull) >>
                           64));
  EXPECT_EQ(o[3], 0xF0000000u);
  EXPECT_EQ(o[4], 0x00000007F0000000ull);
}

TEST(PtxSemantics, GlobalAtomicsReturnTheOldValue) {
  auto o = run(R"(
    .reg .b32 %r<12>; .reg .f32 %f<2>; .reg .b64 %rd<3>;
    mov.u32 %r1, 10; st.global.u32 [%out], %r1;
    atom.global.add.u32 %r2, [%out], 5;      st.global.u32 [%out+8], %r2;
    atom.global.inc.u32 %r3, [%out], 15;     st.global.u32 [%out+16], %r3;
    atom.global.dec.u32 %r4, [%out], 100;    st.global.u32 [%out+24], %r4;
    atom.global.cas.b32 %r5, [%out], 7, 1;   st.global.u32 [%out+32], %r5;
    atom.global.cas.b32 %r6, [%out], 14, 3;  st.global.u32 [%out+40], %r6;
    atom.global.or.b32 %r7, [%out], 8;       st.global.u32 [%out+48], %r7;
    atom.global.min.s32 %r8, [%out], -4;     st.global.u32 [%out+56], %r8;
    atom.global.max.u32 %r9, [%out], 2;      st.global.u32 [%out+64], %r9;
    red.global.add.f32 [%out+72], 0f3FC00000;
    atom.global.add.u64 %rd1, [%out+80], 7;
    atom.global.exch.b64 %rd2, [%out+80], 3; st.global.u64 [%out+88], %rd2;
  )");
  EXPECT_EQ(o[1], 10u);   // add returned the old value
  EXPECT_EQ(o[2], 15u);   // inc: 15 >= 15 -> wraps to 0
  EXPECT_EQ(o[3], 0u);    // dec: 0 -> 100
  EXPECT_EQ(o[4], 100u);  // cas mismatch: unchanged
  EXPECT_EQ(o[5], 100u);
  EXPECT_EQ(o[6], 100u);                   // (cas 14 also mismatched)
  EXPECT_EQ(o[7], 108u);                   // or 8 applied before
  EXPECT_EQ(uint32_t(o[8]), 0xFFFFFFFCu);  // min.s32 stored -4; max.u32 saw it
  EXPECT_EQ(uint32_t(o[0]), 0xFFFFFFFCu);  // max.u32(-4 as u32, 2) keeps it
  EXPECT_EQ(as_f(o[9]), 1.5f);
  EXPECT_EQ(o[11], 7u);
  EXPECT_EQ(o[10], 3u);
}

TEST(PtxSemantics, AtomicAddFromManyThreadsIsExact) {
  auto o = run(R"(
    .reg .b32 %r<2>;
    atom.global.add.u32 %r1, [%out], 1;
    red.global.add.u64 [%out+8], 3;
  )",
               {}, 1024);
  EXPECT_EQ(o[0], 1024u);
  EXPECT_EQ(o[1], 3072u);
}

TEST(PtxSemantics, SharedMemoryGenericAddressingAndSharedAtomics) {
  auto o = run(R"(
    .reg .b32 %r<8>; .reg .b64 %rd<6>; .reg .pred %p<2>;
    .shared .align 8 .b8 sh[64];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, sh;
    atom.shared.add.u32 %r3, [%r2], %r1;
    bar.sync 0;
    setp.ne.s32 %p1, %r1, 0;
    @%p1 bra DONE;
    ld.shared.u32 %r4, [sh]; st.global.u32 [%out], %r4;
    mov.u64 %rd1, sh;
    cvta.shared.u64 %rd2, %rd1;
    ld.u32 %r5, [%rd2]; st.global.u32 [%out+8], %r5;
    mov.u32 %r6, 77;
    st.u32 [%rd2+4], %r6;
    ld.shared.u32 %r7, [sh+4]; st.global.u32 [%out+16], %r7;
    cvta.to.shared.u64 %rd3, %rd2; st.global.u64 [%out+24], %rd3;
    DONE:
  )",
               {}, 64);
  EXPECT_EQ(o[0], 64u * 63 / 2);
  EXPECT_EQ(o[1], o[0]);
  EXPECT_EQ(o[2], 77u);
  EXPECT_EQ(o[3], 0u);
}

TEST(PtxSemantics, LocalMemoryIsPerThreadAndBoundsChecked) {
  auto o = run(R"(
    .local .align 8 .b8 __local_depot0[32];
    .reg .b64 %SP, %SPL; .reg .b32 %r<4>; .reg .b64 %rd<3>;
    mov.u64 %SPL, __local_depot0;
    cvta.local.u64 %SP, %SPL;
    mov.u32 %r1, %tid.x;
    st.local.u32 [%SPL+4], %r1;
    bar.sync 0;
    ld.u32 %r2, [%SP+4];
    mul.wide.u32 %rd1, %r1, 8;
    add.s64 %rd2, %out, %rd1;
    st.global.u32 [%rd2], %r2;
  )",
               {}, 4);
  EXPECT_EQ(o[0], 0u);
  EXPECT_EQ(o[1], 1u);
  EXPECT_EQ(o[3], 3u);
  std::string msg;
  run(R"(
    .local .align 8 .b8 __local_depot0[32];
    .reg .b32 %r<2>;
    ld.local.u32 %r1, [__local_depot0+32];
  )",
      {}, 1, Status::kSyncFailed, &msg);
  EXPECT_NE(msg.find("(local ld, 4 bytes)"), std::string::npos) << msg;
}

TEST(PtxSemantics, VectorLoadsAndStores) {
  auto o = run(R"(
    .reg .f32 %f<5>; .reg .b32 %r<3>;
    ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%in];
    st.global.v4.f32 [%out], {%f4, %f3, %f2, %f1};
    ld.global.v2.u32 {%r1, _}, [%in+16];
    st.global.v2.u32 [%out+16], {%r1, %r1};
  )",
               {0x0000000200000001ull, 0x0000000400000003ull, 0x0000000600000005ull});
  EXPECT_EQ(o[0], 0x0000000300000004ull);
  EXPECT_EQ(o[1], 0x0000000100000002ull);
  EXPECT_EQ(o[2], 0x0000000500000005ull);
}

TEST(PtxSemantics, NarrowLoadsExtendBySignedness) {
  auto o = run(R"(
    .reg .b32 %r<3>; .reg .b16 %rs<2>; .reg .b64 %rd<2>;
    ld.global.s8 %r1, [%in];  st.global.u32 [%out], %r1;
    ld.global.u8 %r2, [%in];  st.global.u32 [%out+8], %r2;
    ld.global.s16 %rd1, [%in]; st.global.u64 [%out+16], %rd1;
    st.global.u8 [%out+24], %r1;
  )",
               {0x80F0});
  EXPECT_EQ(o[0], 0xFFFFFFF0u);
  EXPECT_EQ(o[1], 0xF0u);
  EXPECT_EQ(o[2], 0xFFFFFFFFFFFF80F0ull);
  EXPECT_EQ(o[3], 0xF0u);
}

TEST(PtxSemantics, SharedOutOfBoundsFaults) {
  std::string msg;
  run(R"(
    .reg .b32 %r<3>;
    .shared .align 4 .b8 sh[16];
    mov.u32 %r1, sh;
    ld.shared.u32 %r2, [%r1+16];
  )",
      {}, 1, Status::kSyncFailed, &msg);
  EXPECT_NE(msg.find("illegal address 0x10 (shared ld, 4 bytes) in kernel k at line"),
            std::string::npos)
      << msg;
}

TEST(PtxSemantics, BarrierWaitsForEveryThreadOfTheBlock) {
  // Each thread writes its id to shared memory, then reads its neighbour's
  // after the barrier: only correct if every write precedes every read.
  auto o = run(R"(
    .reg .b32 %r<8>; .reg .b64 %rd<3>;
    .shared .align 4 .b8 sh[64];
    mov.u32 %r1, %tid.x;
    shl.b32 %r2, %r1, 2;
    mov.u32 %r3, sh;
    add.s32 %r4, %r3, %r2;
    add.s32 %r7, %r1, 100;
    st.shared.u32 [%r4], %r7;
    bar.sync 0;
    add.s32 %r5, %r1, 1;
    and.b32 %r5, %r5, 15;
    shl.b32 %r5, %r5, 2;
    add.s32 %r5, %r3, %r5;
    ld.shared.u32 %r6, [%r5];
    mul.wide.u32 %rd1, %r1, 4;
    add.s64 %rd2, %out, %rd1;
    st.global.u32 [%rd2], %r6;
  )",
               {}, 16);
  for (uint32_t t = 0; t < 16; ++t) {
    const uint32_t word = uint32_t(o[t / 2] >> (32 * (t % 2)));
    EXPECT_EQ(word, 100 + (t + 1) % 16) << t;
  }
}

}  // namespace
}  // namespace gpulease::sim::testing
