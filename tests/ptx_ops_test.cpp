// Hand-written PTX pins down the instructions added for issue 12: directed
// rounding, carry chains, bit-field and byte ops, dot products, copysign,
// two-destination setp, device functions, module-scope variables, and the
// warp scheduler's deadlock report.
#include <bit>
#include <cfenv>
#include <climits>
#include <cmath>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

const char* const kHead = ".version 8.0\n.target sm_80\n.address_size 64\n";

// Runs `body` in kernel k(u64* out, u64* in) on `threads` threads of one
// block (%out, %in hold the pointers, %lane the lane id); returns out[0..63].
std::vector<uint64_t> run(const std::string& body, std::vector<uint64_t> in = {},
                          uint32_t threads = 1, const std::string& prelude = "",
                          Status expect = Status::kOk, std::string* message = nullptr) {
  const std::string text = std::string(kHead) + prelude +
                           ".visible .entry k(.param .u64 k_out, .param .u64 k_in)\n{\n"
                           ".reg .b64 %out, %in; .reg .b32 %lane;\n"
                           "ld.param.u64 %out, [k_out];\nld.param.u64 %in, [k_in];\n"
                           "cvta.to.global.u64 %out, %out;\ncvta.to.global.u64 %in, %in;\n"
                           "mov.u32 %lane, %laneid;\n" +
                           body + "\nret;\n}\n";
  Harness h;
  const uint64_t m = h.load(text);
  in.resize(64, 0);
  const uint64_t dout = h.upload(std::vector<uint64_t>(64, 0)), din = h.upload(in);
  auto r = h.run(m, "k", {1, 1, 1}, {threads, 1, 1}, Args().add(dout).add(din));
  EXPECT_EQ(r.status(), expect) << (r.ok() ? "" : r.error().message);
  if (!r.ok() && message) *message = r.error().message;
  return h.download<uint64_t>(dout, 64);
}

uint64_t fb(float f) {
  return std::bit_cast<uint32_t>(f);
}
uint64_t db(double d) {
  return std::bit_cast<uint64_t>(d);
}
float asf(uint64_t v) {
  return std::bit_cast<float>(static_cast<uint32_t>(v));
}
double asd(uint64_t v) {
  return std::bit_cast<double>(v);
}

