// The cuda backend's pure pieces: launch-shape and argument checks, the
// kernel-parameter pointer array, error names and stickiness, JIT logs,
// transfer chunking, SM partition sizes. No GPU needed.
#include "gpulease/cuda/cuda_util.hpp"

#include <gtest/gtest.h>

#include <cuda.h>

namespace gpulease::server::cuda {
namespace {

std::vector<std::byte> bytes(size_t n, uint8_t fill = 0) {
  return std::vector<std::byte>(n, std::byte{fill});
}

LaunchLimits h100_like() {
  LaunchLimits l;
  l.max_threads_per_block = 1024;
  l.max_block = {1024, 1024, 64};
  l.max_grid = {0x7fffffff, 65535, 65535};
  l.max_shared_per_block = 227 * 1024;
  return l;
}

TEST(CudaLaunchShape, AcceptsTheLargestLegalLaunch) {
  EXPECT_TRUE(
      check_launch_shape(h100_like(), {0x7fffffff, 65535, 65535}, {1024, 1, 1}, 227 * 1024, "k"));
  EXPECT_TRUE(check_launch_shape(h100_like(), {1, 1, 1}, {16, 16, 4}, 0, "k"));
}

TEST(CudaLaunchShape, RejectsZeroDimensions) {
  auto r = check_launch_shape(h100_like(), {0, 1, 1}, {32, 1, 1}, 0, "scale");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("grid.x"), std::string::npos);
  EXPECT_NE(r.error().message.find("scale"), std::string::npos);
  EXPECT_FALSE(check_launch_shape(h100_like(), {1, 1, 1}, {32, 1, 0}, 0, "k"));
}

TEST(CudaLaunchShape, RejectsDimensionsPastTheDeviceLimits) {
  EXPECT_FALSE(check_launch_shape(h100_like(), {1, 65536, 1}, {1, 1, 1}, 0, "k"));
  EXPECT_FALSE(check_launch_shape(h100_like(), {1, 1, 65536}, {1, 1, 1}, 0, "k"));
  EXPECT_FALSE(check_launch_shape(h100_like(), {1, 1, 1}, {1025, 1, 1}, 0, "k"));
  EXPECT_FALSE(check_launch_shape(h100_like(), {1, 1, 1}, {1, 1, 65}, 0, "k"));
}

TEST(CudaLaunchShape, RejectsTooManyThreadsPerBlockWithoutOverflow) {
  auto r = check_launch_shape(h100_like(), {1, 1, 1}, {1024, 1024, 64}, 0, "k");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("67108864 threads"), std::string::npos) << r.error().message;
  LaunchLimits small = h100_like();
  small.max_threads_per_block = 256;  // the kernel's own limit (registers)
  EXPECT_FALSE(check_launch_shape(small, {1, 1, 1}, {512, 1, 1}, 0, "k"));
  EXPECT_TRUE(check_launch_shape(small, {1, 1, 1}, {256, 1, 1}, 0, "k"));
}

TEST(CudaLaunchShape, CountsStaticSharedMemoryAgainstTheLimit) {
  LaunchLimits l = h100_like();
  l.static_shared_bytes = 4096;
  EXPECT_TRUE(check_launch_shape(l, {1, 1, 1}, {32, 1, 1}, 227 * 1024 - 4096, "k"));
  auto r = check_launch_shape(l, {1, 1, 1}, {32, 1, 1}, 227 * 1024 - 4095, "k");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_FALSE(check_launch_shape(l, {1, 1, 1}, {32, 1, 1}, 0xffffffffu, "k"));
}

TEST(CudaArgs, AcceptArgumentsMatchingTheParameters) {
  std::vector<ParamInfo> params{{0, 8}, {8, 4}, {12, 4}};
  std::vector<std::vector<std::byte>> args{bytes(8), bytes(4), bytes(4)};
  EXPECT_TRUE(check_args(params, args, "scale"));
  EXPECT_TRUE(check_args({}, {}, "noargs"));
}

