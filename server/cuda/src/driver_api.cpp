#include "gpulease/cuda/driver_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "gpulease/cuda/cuda_util.hpp"

namespace gpulease::server::cuda {

DriverApi::~DriverApi() {
  // The driver is never unloaded once initialised: unloading libcuda while
  // its internal threads run is undefined. The handle stays open for the
  // life of the process (as the CUDA runtime does).
  handle = nullptr;
}

std::string DriverApi::error_name(CUresult r) const {
  const char* s = nullptr;
  if (cuGetErrorName != nullptr && cuGetErrorName(r, &s) == CUDA_SUCCESS && s != nullptr) return s;
  return cuda_error_name(static_cast<int>(r));
}

std::string DriverApi::describe(CUresult r) const {
  std::string out = error_name(r);
  const char* s = nullptr;
  if (cuGetErrorString != nullptr && cuGetErrorString(r, &s) == CUDA_SUCCESS && s != nullptr) {
    out += " (";
    out += s;
    out += ")";
  }
  return out;
}

namespace {

// cuGetProcAddress_v2 (CUDA 12.0+) reports why a symbol was not found;
// cuGetProcAddress (11.3+) does not.
struct ProcResolver {
  PFN_cuGetProcAddress_v12000 v2 = nullptr;
  PFN_cuGetProcAddress_v11030 v1 = nullptr;
  // The first failure other than "symbol not found" (e.g. the toolkit's
  // stub library answers CUDA_ERROR_STUB_LIBRARY to everything).
  CUresult first_error = CUDA_SUCCESS;

  void* get(const char* name, int version) {
    void* fn = nullptr;
    // Legacy default-stream semantics: every call here names its stream.
    constexpr cuuint64_t kFlags = CU_GET_PROC_ADDRESS_LEGACY_STREAM;
    CUresult r = CUDA_SUCCESS;
    if (v2 != nullptr) {
      CUdriverProcAddressQueryResult found{};
      r = v2(name, &fn, version, kFlags, &found);
      if (r == CUDA_SUCCESS && found != CU_GET_PROC_ADDRESS_SUCCESS) fn = nullptr;
    } else {
      r = v1(name, &fn, version, kFlags);
    }
    if (r != CUDA_SUCCESS) {
      fn = nullptr;
      if (r != CUDA_ERROR_NOT_FOUND && first_error == CUDA_SUCCESS) first_error = r;
    }
    return fn;
  }
};

}  // namespace

Result<std::shared_ptr<const DriverApi>> load_driver(const std::string& path, bool lazy_loading) {
  if (lazy_loading) {
    // Modules load their kernels on first use: a context's own footprint
    // stays small. The operator's explicit setting wins.
    ::setenv("CUDA_MODULE_LOADING", "LAZY", /*overwrite=*/0);
  }
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = ::dlerror();
    return make_error(Status::kUnsupported,
                      path + " not found: " + (why != nullptr ? why : "dlopen failed") +
                          " (no NVIDIA driver on this host?)");
  }
  auto api = std::make_shared<DriverApi>();
  api->handle = h;
  api->path = path;

  ProcResolver res;
  res.v2 = reinterpret_cast<PFN_cuGetProcAddress_v12000>(::dlsym(h, "cuGetProcAddress_v2"));
  if (res.v2 == nullptr) {
    res.v1 = reinterpret_cast<PFN_cuGetProcAddress_v11030>(::dlsym(h, "cuGetProcAddress"));
  }
  if (res.v2 == nullptr && res.v1 == nullptr) {
    return make_error(Status::kUnsupported,
                      path +
                          " has no cuGetProcAddress: the NVIDIA driver is older than CUDA 11.3; "
                          "gpulease needs a CUDA 12 or newer driver");
  }

  std::string missing;
#define GPULEASE_CUDA_RESOLVE_REQUIRED(name, ver)                         \
  api->name = reinterpret_cast<PFN_##name##_v##ver>(res.get(#name, ver)); \
  if (api->name == nullptr) missing += std::string(missing.empty() ? "" : ", ") + #name;
#define GPULEASE_CUDA_RESOLVE_OPTIONAL(name, ver) \
  api->name = reinterpret_cast<PFN_##name##_v##ver>(res.get(#name, ver));
  GPULEASE_CUDA_DRIVER_ENTRY_POINTS(GPULEASE_CUDA_RESOLVE_REQUIRED, GPULEASE_CUDA_RESOLVE_OPTIONAL)
#undef GPULEASE_CUDA_RESOLVE_REQUIRED
#undef GPULEASE_CUDA_RESOLVE_OPTIONAL
  if (!missing.empty() && res.first_error != CUDA_SUCCESS) {
    std::string why = cuda_error_name(static_cast<int>(res.first_error));
    if (res.first_error == CUDA_ERROR_STUB_LIBRARY) {
      why += ": this is the CUDA toolkit's stub libcuda, not an NVIDIA driver";
    }
    return make_error(Status::kUnsupported,
                      "no CUDA device: cuGetProcAddress in " + path + " failed with " + why);
  }
  if (!missing.empty()) {
    return make_error(Status::kUnsupported,
                      path + " lacks required entry points (" + missing +
                          "): the NVIDIA driver is too old for gpulease (CUDA 12 or newer needed)");
  }

  CUresult r = api->cuInit(0);
  if (r != CUDA_SUCCESS) {
    Status s = Status::kUnsupported;
    std::string what = "no CUDA device: cuInit failed with " + api->describe(r);
    if (r == CUDA_ERROR_STUB_LIBRARY)
      what += " (the toolkit's stub libcuda was loaded, not a driver)";
    return make_error(s, std::move(what));
  }
  r = api->cuDriverGetVersion(&api->driver_version);
  if (r != CUDA_SUCCESS) {
    return make_error(Status::kInternal, "cuDriverGetVersion failed: " + api->describe(r));
  }
  return std::shared_ptr<const DriverApi>(std::move(api));
}

}  // namespace gpulease::server::cuda