TEST(PtxOps, DirectedRoundingIsExactForEveryOperation) {
  const float one = 1.0f, tiny = std::ldexp(1.0f, -30);
  auto o = run(R"(
    .reg .f32 %f<20>; .reg .f64 %d<10>; .reg .b32 %r<4>;
    ld.global.f32 %f1, [%in]; ld.global.f32 %f2, [%in+8]; ld.global.f32 %f3, [%in+16];
    ld.global.f64 %d1, [%in+24];
    add.rz.f32 %f4, %f1, %f2;  st.global.f32 [%out], %f4;
    add.rp.f32 %f5, %f1, %f2;  st.global.f32 [%out+8], %f5;
    add.rm.f32 %f6, %f3, %f2;  st.global.f32 [%out+16], %f6;   // -1 + tiny toward -inf
    div.rm.f32 %f7, %f1, 0f40400000; st.global.f32 [%out+24], %f7;  // 1/3 down
    div.rp.f32 %f8, %f1, 0f40400000; st.global.f32 [%out+32], %f8;  // 1/3 up
    sqrt.rz.f32 %f9, 0f40000000; st.global.f32 [%out+40], %f9;
    sqrt.rp.f32 %f10, 0f40000000; st.global.f32 [%out+48], %f10;
    fma.rm.f32 %f11, %f2, %f2, %f1; st.global.f32 [%out+56], %f11;  // 1 + 2^-60 down
    fma.rp.f32 %f12, %f2, %f2, %f1; st.global.f32 [%out+64], %f12;
    cvt.rz.f32.f64 %f13, %d1; st.global.f32 [%out+72], %f13;
    cvt.rp.f32.f64 %f14, %d1; st.global.f32 [%out+80], %f14;
    cvt.rm.f32.s32 %f15, 16777217; st.global.f32 [%out+88], %f15;
    cvt.rp.f32.s32 %f16, 16777217; st.global.f32 [%out+96], %f16;
    mul.rm.f64 %d2, %d1, 0d3FB999999999999A; st.global.f64 [%out+104], %d2;
    mul.rp.f64 %d3, %d1, 0d3FB999999999999A; st.global.f64 [%out+112], %d3;
    add.rn.f32 %f17, %f1, %f2; st.global.f32 [%out+120], %f17;
  )",
               {fb(one), fb(tiny), fb(-1.0f), db(1.0 / 3.0)});
  EXPECT_EQ(asf(o[0]), 1.0f);
  EXPECT_EQ(asf(o[1]), std::nextafter(1.0f, 2.0f));
  EXPECT_EQ(asf(o[2]), -1.0f);  // -1 + 2^-30 toward -infinity
  EXPECT_EQ(asf(o[4]), std::nextafter(asf(o[3]), 1.0f)) << "rp is one ulp above rm for 1/3";
  EXPECT_LT(double(asf(o[3])), 1.0 / 3.0);
  EXPECT_GT(double(asf(o[4])), 1.0 / 3.0);
  EXPECT_LT(double(asf(o[5])), std::sqrt(2.0));
  EXPECT_EQ(asf(o[6]), std::nextafter(asf(o[5]), 2.0f));
  EXPECT_EQ(asf(o[7]), 1.0f);
  EXPECT_EQ(asf(o[8]), std::nextafter(1.0f, 2.0f));
  EXPECT_LT(double(asf(o[9])), 1.0 / 3.0);
  EXPECT_EQ(asf(o[10]), std::nextafter(asf(o[9]), 1.0f));
  EXPECT_EQ(asf(o[11]), 16777216.0f);
  EXPECT_EQ(asf(o[12]), 16777218.0f);
  EXPECT_EQ(asd(o[14]), std::nextafter(asd(o[13]), 1.0));
  EXPECT_EQ(asf(o[15]), 1.0f) << "the mode is restored after a directed instruction";
}

TEST(PtxOps, DirectedAddTowardMinusInfinityOfANegativeSum) {
  // -1 + 2^-30: the exact sum is just above -1, so .rm gives -1 and .rp the
  // next float toward zero.
  auto o = run(R"(
    .reg .f32 %f<5>;
    add.rm.f32 %f1, 0fBF800000, 0f30800000; st.global.f32 [%out], %f1;
    add.rp.f32 %f2, 0fBF800000, 0f30800000; st.global.f32 [%out+8], %f2;
    add.rz.f32 %f3, 0fBF800000, 0f30800000; st.global.f32 [%out+16], %f3;
  )");
  EXPECT_EQ(asf(o[0]), -1.0f);
  EXPECT_EQ(asf(o[1]), std::nextafter(-1.0f, 0.0f));
  EXPECT_EQ(asf(o[2]), std::nextafter(-1.0f, 0.0f));
}

TEST(PtxOps, CarryChainsAdd128BitValues) {
  const uint64_t a_lo = 0xffffffffffffffffull, a_hi = 1, b_lo = 2, b_hi = 3;
  auto o = run(R"(
    .reg .b64 %a<3>, %b<3>, %s<3>; .reg .b32 %r<12>;
    ld.global.u64 %a1, [%in]; ld.global.u64 %a2, [%in+8];
    ld.global.u64 %b1, [%in+16]; ld.global.u64 %b2, [%in+24];
    add.cc.u64 %s1, %a1, %b1;
    addc.u64 %s2, %a2, %b2;
    st.global.u64 [%out], %s1; st.global.u64 [%out+8], %s2;
    sub.cc.u64 %s1, %b1, %a1;
    subc.u64 %s2, %b2, %a2;
    st.global.u64 [%out+16], %s1; st.global.u64 [%out+24], %s2;
    // 32-bit: 0xffffffff * 0xffffffff + 0xffffffff as lo/hi with mad.cc / madc
    mad.lo.cc.u32 %r1, -1, -1, -1;
    madc.hi.u32 %r2, -1, -1, 0;
    st.global.u32 [%out+32], %r1; st.global.u32 [%out+40], %r2;
    add.cc.u32 %r3, -1, 1;
    addc.cc.u32 %r4, 0, 0;
    addc.u32 %r5, 0, 0;
    st.global.u32 [%out+48], %r3; st.global.u32 [%out+56], %r4; st.global.u32 [%out+64], %r5;
  )",
               {a_lo, a_hi, b_lo, b_hi});
  EXPECT_EQ(o[0], 1u);  // low word wraps
  EXPECT_EQ(o[1], 5u);  // 1 + 3 + carry
  EXPECT_EQ(o[2], 3u);  // 2 - (2^64 - 1) mod 2^64
  EXPECT_EQ(o[3], 1u);  // 3 - 1 - borrow
  const unsigned __int128 p =
      static_cast<unsigned __int128>(0xffffffffu) * 0xffffffffu + 0xffffffffu;
  EXPECT_EQ(o[4], static_cast<uint32_t>(p));
  EXPECT_EQ(o[5], static_cast<uint32_t>(p >> 32));
  EXPECT_EQ(o[6], 0u);
  EXPECT_EQ(o[7], 1u);
  EXPECT_EQ(o[8], 0u);
}

