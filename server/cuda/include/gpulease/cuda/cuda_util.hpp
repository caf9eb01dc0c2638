// Pure pieces of the cuda backend, factored out so they are unit-tested on
// hosts without a GPU: launch-shape and argument checks, the kernel-parameter
// pointer array, CUDA error names and what a CUDA error means for a lease,
// JIT log formatting and transfer chunking.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::server::cuda {

// Device limits a launch is checked against (from DeviceInfo) plus the
// kernel's own (cuFuncGetAttribute).
struct LaunchLimits {
  uint32_t max_threads_per_block = 1024;  // min(device, kernel's MAX_THREADS_PER_BLOCK)
  std::array<uint32_t, 3> max_block{1024, 1024, 64};
  std::array<uint32_t, 3> max_grid{0x7fffffff, 65535, 65535};
  uint32_t max_shared_per_block = 48 * 1024;  // opt-in maximum, static + dynamic
  uint32_t static_shared_bytes = 0;           // the kernel's own __shared__ bytes
};

// LAUNCH_FAILED unless every dimension is in [1, limit], the block's thread
// count is within max_threads_per_block and static + dynamic shared memory
// fits. Overflow-safe (products in 64 bits).
[[nodiscard]] Result<void> check_launch_shape(const LaunchLimits& lim,
                                              const std::array<uint32_t, 3>& grid,
                                              const std::array<uint32_t, 3>& block,
                                              uint32_t shared_bytes, std::string_view kernel);

// One kernel parameter as the driver describes it (cuFuncGetParamInfo).
struct ParamInfo {
  size_t offset = 0;
  size_t size = 0;
};

// LAUNCH_FAILED when the argument count differs from the kernel's parameter
// count or an argument's size differs from its parameter's size. SECURITY: a
// mismatch would make cuLaunchKernel read past an argument buffer (too short)
// or silently pass garbage, so it is refused before the launch.
[[nodiscard]] Result<void> check_args(std::span<const ParamInfo> params,
                                      const std::vector<std::vector<std::byte>>& args,
                                      std::string_view kernel);

// Without cuFuncGetParamInfo: the only check possible is the total, which
// must fit the 32 KiB kernel-parameter space the driver accepts (4 KiB on
// drivers before 12.1; the driver rejects larger launches itself).
inline constexpr size_t kMaxParamBytes = 32764;
[[nodiscard]] Result<void> check_args_unknown_params(
    const std::vector<std::vector<std::byte>>& args, std::string_view kernel);

// The `kernelParams` array of cuLaunchKernel: element i points at the bytes
// of argument i. The pointers alias `args`, which must outlive the launch
// call (the driver copies the values before cuLaunchKernel returns).
[[nodiscard]] std::vector<void*> param_pointers(const std::vector<std::vector<std::byte>>& args);

// CUDA error codes by name, for drivers whose cuGetErrorName does not know a
// code and for tests. "CUDA_ERROR_UNKNOWN_<n>" for codes not in the table.
[[nodiscard]] std::string cuda_error_name(int code);

// Sticky errors corrupt the context: every later call fails with the same
// code, and only destroying the context recovers (CUDA Programming Guide,
// "Error checking"). The lease is then faulted.
[[nodiscard]] bool is_sticky_error(int code) noexcept;

// What a failed cuModuleLoadDataEx means: LOAD_FAILED with the error name and
// the JIT error log (and info log, when any), trimmed to `max_log` bytes.
[[nodiscard]] Error load_failure(std::string_view error_name, std::string_view error_log,
                                 std::string_view info_log, size_t max_log = 4096);

// A NUL-terminated log buffer as the JIT leaves it -> its text, trimmed.
[[nodiscard]] std::string_view jit_log_text(std::span<const char> buf) noexcept;

// Splits `total` bytes into consecutive chunks of at most `chunk` bytes.
struct Chunk {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};
[[nodiscard]] std::vector<Chunk> plan_chunks(uint64_t total, uint64_t chunk);

// Picks how many SMs a SessionExclusive lease gets: `requested` (or a
// quarter of the device when 0), rounded up to `granularity` (the driver's
// minimum partition / alignment), at least `granularity`, at most `sm_count`.
[[nodiscard]] uint32_t exclusive_sm_partition(uint32_t sm_count, uint32_t requested,
                                              uint32_t granularity) noexcept;

// "ptx" | "cubin" | "fatbin".
[[nodiscard]] std::string_view image_kind_name(ImageKind k) noexcept;

// The module-scope variables a PTX text declares, by name, with their space
// (.global or .const): what cuModuleGetGlobal cannot say. Declarations
// inside function bodies, comments and instruction suffixes (ld.const) are
// skipped. A name it does not list is VariableSpace::kUnknown to the caller.
[[nodiscard]] std::vector<std::pair<std::string, VariableSpace>> ptx_variable_spaces(
    std::string_view ptx);

}  // namespace gpulease::server::cuda