TEST(CudaArgs, RejectAWrongArgumentCount) {
  std::vector<ParamInfo> params{{0, 8}, {8, 4}, {12, 4}};
  std::vector<std::vector<std::byte>> args{bytes(8), bytes(4)};
  auto r = check_args(params, args, "scale");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
  EXPECT_NE(r.error().message.find("takes 3 parameters, 2 arguments given"), std::string::npos);
}

TEST(CudaArgs, RejectAWrongArgumentSize) {
  std::vector<ParamInfo> params{{0, 8}, {8, 4}};
  std::vector<std::vector<std::byte>> args{bytes(8), bytes(8)};
  auto r = check_args(params, args, "scale");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("parameter 1 is 4 bytes, argument is 8 bytes"),
            std::string::npos);
}

TEST(CudaArgs, WithoutParameterInfoOnlyTheParameterSpaceIsChecked) {
  std::vector<std::vector<std::byte>> ok{bytes(8), bytes(4), bytes(4)};
  EXPECT_TRUE(check_args_unknown_params(ok, "k"));
  std::vector<std::vector<std::byte>> empty_arg{bytes(8), bytes(0)};
  EXPECT_FALSE(check_args_unknown_params(empty_arg, "k"));
  std::vector<std::vector<std::byte>> huge(4100, bytes(8));  // 32800 bytes
  auto r = check_args_unknown_params(huge, "k");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kLaunchFailed);
}

TEST(CudaParamPointers, PointAtEachArgumentsBytesInOrder) {
  std::vector<std::vector<std::byte>> args{bytes(8, 1), bytes(4, 2), bytes(4, 3)};
  auto p = param_pointers(args);
  ASSERT_EQ(p.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(p[i], static_cast<void*>(args[i].data()));
    EXPECT_EQ(*static_cast<const std::byte*>(p[i]), std::byte(i + 1));
  }
  EXPECT_TRUE(param_pointers({}).empty());
}

TEST(CudaErrorNames, MatchTheHeadersCodes) {
  EXPECT_EQ(cuda_error_name(CUDA_SUCCESS), "CUDA_SUCCESS");
  EXPECT_EQ(cuda_error_name(CUDA_ERROR_ILLEGAL_ADDRESS), "CUDA_ERROR_ILLEGAL_ADDRESS");
  EXPECT_EQ(cuda_error_name(CUDA_ERROR_UNSUPPORTED_PTX_VERSION),
            "CUDA_ERROR_UNSUPPORTED_PTX_VERSION");
  EXPECT_EQ(cuda_error_name(CUDA_ERROR_NO_DEVICE), "CUDA_ERROR_NO_DEVICE");
  EXPECT_EQ(cuda_error_name(CUDA_ERROR_NOT_READY), "CUDA_ERROR_NOT_READY");
  EXPECT_EQ(cuda_error_name(123456), "CUDA_ERROR_UNKNOWN_123456");
}

TEST(CudaErrorNames, StickyErrorsAreTheOnesThatPoisonAContext) {
  for (int code :
       {CUDA_ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_MISALIGNED_ADDRESS, CUDA_ERROR_ILLEGAL_INSTRUCTION,
        CUDA_ERROR_HARDWARE_STACK_ERROR, CUDA_ERROR_LAUNCH_FAILED, CUDA_ERROR_ASSERT,
        CUDA_ERROR_INVALID_PC, CUDA_ERROR_LAUNCH_TIMEOUT, CUDA_ERROR_ECC_UNCORRECTABLE}) {
    EXPECT_TRUE(is_sticky_error(code)) << cuda_error_name(code);
  }
  for (int code :
       {CUDA_SUCCESS, CUDA_ERROR_NOT_READY, CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_OUT_OF_MEMORY,
        CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, CUDA_ERROR_NOT_FOUND, CUDA_ERROR_INVALID_PTX,
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION}) {
    EXPECT_FALSE(is_sticky_error(code)) << cuda_error_name(code);
  }
}

TEST(CudaJitLog, LoadFailureCarriesTheErrorNameAndLog) {
  Error e =
      load_failure("CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
                   "ptxas application ptx input, line 1; fatal   : Unsupported .version 99.0", "");
  EXPECT_EQ(e.status, Status::kLoadFailed);
  EXPECT_NE(e.message.find("CUDA_ERROR_UNSUPPORTED_PTX_VERSION"), std::string::npos);
  EXPECT_NE(e.message.find("Unsupported .version 99.0"), std::string::npos);
  EXPECT_EQ(e.message.find("info log"), std::string::npos);
}