TEST(PtxOps, BitFieldByteAndDotProductOps) {
  auto o = run(R"(
    .reg .b32 %r<20>; .reg .b64 %rd<4>;
    bfe.u32 %r1, 0xabcd1234, 8, 12;        st.global.u32 [%out], %r1;
    bfe.s32 %r2, 0x00000f00, 8, 4;         st.global.u32 [%out+8], %r2;
    bfi.b32 %r3, 0x5, 0xffff0000, 4, 4;    st.global.u32 [%out+16], %r3;
    shf.l.wrap.b32 %r4, 0x80000001, 0x00000003, 4; st.global.u32 [%out+24], %r4;
    shf.r.clamp.b32 %r5, 0x80000001, 0x00000003, 40; st.global.u32 [%out+32], %r5;
    prmt.b32 %r6, 0x33221100, 0x77665544, 0x0123; st.global.u32 [%out+40], %r6;
    prmt.b32 %r7, 0x000080ff, 0, 0x8880; st.global.u32 [%out+48], %r7;
    bfind.u32 %r8, 0x00010000;             st.global.u32 [%out+56], %r8;
    bfind.s32 %r9, -1;                     st.global.u32 [%out+64], %r9;
    bfind.shiftamt.u32 %r10, 0x00010000;   st.global.u32 [%out+72], %r10;
    sad.s32 %r11, -5, 7, 100;              st.global.u32 [%out+80], %r11;
    dp4a.s32.s32 %r12, 0x01ff0203, 0x0402ff05, 10; st.global.u32 [%out+88], %r12;
    dp4a.u32.u32 %r13, 0x01ff0203, 0x0402ff05, 10; st.global.u32 [%out+96], %r13;
    dp2a.lo.s32.s32 %r14, 0x0002ffff, 0x05040302, 0; st.global.u32 [%out+104], %r14;
    copysign.f32 %r15, 0fBF800000, 0f40400000; st.global.u32 [%out+112], %r15;
    bfi.b64 %rd1, 0xff, 0, 60, 8;          st.global.u64 [%out+120], %rd1;
  )");
  EXPECT_EQ(o[0], 0xd12u);
  EXPECT_EQ(uint32_t(o[1]), 0xffffffffu);  // sign of the 4-bit field 0xf
  EXPECT_EQ(o[2], 0xffff0050u);
  EXPECT_EQ(o[3], 0x00000038u);  // (b:a) << 4, high word
  EXPECT_EQ(o[4], 0x00000003u);  // clamp 40 -> 32: the high word
  EXPECT_EQ(o[5], 0x00112233u);
  EXPECT_EQ(o[6], 0xffffffffu);  // byte 0, then three copies of its sign
  EXPECT_EQ(o[7], 16u);
  EXPECT_EQ(uint32_t(o[8]), 0xffffffffu);
  EXPECT_EQ(o[9], 15u);
  EXPECT_EQ(o[10], 112u);
  EXPECT_EQ(int32_t(o[11]), 10 + 1 * 4 + (-1) * 2 + 2 * (-1) + 3 * 5);
  EXPECT_EQ(o[12], 10u + 1 * 4 + 255 * 2 + 2 * 255 + 3 * 5);
  EXPECT_EQ(int32_t(o[13]), (-1) * 2 + 2 * 3);
  EXPECT_EQ(asf(o[14]), -3.0f);
  EXPECT_EQ(o[15], 0xf000000000000000ull);  // only the 4 bits that fit
}

