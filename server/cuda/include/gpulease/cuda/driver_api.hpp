// The CUDA Driver API entry points the cuda backend uses, loaded at run time.
//
// Every pointer is resolved with cuGetProcAddress at the ABI version named in
// its PFN type (cudaTypedefs.h): cuGetProcAddress returns the newest variant
// of a symbol whose ABI matches that version, so e.g. "cuCtxCreate" at 3020
// is cuCtxCreate_v2(CUcontext*, unsigned, CUdevice) on a 12.x driver and on
// a 13.x driver alike (CUDA 13's header maps cuCtxCreate to _v4, which takes
// a CUctxCreateParams*; calling the 3-argument prototype through a _v4
// pointer would be an ABI mismatch -- this is why versions are explicit).
//
// Required entry points missing -> load fails; optional ones stay null.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <memory>
#include <string>

#include "gpulease/wire/result.hpp"

namespace gpulease::server::cuda {

// X(name, version): required; O(name, version): optional (null when the
// driver lacks it).
#define GPULEASE_CUDA_DRIVER_ENTRY_POINTS(X, O) \
  X(cuInit, 2000)                               \
  X(cuDriverGetVersion, 2020)                   \
  X(cuGetErrorName, 6000)                       \
  X(cuGetErrorString, 6000)                     \
  X(cuDeviceGetCount, 2000)                     \
  X(cuDeviceGet, 2000)                          \
  X(cuDeviceGetName, 2000)                      \
  X(cuDeviceGetUuid, 11040)                     \
  X(cuDeviceTotalMem, 3020)                     \
  X(cuDeviceGetAttribute, 2000)                 \
  X(cuCtxCreate, 3020)                          \
  X(cuCtxDestroy, 4000)                         \
  X(cuCtxPushCurrent, 4000)                     \
  X(cuCtxPopCurrent, 4000)                      \
  X(cuCtxSetLimit, 3010)                        \
  X(cuCtxSynchronize, 2000)                     \
  X(cuMemGetInfo, 3020)                         \
  X(cuMemAlloc, 3020)                           \
  X(cuMemFree, 3020)                            \
  X(cuMemHostAlloc, 2020)                       \
  X(cuMemFreeHost, 2000)                        \
  X(cuMemcpyHtoD, 3020)                         \
  X(cuMemcpyDtoH, 3020)                         \
  X(cuMemcpyHtoDAsync, 3020)                    \
  X(cuMemcpyDtoHAsync, 3020)                    \
  X(cuMemsetD8Async, 3020)                      \
  X(cuStreamCreate, 2000)                       \
  X(cuStreamDestroy, 4000)                      \
  X(cuStreamSynchronize, 2000)                  \
  X(cuEventCreate, 2000)                        \
  X(cuEventRecord, 2000)                        \
  X(cuEventQuery, 2000)                         \
  X(cuEventSynchronize, 2000)                   \
  X(cuEventDestroy, 4000)                       \
  X(cuModuleLoadDataEx, 2010)                   \
  X(cuModuleUnload, 2000)                       \
  X(cuModuleGetFunction, 2000)                  \
  X(cuModuleGetGlobal, 3020)                    \
  X(cuFuncGetAttribute, 2020)                   \
  X(cuFuncSetAttribute, 9000)                   \
  X(cuLaunchKernel, 4000)                       \
  X(cuLaunchHostFunc, 10000)                    \
  O(cuFuncGetParamInfo, 12040)                  \
  O(cuDeviceGetDevResource, 12040)              \
  O(cuDevSmResourceSplitByCount, 12040)         \
  O(cuDevResourceGenerateDesc, 12040)           \
  O(cuGreenCtxCreate, 12040)                    \
  O(cuGreenCtxDestroy, 12040)                   \
  O(cuCtxFromGreenCtx, 12040)                   \
  O(cuGreenCtxStreamCreate, 12050)

struct DriverApi {
#define GPULEASE_CUDA_DECLARE(name, ver) PFN_##name##_v##ver name = nullptr;
  GPULEASE_CUDA_DRIVER_ENTRY_POINTS(GPULEASE_CUDA_DECLARE, GPULEASE_CUDA_DECLARE)
#undef GPULEASE_CUDA_DECLARE

  int driver_version = 0;  // cuDriverGetVersion, e.g. 13000
  std::string path;        // what was dlopen'ed
  void* handle = nullptr;  // dlopen handle, closed by the destructor

  DriverApi() = default;
  ~DriverApi();
  DriverApi(const DriverApi&) = delete;
  DriverApi& operator=(const DriverApi&) = delete;

  // "CUDA_ERROR_ILLEGAL_ADDRESS" (from the driver when it knows the code,
  // else from the built-in table).
  [[nodiscard]] std::string error_name(CUresult r) const;
  // "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)".
  [[nodiscard]] std::string describe(CUresult r) const;

  [[nodiscard]] bool has_param_info() const noexcept {
    return cuFuncGetParamInfo != nullptr;
  }
  [[nodiscard]] bool has_green_contexts() const noexcept {
    return cuDeviceGetDevResource && cuDevSmResourceSplitByCount && cuDevResourceGenerateDesc &&
           cuGreenCtxCreate && cuGreenCtxDestroy && cuCtxFromGreenCtx && cuGreenCtxStreamCreate;
  }
};

// dlopens `path`, resolves every entry point and calls cuInit(0).
// UNSUPPORTED "libcuda.so.1 not found: <dlerror>" when the library is absent;
// UNSUPPORTED "no CUDA device: ..." when cuInit reports no device/driver;
// INTERNAL when the driver is too old (no cuGetProcAddress) or a required
// entry point is missing.
// `lazy_loading`: setenv CUDA_MODULE_LOADING=LAZY (not overwriting) first.
[[nodiscard]] Result<std::shared_ptr<const DriverApi>> load_driver(const std::string& path,
                                                                   bool lazy_loading = true);

}  // namespace gpulease::server::cuda
