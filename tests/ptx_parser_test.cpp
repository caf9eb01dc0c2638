// The PTX loader accepts everything nvcc emits for kernels/, decodes it into
// slots and instruction indices, and rejects anything outside the subset with
// LOAD_FAILED naming the instruction or directive and its line — without
// crashing on truncated or corrupted text.
#include <bit>
#include <limits>
#include <random>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

const char* const kAllPtx[] = {"transform.ptx", "pipeline.ptx", "infer.ptx",     "vector.ptx",
                               "reduce.ptx",    "matmul.ptx",   "histogram.ptx", "branchy.ptx",
                               "int64.ptx",     "faults.ptx"};

std::string wrap(const std::string& body, const std::string& params = "") {
  return ".version 9.0\n.target sm_75\n.address_size 64\n"
         ".visible .entry k(" +
         params + ")\n{\n" + body + "\n}\n";
}

Error load_error(const std::string& text) {
  auto r = load_ptx(text);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return {};
  EXPECT_EQ(r.status(), Status::kLoadFailed);
  return r.error();
}

TEST(PtxParser, LoadsEveryKernelInKernelsDir) {
  for (const char* f : kAllPtx) {
    const std::string text = read_ptx(f);
    ASSERT_FALSE(text.empty()) << f;
    auto m = load_ptx(text);
    ASSERT_TRUE(m.ok()) << f << ": " << m.error().message;
    EXPECT_FALSE((*m)->kernels.empty());
  }
}

TEST(PtxParser, DecodesParametersWithOffsetsAndSizes) {
  auto m = load_ptx(read_ptx("transform.ptx"));
  ASSERT_TRUE(m.ok());
  const Kernel* k = (*m)->find("scale");
  ASSERT_NE(k, nullptr);
  ASSERT_EQ(k->params.size(), 3u);
  EXPECT_EQ(k->params[0].size, 8u);
  EXPECT_EQ(k->params[1].offset, 8u);
  EXPECT_EQ(k->params[2].offset, 12u);
  EXPECT_EQ(k->param_bytes, 16u);
  EXPECT_EQ((*m)->find("bias")->params.size(), 3u);
  EXPECT_EQ((*m)->find("missing"), nullptr);
}