TEST(PtxOps, Lop3AndHalfIntegerConversions) {
  auto o = run(R"(
    .reg .b32 %r<12>; .reg .b16 %h<6>; .reg .b64 %rd<2>;
    lop3.b32 %r1, 0xf0f0f0f0, 0xcccccccc, 0xaaaaaaaa, 0x96;   // a ^ b ^ c
    lop3.b32 %r2, 0xf0f0f0f0, 0xcccccccc, 0xaaaaaaaa, 0xe8;   // majority
    st.global.u32 [%out], %r1; st.global.u32 [%out+8], %r2;
    cvt.rn.f16.s32 %h1, -2049;      // between -2050 and -2048: ties to even -> -2048
    cvt.rz.f16.u32 %h2, 65535;      // above the largest half: toward zero -> 65504
    cvt.rn.f16.u32 %h3, 70000;      // past 65504 + 16: infinity
    cvt.rni.s32.f16 %r3, 0x3e00;    // 1.5 -> 2
    cvt.rzi.s32.f16 %r4, 0xbe00;    // -1.5 -> -1
    cvt.rni.u8.f16 %r5, 0x5bd0;     // 250 -> 250
    cvt.rni.s32.f16 %r6, 0x7e00;    // NaN -> 0
    cvt.rn.bf16.s64 %h4, 0x7fffffffffffffff;  // 2^63 (rounded)
    cvt.u32.u16 %r7, %h1; cvt.u32.u16 %r8, %h2; cvt.u32.u16 %r9, %h3; cvt.u32.u16 %r10, %h4;
    st.global.u32 [%out+16], %r7; st.global.u32 [%out+24], %r8; st.global.u32 [%out+32], %r9;
    st.global.u32 [%out+40], %r3; st.global.u32 [%out+48], %r4; st.global.u32 [%out+56], %r5;
    st.global.u32 [%out+64], %r6; st.global.u32 [%out+72], %r10;
  )");
  EXPECT_EQ(o[0], 0xf0f0f0f0u ^ 0xccccccccu ^ 0xaaaaaaaau);
  EXPECT_EQ(o[1], (0xf0f0f0f0u & 0xccccccccu) | (0xf0f0f0f0u & 0xaaaaaaaau) |
                      (0xccccccccu & 0xaaaaaaaau));
  EXPECT_EQ(o[2], 0xe800u);  // -2048
  EXPECT_EQ(o[3], 0x7bffu);  // 65504
  EXPECT_EQ(o[4], 0x7c00u);  // +inf
  EXPECT_EQ(o[5], 2u);
  EXPECT_EQ(uint32_t(o[6]), uint32_t(-1));
  EXPECT_EQ(o[7], 250u);
  EXPECT_EQ(o[8], 0u);
  EXPECT_EQ(o[9], 0x5f00u);  // bf16 2^63
}

TEST(PtxOps, SetpWithTwoDestinationsGivesTheComplementIncludingNaN) {
  auto o = run(R"(
    .reg .pred %p<4>; .reg .b32 %r<4>; .reg .f32 %f<2>;
    setp.lt.f32 %p1|%p2, 0f7FC00000, 0f3F800000;
    selp.u32 %r1, 1, 0, %p1; selp.u32 %r2, 1, 0, %p2;
    st.global.u32 [%out], %r1; st.global.u32 [%out+8], %r2;
    setp.ge.s32 %p1|%p2, 3, 5;
    selp.u32 %r1, 1, 0, %p1; selp.u32 %r2, 1, 0, %p2;
    st.global.u32 [%out+16], %r1; st.global.u32 [%out+24], %r2;
  )");
  EXPECT_EQ(o[0], 0u);
  EXPECT_EQ(o[1], 1u);  // NaN: not less, and the complement is true
  EXPECT_EQ(o[2], 0u);
  EXPECT_EQ(o[3], 1u);
}

