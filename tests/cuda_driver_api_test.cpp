// The driver loader's failure paths, against fake libcuda builds
// (cuda_fake_driver.c): whatever is wrong, the error says what and the
// process goes on (so `--backend auto` can fall back to sim).
#include "gpulease/cuda/driver_api.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "gpulease/cuda/cuda_backend.hpp"

namespace gpulease::server::cuda {
namespace {

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

TEST(CudaDriverLoader, ReportsAMissingLibraryByName) {
  auto r = load_driver("/nonexistent/libcuda.so.1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kUnsupported);
  EXPECT_TRUE(contains(r.error().message, "/nonexistent/libcuda.so.1 not found: "))
      << r.error().message;
}

TEST(CudaDriverLoader, ReportsNoDeviceWithTheDriversErrorName) {
  auto r = load_driver(GPULEASE_FAKE_CUDA_NO_DEVICE);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kUnsupported);
  EXPECT_TRUE(contains(r.error().message, "no CUDA device")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "CUDA_ERROR_NO_DEVICE")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "no CUDA-capable device is detected"))
      << r.error().message;
}

TEST(CudaDriverLoader, NamesTheEntryPointsAnOldDriverLacks) {
  auto r = load_driver(GPULEASE_FAKE_CUDA_TOO_OLD);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kUnsupported);
  EXPECT_TRUE(contains(r.error().message, "cuLaunchHostFunc")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "too old")) << r.error().message;
  EXPECT_FALSE(contains(r.error().message, "cuInit,")) << r.error().message;
}

TEST(CudaDriverLoader, RejectsADriverWithoutCuGetProcAddress) {
  auto r = load_driver(GPULEASE_FAKE_CUDA_PRE_11_3);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, "no cuGetProcAddress")) << r.error().message;
}

TEST(CudaDriverLoader, RecognisesTheToolkitsStubLibrary) {
#ifdef GPULEASE_CUDA_STUB_LIB
  auto r = load_driver(GPULEASE_CUDA_STUB_LIB);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kUnsupported);
  EXPECT_TRUE(contains(r.error().message, "CUDA_ERROR_STUB_LIBRARY")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "stub")) << r.error().message;
#else
  GTEST_SKIP() << "the CUDA toolkit has no stubs/libcuda.so here";
#endif
}

TEST(CudaDriverLoader, AsksForLazyModuleLoadingWithoutOverridingTheOperator) {
  ::unsetenv("CUDA_MODULE_LOADING");
  (void)load_driver("/nonexistent/libcuda.so.1", true);
  ASSERT_NE(std::getenv("CUDA_MODULE_LOADING"), nullptr);
  EXPECT_STREQ(std::getenv("CUDA_MODULE_LOADING"), "LAZY");
  ::setenv("CUDA_MODULE_LOADING", "EAGER", 1);
  (void)load_driver("/nonexistent/libcuda.so.1", true);
  EXPECT_STREQ(std::getenv("CUDA_MODULE_LOADING"), "EAGER");
  ::unsetenv("CUDA_MODULE_LOADING");
}

TEST(CudaBackendFactory, FailsWithAClearMessageWhereTheDriverCannotBeUsed) {
  CudaBackendOptions o;
  o.driver_path = GPULEASE_FAKE_CUDA_NO_DEVICE;
  auto b = make_cuda_backend(o);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status(), Status::kUnsupported);
  EXPECT_TRUE(contains(b.error().message, "no CUDA device")) << b.error().message;
}

TEST(CudaBackendFactory, OnThisHostEitherWorksOrSaysWhyNot) {
  auto b = make_cuda_backend();
  if (b) {
    EXPECT_EQ(b.value()->name(), "cuda");
    EXPECT_FALSE(b.value()->devices().empty());
    return;
  }
  const std::string& m = b.error().message;
  EXPECT_TRUE(contains(m, "libcuda.so.1 not found") || contains(m, "no CUDA device")) << m;
}

}  // namespace
}  // namespace gpulease::server::cuda