TEST(PtxParser, ResolvesLabelsToInstructionIndices) {
  auto m =
      load_ptx(wrap(".reg .pred %p<2>;\n.reg .b32 %r<2>;\n"
                    "mov.u32 %r1, 0;\n"
                    "$L_top:\n"
                    "add.s32 %r1, %r1, 1;\n"
                    "setp.lt.s32 %p1, %r1, 10;\n"
                    "@%p1 bra $L_top;\n"
                    "ret;"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  ASSERT_GE(k.code.size(), 5u);
  EXPECT_EQ(k.code[3].op, Op::kBra);
  EXPECT_EQ(k.code[3].imm, 1);
  EXPECT_EQ(k.code[3].neg & 1, 0);
  EXPECT_NE(k.code[3].guard, kSlotTrue);
}

TEST(PtxParser, ResolvesImmediatesToConstantSlots) {
  auto m =
      load_ptx(wrap(".reg .f32 %f<3>;\nmov.f32 %f1, 0f3F800000;\nadd.f32 %f2, %f1, 0f3F800000;"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  EXPECT_EQ(k.code[0].a, k.code[1].b);  // one slot per distinct constant
  EXPECT_EQ(k.initial_value(k.code[0].a), 0x3F800000u);
}

TEST(PtxParser, LaysOutStaticAndDynamicSharedMemory) {
  auto m = load_ptx(read_ptx("reduce.ptx"));
  ASSERT_TRUE(m.ok());
  const Kernel* sum = (*m)->find("reduce_sum");
  EXPECT_EQ(sum->static_shared_bytes, 4096u);
  EXPECT_TRUE(sum->has_barrier);
  const Kernel* dyn = (*m)->find("reduce_max_dyn");
  EXPECT_EQ(dyn->static_shared_bytes, 0u);
  EXPECT_EQ(dyn->dynamic_shared_offset, 0u);
}

TEST(PtxParser, UnknownInstructionIsLoadFailedNamingItAndTheLine) {
  auto e = load_error(wrap(".reg .b32 %r<3>;\nadd.s32 %r1, %r2, 1;\nfrobnicate.b32 %r1, %r2;"));
  EXPECT_NE(e.message.find("frobnicate.b32"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("line 8"), std::string::npos) << e.message;
}

TEST(PtxParser, UnsupportedModifierIsNamed) {
  auto e = load_error(wrap(".reg .f32 %f<3>;\nadd.rz.f32.bogus %f1, %f2, %f2;"));
  EXPECT_NE(e.message.find("add.rz.f32.bogus"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("unsupported modifier .bogus"), std::string::npos) << e.message;
}

TEST(PtxParser, UnknownDirectiveIsLoadFailed) {
  auto e = load_error(".version 9.0\n.target sm_75\n.address_size 64\n.bogus 1;\n");
  EXPECT_NE(e.message.find(".bogus"), std::string::npos);
  EXPECT_NE(e.message.find("line 4"), std::string::npos);
}

TEST(PtxParser, RejectsCallsItCannotRun) {
  EXPECT_NE(load_error(wrap("call foo;")).message.find("undeclared function foo"),
            std::string::npos);
  // Recursion (each function keeps one return address).
  const std::string rec =
      ".version 9.0\n.target sm_75\n.address_size 64\n"
      ".func f()\n{\ncall.uni g;\nret;\n}\n.func g()\n{\ncall.uni f;\nret;\n}\n"
      ".visible .entry k()\n{\ncall.uni f;\nret;\n}\n";
  EXPECT_NE(load_error(rec).message.find("recursive"), std::string::npos);
  // Indirect calls through a register.
  EXPECT_NE(load_error(wrap(".reg .b64 %rd<2>;\ncall %rd1;")).message.find("indirect"),
            std::string::npos);
  // A declared function without a body.
  const std::string decl =
      ".version 9.0\n.target sm_75\n.address_size 64\n.func f();\n"
      ".visible .entry k()\n{\ncall.uni f;\nret;\n}\n";
  EXPECT_NE(load_error(decl).message.find("declared but not defined"), std::string::npos);
}

TEST(PtxParser, RejectsUndeclaredRegistersAndUndefinedLabels) {
  EXPECT_NE(load_error(wrap("mov.u32 %r1, 0;")).message.find("undeclared register %r1"),
            std::string::npos);
  EXPECT_NE(load_error(wrap("bra $L_nowhere;")).message.find("undefined label $L_nowhere"),
            std::string::npos);
}

TEST(PtxParser, RejectsRegisterOfTheWrongSize) {
  auto e = load_error(wrap(".reg .b32 %r<2>;\n.reg .b64 %rd<2>;\nadd.s32 %r1, %rd1, 1;"));
  EXPECT_NE(e.message.find("64-bit register"), std::string::npos) << e.message;
  auto p = load_error(wrap(".reg .b32 %r<2>;\n@%r1 ret;"));
  EXPECT_NE(p.message.find("not a predicate"), std::string::npos) << p.message;
}

TEST(PtxParser, RejectsParametersUsedOutsideTheParamSpace) {
  auto e = load_error(
      wrap(".reg .b32 %r<2>;\nld.global.u32 %r1, [k_param_0];", ".param .u64 k_param_0"));
  EXPECT_NE(e.message.find("k_param_0"), std::string::npos) << e.message;
}

TEST(PtxParser, RequiresVersionTargetAndAKernel) {
  EXPECT_EQ(load_ptx("").status(), Status::kLoadFailed);
  EXPECT_EQ(load_ptx(".version 9.0\n.target sm_75\n").status(), Status::kLoadFailed);
  EXPECT_EQ(load_ptx(".visible .entry k() { ret; }").status(), Status::kLoadFailed);
  EXPECT_EQ(load_ptx(".version 9.0\n.target sm_75\n.address_size 32\n").status(),
            Status::kLoadFailed);
}

TEST(PtxParser, AcceptsCommentsPragmasAndPerformanceDirectives) {
  auto m = load_ptx(
      "// header\n.version 8.0\n.target sm_80, texmode_independent\n.address_size 64\n"
      "/* block\n comment */\n"
      ".visible .entry k(.param .align 8 .b8 k_param_0[16])\n.maxntid 256, 1, 1\n{\n"
      ".reg .b64 %rd<2>;\n.pragma \"nounroll\";\n"
      "ld.param.u64 %rd1, [k_param_0+8];\n"
      "{\n.reg .b32 %inner;\nmov.u32 %inner, 5;\n}\n"
      "membar.gl;\nret;\n}\n");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ((*m)->kernels[0].params[0].size, 16u);
}

TEST(PtxParser, ScopedRegistersAreNotVisibleOutsideTheirBlock) {
  auto e = load_error(wrap("{\n.reg .b32 %inner;\n}\nmov.u32 %inner, 1;"));
  EXPECT_NE(e.message.find("%inner"), std::string::npos);
}

TEST(PtxParser, EnforcesItsLimits) {
  LoadLimits small;
  small.max_instructions = 4;
  auto r = load_ptx(read_ptx("matmul.ptx"), small);
  EXPECT_EQ(r.status(), Status::kLoadFailed);
  EXPECT_EQ(load_ptx(wrap(".reg .b32 %r<100000000>;")).status(), Status::kLoadFailed);
  EXPECT_EQ(load_ptx(wrap(".shared .align 4 .b8 big[1000000];")).status(), Status::kLoadFailed);
}

TEST(PtxParser, BlocksNestedDeeperThanTheLimitAreRefusedNamingTheLine) {
  // The kernel body is level 1, so 63 inner blocks reach the limit of 64.
  const std::string ok =
      std::string(63, '{') + "\n.reg .b32 %deep;\nmov.u32 %deep, 1;\n" + std::string(63, '}');
  EXPECT_TRUE(load_ptx(wrap(ok)).ok());
  const std::string deep = "\n" + std::string(64, '{') + std::string(64, '}');
  auto e = load_error(wrap(deep));
  EXPECT_NE(e.message.find("line 7:"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("nested deeper than 64"), std::string::npos) << e.message;
}

TEST(PtxParser, AnInnerBlockShadowsARegisterUntilItCloses) {
  auto m =
      load_ptx(wrap(".reg .b32 %x;\n{\n.reg .b64 %x;\nmov.u64 %x, 1;\n}\nmov.u32 %x, 2;\n"
                    "{\n.reg .b32 %y;\n}\n{\n.reg .b32 %y;\n}"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  EXPECT_NE(k.code[0].d, k.code[1].d);  // two different %x
  EXPECT_NE(load_error(wrap("{\n.reg .b64 %x;\n}\nmov.u64 %x, 1;")).message.find("%x"),
            std::string::npos);
  EXPECT_NE(load_error(wrap("{\n.reg .b32 %x;\n.reg .b32 %x;\n}")).message.find("declared twice"),
            std::string::npos);
}

std::string kernels(int n, const std::string& body) {
  std::string t = ".version 9.0\n.target sm_75\n.address_size 64\n";
  for (int i = 0; i < n; ++i)
    t += ".visible .entry k" + std::to_string(i) + "()\n{\n" + body + "\n}\n";
  return t;
}

TEST(PtxParser, RegisterSlotsAreLimitedPerModuleNotOnlyPerKernel) {
  LoadLimits lim;
  lim.max_module_slots = 1000;
  EXPECT_TRUE(load_ptx(kernels(2, ".reg .b8 %r<400>;\nret;"), lim).ok());
  auto r = load_ptx(kernels(3, ".reg .b8 %r<400>;\nret;"), lim);
  ASSERT_EQ(r.status(), Status::kLoadFailed);
  EXPECT_NE(r.error().message.find("too many registers"), std::string::npos) << r.error().message;
}

TEST(PtxParser, InstructionsAreLimitedPerModuleNotOnlyPerKernel) {
  LoadLimits lim;
  lim.max_module_instructions = 20;
  const std::string body = ".reg .b32 %r;\nmov.u32 %r, 1;\nmov.u32 %r, 2;\nret;";
  EXPECT_TRUE(load_ptx(kernels(4, body), lim).ok());  // 4 each, the implicit ret included
  auto r = load_ptx(kernels(6, body), lim);
  ASSERT_EQ(r.status(), Status::kLoadFailed);
  EXPECT_NE(r.error().message.find("too many instructions in the module"), std::string::npos)
      << r.error().message;
}

TEST(PtxParser, DeclaredButUnusedRegistersCostNoDecodedMemory) {
  // 60,000 declared registers used to be 480 KB of initial register file.
  auto m = load_ptx(wrap(".reg .b64 %r<60000>;\nmov.u64 %r7, 42;\nret;"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  EXPECT_GE(k.num_slots(), 60000u);
  EXPECT_EQ(k.initial_value(k.code[0].a), 42u);
  EXPECT_EQ(k.initial_value(k.code[0].d), 0u);
  EXPECT_EQ(k.initial_value(kSlotTrue), 1u);
  EXPECT_LT((*m)->decoded_bytes(), 4096u);
}

TEST(PtxParser, AddressOffsetsWrapModuloTwoToTheSixtyFour) {
  auto m =
      load_ptx(wrap(".reg .b32 %r;\nld.global.u32 %r, [0x7fffffffffffffff+0x4000000000000000];\n"
                    "ld.global.u32 %r, [0x8000000000000000-0x4000000000000000];"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  EXPECT_EQ(static_cast<uint64_t>(k.code[0].imm), 0xbfffffffffffffffull);
  EXPECT_EQ(static_cast<uint64_t>(k.code[1].imm), 0x4000000000000000ull);
}

TEST(PtxParser, DecimalLiteralsOutOfRangeBecomeInfinityOrZero) {
  auto m = load_ptx(
      wrap(".reg .f64 %d;\n.reg .f32 %f;\nmov.f64 %d, 1e400;\nmov.f64 %d, -1e400;\n"
           "mov.f64 %d, 1e-400;\nmov.f32 %f, 1e400;\nmov.f64 %d, 0.00001e99999999999999999999;\n"
           "mov.f64 %d, 1e308;"));
  ASSERT_TRUE(m.ok()) << m.error().message;
  const Kernel& k = (*m)->kernels[0];
  auto f64 = [&](int i) { return std::bit_cast<double>(k.initial_value(k.code[i].a)); };
  EXPECT_EQ(f64(0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(f64(1), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(k.initial_value(k.code[2].a), 0u);
  EXPECT_EQ(std::bit_cast<float>(static_cast<uint32_t>(k.initial_value(k.code[3].a))),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(f64(4), std::numeric_limits<double>::infinity());
  EXPECT_EQ(f64(5), 1e308);
}

TEST(PtxParser, EveryTruncatedPrefixFailsCleanlyOrLoads) {
  const std::string text = read_ptx("matmul.ptx");
  for (size_t n = 0; n < text.size(); n += 7) {
    auto r = load_ptx(std::string_view(text).substr(0, n));
    if (!r.ok()) {
      EXPECT_EQ(r.status(), Status::kLoadFailed);
    }
  }
}

TEST(PtxParser, RandomByteCorruptionNeverCrashes) {
  std::mt19937 rng(42);
  for (const char* f : kAllPtx) {
    const std::string text = read_ptx(f);
    for (int i = 0; i < 200; ++i) {
      std::string t = text;
      for (int j = 0; j < 3; ++j) t[rng() % t.size()] = static_cast<char>(rng() % 128);
      auto r = load_ptx(t);
      if (!r.ok()) {
        EXPECT_EQ(r.status(), Status::kLoadFailed);
      }
    }
  }
}

}  // namespace
}  // namespace gpulease::sim::testing