TEST(PtxOps, DeviceFunctionsCalledFromDivergentLanesReturnToTheirCallers) {
  const std::string prelude = R"(
.func (.param .b32 ret) twice(.param .b32 x)
{
  .reg .b32 %r<3>;
  ld.param.b32 %r1, [x];
  call.uni (ret), inc, (x);
  ld.param.b32 %r2, [ret];
  add.s32 %r2, %r2, %r1;
  st.param.b32 [ret], %r2;
  ret;
}
.func (.param .b32 ret) inc(.param .b32 x)
{
  .reg .b32 %r<2>;
  ld.param.b32 %r1, [x];
  add.s32 %r1, %r1, 1;
  st.param.b32 [ret], %r1;
  ret;
}
)";
  auto o = run(R"(
    .reg .b32 %v, %w; .reg .pred %p; .reg .b64 %a;
    and.b32 %v, %lane, 1;
    setp.eq.u32 %p, %v, 1;
    @%p bra ODD;
    {
      .param .b32 a0; .param .b32 r0;
      st.param.b32 [a0], %lane;
      call.uni (r0), twice, (a0);
      ld.param.b32 %w, [r0];
    }
    bra.uni DONE;
  ODD:
    {
      .param .b32 a0; .param .b32 r0;
      st.param.b32 [a0], %lane;
      call.uni (r0), inc, (a0);
      ld.param.b32 %w, [r0];
    }
  DONE:
    mul.wide.u32 %a, %lane, 8;
    add.s64 %a, %out, %a;
    st.global.u32 [%a], %w;
  )",
               {}, 32, prelude);
  for (uint32_t l = 0; l < 32; ++l) EXPECT_EQ(o[l], (l & 1) ? l + 1 : 2 * l + 1) << l;
}

TEST(PtxOps, ModuleGlobalsKeepTheirValuesAcrossLaunchesAndConstIsReadOnly) {
  const std::string text = std::string(kHead) + R"(
.global .align 4 .u32 counter = 40;
.const .align 8 .f64 coeffs[3] = {0d3FF0000000000000, 0d4000000000000000, 0d4008000000000000};
.global .align 4 .b8 table[6] = {1, 2, 3};
.visible .entry bump(.param .u64 out)
{
  .reg .b64 %o, %g; .reg .b32 %r<4>; .reg .f64 %d<3>;
  ld.param.u64 %o, [out];
  cvta.to.global.u64 %o, %o;
  atom.global.add.u32 %r1, [counter], 1;
  ld.const.f64 %d1, [coeffs+16];
  mov.u64 %g, table;
  ld.global.u8 %r2, [%g+2];
  ld.global.u8 %r3, [%g+5];
  st.global.u32 [%o], %r1;
  st.global.f64 [%o+8], %d1;
  st.global.u32 [%o+16], %r2;
  st.global.u32 [%o+20], %r3;
  ret;
}
)";
  Harness h;
  const uint64_t m = h.load(text);
  const uint64_t out = h.upload(std::vector<uint64_t>(3, 0));
  ASSERT_TRUE(h.run(m, "bump", {1, 1, 1}, {1, 1, 1}, Args().add(out)).ok());
  ASSERT_TRUE(h.run(m, "bump", {1, 1, 1}, {1, 1, 1}, Args().add(out)).ok());
  auto o = h.download<uint32_t>(out, 6);
  EXPECT_EQ(o[0], 41u) << "the second launch sees the first one's increment";
  EXPECT_EQ(asd(uint64_t(o[2]) | uint64_t(o[3]) << 32), 3.0);
  EXPECT_EQ(o[4], 3u);
  EXPECT_EQ(o[5], 0u);
  // Exposed by name for a future "module globals" op.
  auto mod = load_ptx(text);
  ASSERT_TRUE(mod.ok());
  const GlobalVar* g = (*mod)->find_global("coeffs");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->size, 24u);
  EXPECT_TRUE(g->is_const);
  EXPECT_NE((*mod)->variable_bytes(g->address, 24, false), nullptr);
  EXPECT_EQ((*mod)->variable_bytes(g->address, 24, true), nullptr) << ".const is read-only";
  // A store to .const does not load; a generic store to its address faults.
  auto st = load_ptx(std::string(kHead) +
                     ".const .u32 c;\n.visible .entry k()\n{\nst.const.u32 [c], 1;\nret;\n}\n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("read-only"), std::string::npos) << st.error().message;
}