TEST(CudaJitLog, LongLogsAreTruncatedAndSaySo) {
  std::string log(10000, 'x');
  Error e = load_failure("CUDA_ERROR_INVALID_PTX", log, "info", 100);
  EXPECT_LT(e.message.size(), 300u);
  EXPECT_NE(e.message.find("[log truncated]"), std::string::npos);
  EXPECT_NE(e.message.find("JIT info log: info"), std::string::npos);
}

TEST(CudaJitLog, TextStopsAtTheTerminatorAndDropsTrailingNewlines) {
  char buf[32] = "line one\nline two\n\n";
  EXPECT_EQ(jit_log_text(buf), "line one\nline two");
  char none[4] = {'a', 'b', 'c', 'd'};  // unterminated: bounded by the span
  EXPECT_EQ(jit_log_text(none), "abcd");
  EXPECT_EQ(jit_log_text({}), "");
}

TEST(CudaChunks, CoverTheTransferExactlyOnce) {
  auto c = plan_chunks(10, 4);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].offset, 0u);
  EXPECT_EQ(c[0].bytes, 4u);
  EXPECT_EQ(c[2].offset, 8u);
  EXPECT_EQ(c[2].bytes, 2u);
  EXPECT_EQ(plan_chunks(8, 4).size(), 2u);
  EXPECT_TRUE(plan_chunks(0, 4).empty());
  auto one = plan_chunks(3, 0);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].bytes, 3u);
}

TEST(CudaExclusivePartition, RoundsToTheDriversGranularity) {
  EXPECT_EQ(exclusive_sm_partition(132, 0, 8), 40u);  // a quarter (33) rounded up to 8
  EXPECT_EQ(exclusive_sm_partition(132, 10, 8), 16u);
  EXPECT_EQ(exclusive_sm_partition(132, 1, 8), 8u);
  EXPECT_EQ(exclusive_sm_partition(132, 500, 8), 132u);
  EXPECT_EQ(exclusive_sm_partition(4, 0, 2), 2u);
  EXPECT_EQ(exclusive_sm_partition(16, 3, 0), 3u);
}

TEST(CudaImageKinds, HaveNames) {
  EXPECT_EQ(image_kind_name(ImageKind::kPtx), "ptx");
  EXPECT_EQ(image_kind_name(ImageKind::kCubin), "cubin");
  EXPECT_EQ(image_kind_name(ImageKind::kFatbin), "fatbin");
}

// What the cuda backend reports as a MODULE_GLOBAL variable's space: the
// declarations of the PTX text, at module scope only.
TEST(CudaPtxVariableSpaces, ReadsModuleScopeDeclarations) {
  const std::string ptx = R"(
.version 7.8
.target sm_75
.address_size 64
// .const .u32 commented_out;
/* .global .u32 also_commented; */
.const .align 4 .b8 kTable[64];
.visible .const .align 4 .u32 kTerms = 3;
.global .align 4 .u32 gCount;
.visible .global .align 8 .b8 gInit[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
.extern .shared .align 16 .b8 smem[];
.visible .entry k(
	.param .u64 .ptr .global .align 4 k_param_0
)
{
	.reg .b32 %r<3>;
	ld.const.u32 %r1, [kTerms];
	ret;
}
.global .f32 gAfter = 0f3F800000;
)";
  auto v = ptx_variable_spaces(ptx);
  const std::vector<std::pair<std::string, VariableSpace>> want{{"kTable", VariableSpace::kConst},
                                                                {"kTerms", VariableSpace::kConst},
                                                                {"gCount", VariableSpace::kGlobal},
                                                                {"gInit", VariableSpace::kGlobal},
                                                                {"gAfter", VariableSpace::kGlobal}};
  EXPECT_EQ(v, want);
  EXPECT_TRUE(ptx_variable_spaces("").empty());
  EXPECT_TRUE(ptx_variable_spaces(".const").empty()) << "a declaration cut short names nothing";
}

}  // namespace
}  // namespace gpulease::server::cuda