TEST(PtxOps, WarpSyncWaitingForLanesAtABarrierIsAReportedDeadlock) {
  std::string msg;
  run(R"(
    .reg .pred %p; .reg .b32 %v;
    setp.lt.u32 %p, %lane, 16;
    @!%p bra OTHER;
    shfl.sync.bfly.b32 %v, %lane, 1, 31, -1;
    bra.uni END;
  OTHER:
    bar.sync 0;
  END:
  )",
      {}, 32, "", Status::kSyncFailed, &msg);
  EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
}

TEST(PtxOps, MisleadingErrorsAreGone) {
  auto shfl = load_ptx(std::string(kHead) +
                       ".visible .entry k()\n{\n.reg .b32 %r<3>;\n"
                       "shfl.down.b32 %r1, %r2, 1, 31;\nret;\n}\n");
  ASSERT_FALSE(shfl.ok());
  EXPECT_NE(shfl.error().message.find("shfl.sync"), std::string::npos) << shfl.error().message;
  EXPECT_EQ(shfl.error().message.find("two-destination"), std::string::npos);
  auto ws = load_ptx(std::string(kHead) + ".visible .entry k()\n{\nbar.warp.sync -1;\nret;\n}\n");
  EXPECT_TRUE(ws.ok()) << ws.error().message;
}

// fns.b32 (__fns): the offset-th set bit of mask counted from base, up for
// offset > 0, down for offset < 0; offset 0 tests bit base; ~0u if none.
uint32_t fns_ref(uint32_t mask, uint32_t base, int32_t offset) {
  if (offset == 0) return base < 32 && (mask >> base & 1) ? base : 0xffffffffu;
  int64_t count = std::abs(int64_t{offset}) - 1;
  for (int64_t pos = base; pos >= 0 && pos<32; pos += offset> 0 ? 1 : -1) {
    if ((mask >> pos & 1) == 0) continue;
    if (count-- == 0) return static_cast<uint32_t>(pos);
  }
  return 0xffffffffu;
}

TEST(PtxOps, FnsFindsTheNthSetBitInBothDirections) {
  const uint32_t masks[] = {0xc5bb1e33u, 0x80000001u, 0, 0xffffffffu};
  const uint32_t bases[] = {0, 1, 7, 31, 32, 40};
  const int32_t offsets[] = {0, 1, 2, 5, -1, -3, 33, -40};
  for (uint32_t mask : masks) {
    std::vector<uint64_t> in;
    std::vector<uint32_t> want;
    for (uint32_t b : bases)
      for (int32_t o : offsets) {
        in.push_back(static_cast<uint64_t>(b) | static_cast<uint64_t>(static_cast<uint32_t>(o))
                                                    << 32);
        want.push_back(fns_ref(mask, b, o));
      }
    ASSERT_LE(in.size(), 64u);
    // One lane per (base, offset); plus the immediate form nvcc emits for __fns(x, 0, 1).
    auto o = run(R"(
      .reg .b32 %r<8>; .reg .b64 %a<4>;
      mul.wide.u32 %a1, %lane, 8;
      add.s64 %a2, %in, %a1;
      ld.global.u32 %r1, [%a2]; ld.global.u32 %r2, [%a2+4];
      mov.u32 %r3, )" +
                     std::to_string(mask) + R"(;
      fns.b32 %r4, %r3, %r1, %r2;
      add.s64 %a3, %out, %a1;
      st.global.u32 [%a3], %r4;
      fns.b32 %r5, %r3, 0, 1;
      st.global.u32 [%a3+4], %r5;
    )",
                 in, 32);
    for (size_t i = 0; i < 32 && i < want.size(); ++i) {
      EXPECT_EQ(static_cast<uint32_t>(o[i]), want[i]) << "mask " << mask << " case " << i;
      EXPECT_EQ(static_cast<uint32_t>(o[i] >> 32), fns_ref(mask, 0, 1));
    }
  }
}

TEST(PtxOps, BarRedReducesEachBarriersPredicatesAcrossTheBlock) {
  // Three back-to-back bar.red rounds with different predicates: each thread
  // must see its own round's popc / and / or, not a neighbour round's.
  std::vector<uint64_t> in(64);
  for (size_t i = 0; i < 64; ++i) in[i] = (i * 37 + 11) % 64;
  auto o = run(R"(
    .reg .b32 %r<12>; .reg .pred %p<9>; .reg .b64 %a<4>;
    mul.wide.u32 %a1, %lane, 8;
    add.s64 %a2, %in, %a1;
    ld.global.u32 %r1, [%a2];
    setp.lt.u32 %p1, %r1, 40;
    bar.red.popc.u32 %r2, 0, %p1;
    setp.lt.u32 %p2, %r1, 64;
    bar.red.and.pred %p3, 0, %p2;
    setp.lt.u32 %p4, %r1, 1;
    bar.red.or.pred %p5, 0, %p4;
    setp.lt.u32 %p6, %r1, 0;
    bar.red.or.pred %p7, 0, %p6;
    bar.red.popc.u32 %r3, 0, %p4;
    selp.u32 %r4, 1, 0, %p3;
    selp.u32 %r5, 2, 0, %p5;
    selp.u32 %r6, 4, 0, %p7;
    add.u32 %r7, %r4, %r5; add.u32 %r7, %r7, %r6;
    add.s64 %a3, %out, %a1;
    st.global.u32 [%a3], %r2; st.global.u32 [%a3+4], %r7;
    st.global.u32 [%a3+256], %r3;
  )",
               in, 32);
  uint32_t below40 = 0, zero = 0;
  for (size_t i = 0; i < 32; ++i) {
    below40 += in[i] < 40;
    zero += in[i] == 0;
  }
  for (size_t i = 0; i < 32; ++i) {
    EXPECT_EQ(static_cast<uint32_t>(o[i]), below40) << i;
    EXPECT_EQ(o[i] >> 32, 1u + (zero ? 2u : 0u))
        << i;  // and: all < 64; or: some == 0; or: none < 0
    EXPECT_EQ(static_cast<uint32_t>(o[32 + i]), zero) << i;
  }
}

TEST(PtxOps, ClockRegistersAreMonotonicAndReadOnlyByMov) {
  auto o = run(R"(
    .reg .b64 %t<4>; .reg .b32 %c<4>;
    mov.u64 %t1, %clock64;
    mov.u32 %c1, %clock;
    mov.u32 %c2, %clock_hi;
    mov.u64 %t3, %globaltimer;
    mov.u64 %t2, %clock64;
    st.global.u64 [%out], %t1; st.global.u64 [%out+8], %t2; st.global.u64 [%out+16], %t3;
  )");
  EXPECT_LE(o[0], o[1]);
  EXPECT_NE(o[2], 0u);
  auto bad = load_ptx(std::string(kHead) +
                      ".visible .entry k()\n{\n.reg .b64 %t;\nadd.u64 %t, %clock64, 1;\nret;\n}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("clock"), std::string::npos) << bad.error().message;
}

TEST(PtxOps, HeaderAsmFormsOfNvccsFp16AndBf16Headers) {
  // ".reg.b32 f;" as one token, ".reg .f16 low, high;", cvt.rn.f16x2.f32 (a to
  // the upper half), mov.pred with -1 (true).
  auto o = run(R"(
    .reg .f32 %f<4>; .reg .b32 %r<6>; .reg .pred %p<3>;
    mov.f32 %f1, 0f3FC00000;
    mov.f32 %f2, 0fC0400000;
    { .reg.b32 f; .reg .f16 low, high;
      cvt.rn.f16.f32 low, %f1; cvt.rn.f16.f32 high, %f2; mov.b32 %r1, {low, high}; }
    cvt.rn.f16x2.f32 %r2, %f2, %f1;
    cvt.rz.bf16x2.f32 %r3, %f1, %f2;
    mov.pred %p1, -1;
    selp.u32 %r4, 7, 9, %p1;
    st.global.u32 [%out], %r1; st.global.u32 [%out+8], %r2; st.global.u32 [%out+16], %r3;
    st.global.u32 [%out+24], %r4;
  )");
  EXPECT_EQ(o[0], 0xc2003e00u);  // {1.5 low, -3 high} as f16
  EXPECT_EQ(o[1], 0xc2003e00u);  // cvt.rn.f16x2.f32 d, -3, 1.5
  EXPECT_EQ(o[2], 0x3fc0c040u);  // bf16: 1.5 upper, -3 lower
  EXPECT_EQ(o[3], 7u);
}

TEST(PtxOps, LaneMasksAndPrefetch) {
  auto o = run(R"(
    .reg .b32 %r<8>; .reg .b64 %a<4>;
    mov.u32 %r1, %lanemask_eq; mov.u32 %r2, %lanemask_le; mov.u32 %r3, %lanemask_lt;
    mov.u32 %r4, %lanemask_ge; mov.u32 %r5, %lanemask_gt;
    prefetch.global.L2 [%in];
    prefetchu.L1 [%in+8];
    mul.wide.u32 %a1, %lane, 8;
    add.s64 %a2, %out, %a1;
    st.global.u32 [%a2], %r1; st.global.u32 [%a2+4], %r2;
    st.global.u32 [%a2+256], %r3; st.global.u32 [%a2+260], %r4;
  )",
               {}, 32);
  for (uint32_t l = 0; l < 32; ++l) {
    const uint32_t eq = 1u << l, lt = eq - 1;
    EXPECT_EQ(static_cast<uint32_t>(o[l]), eq) << l;
    EXPECT_EQ(o[l] >> 32, lt | eq) << l;
    EXPECT_EQ(static_cast<uint32_t>(o[32 + l]), lt) << l;
    EXPECT_EQ(o[32 + l] >> 32, ~lt) << l;
  }
  auto gt = run("  .reg .b32 %r; mov.u32 %r, %lanemask_gt; st.global.u32 [%out], %r;", {}, 1);
  EXPECT_EQ(gt[0], 0xfffffffeu);
}

TEST(PtxOps, AFailedAssertFaultsTheLaunch) {
  // What nvcc emits for assert(x): a call of the extern __assertfail.
  const std::string prelude =
      ".extern .func __assertfail(.param .b64 a, .param .b64 b, .param .b32 c, .param .b64 d, "
      ".param .b64 e);\n";
  const std::string body = R"(
    .reg .pred %p; .reg .b64 %z; .reg .b32 %y;
    setp.eq.u32 %p, %lane, 5;
    @!%p bra DONE;
    mov.u64 %z, 0; mov.u32 %y, 7;
    { .param .b64 a; st.param.b64 [a], %z; .param .b64 b; st.param.b64 [b], %z;
      .param .b32 c; st.param.b32 [c], %y; .param .b64 d; st.param.b64 [d], %z;
      .param .b64 e; st.param.b64 [e], %z;
      call.uni __assertfail, (a, b, c, d, e); }
  DONE:
    st.global.u32 [%out], %y;
  )";
  std::string msg;
  run(body, {}, 32, prelude, Status::kSyncFailed, &msg);
  EXPECT_NE(msg.find("assertion failed"), std::string::npos) << msg;
  auto ok = run(body, {}, 4, prelude);  // lane 5 does not exist: no assertion fails
  EXPECT_EQ(ok[0], 0u);
}

TEST(PtxOps, TrapAndBrkptFaultTheLaunchNamingTheLine) {
  for (const char* op : {"trap", "brkpt"}) {
    std::string msg;
    run(std::string(".reg .pred %p; setp.eq.u32 %p, %lane, 3;\n@%p ") + op + ";\n", {}, 32, "",
        Status::kSyncFailed, &msg);
    EXPECT_NE(msg.find(std::string(op) + " executed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("thread (3,0,0)"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace gpulease::sim::testing
