#include "gpulease/cuda/cuda_util.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

namespace gpulease::server::cuda {

namespace {

std::string dims(const std::array<uint32_t, 3>& d) {
  return "(" + std::to_string(d[0]) + "," + std::to_string(d[1]) + "," + std::to_string(d[2]) + ")";
}

Error launch_error(std::string_view kernel, const std::string& what) {
  return make_error(Status::kLaunchFailed, "kernel '" + std::string(kernel) + "': " + what);
}

// CUresult values (cuda.h of CUDA 13.0; numbers are stable across versions).
struct NamedCode {
  int code;
  const char* name;
};
constexpr NamedCode kErrorNames[] = {
    {0, "CUDA_SUCCESS"},
    {1, "CUDA_ERROR_INVALID_VALUE"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY"},
    {3, "CUDA_ERROR_NOT_INITIALIZED"},
    {4, "CUDA_ERROR_DEINITIALIZED"},
    {5, "CUDA_ERROR_PROFILER_DISABLED"},
    {6, "CUDA_ERROR_PROFILER_NOT_INITIALIZED"},
    {7, "CUDA_ERROR_PROFILER_ALREADY_STARTED"},
    {8, "CUDA_ERROR_PROFILER_ALREADY_STOPPED"},
    {34, "CUDA_ERROR_STUB_LIBRARY"},
    {36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE"},
    {100, "CUDA_ERROR_NO_DEVICE"},
    {101, "CUDA_ERROR_INVALID_DEVICE"},
    {102, "CUDA_ERROR_DEVICE_NOT_LICENSED"},
    {200, "CUDA_ERROR_INVALID_IMAGE"},
    {201, "CUDA_ERROR_INVALID_CONTEXT"},
    {202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT"},
    {205, "CUDA_ERROR_MAP_FAILED"},
    {206, "CUDA_ERROR_UNMAP_FAILED"},
    {207, "CUDA_ERROR_ARRAY_IS_MAPPED"},
    {208, "CUDA_ERROR_ALREADY_MAPPED"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
    {210, "CUDA_ERROR_ALREADY_ACQUIRED"},
    {211, "CUDA_ERROR_NOT_MAPPED"},
    {212, "CUDA_ERROR_NOT_MAPPED_AS_ARRAY"},
    {213, "CUDA_ERROR_NOT_MAPPED_AS_POINTER"},
    {214, "CUDA_ERROR_ECC_UNCORRECTABLE"},
    {215, "CUDA_ERROR_UNSUPPORTED_LIMIT"},
    {216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE"},
    {217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"},
    {218, "CUDA_ERROR_INVALID_PTX"},
    {219, "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT"},
    {220, "CUDA_ERROR_NVLINK_UNCORRECTABLE"},
    {221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND"},
    {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"},
    {223, "CUDA_ERROR_JIT_COMPILATION_DISABLED"},
    {224, "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY"},
    {225, "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC"},
    {226, "CUDA_ERROR_CONTAINED"},
    {300, "CUDA_ERROR_INVALID_SOURCE"},
    {301, "CUDA_ERROR_FILE_NOT_FOUND"},
    {302, "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND"},
    {303, "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED"},
    {304, "CUDA_ERROR_OPERATING_SYSTEM"},
    {400, "CUDA_ERROR_INVALID_HANDLE"},
    {401, "CUDA_ERROR_ILLEGAL_STATE"},
    {402, "CUDA_ERROR_LOSSY_QUERY"},
    {500, "CUDA_ERROR_NOT_FOUND"},
    {600, "CUDA_ERROR_NOT_READY"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
    {702, "CUDA_ERROR_LAUNCH_TIMEOUT"},
    {703, "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING"},
    {704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED"},
    {705, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED"},
    {708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE"},
    {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED"},
    {710, "CUDA_ERROR_ASSERT"},
    {711, "CUDA_ERROR_TOO_MANY_PEERS"},
    {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"},
    {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"},
    {714, "CUDA_ERROR_HARDWARE_STACK_ERROR"},
    {715, "CUDA_ERROR_ILLEGAL_INSTRUCTION"},
    {716, "CUDA_ERROR_MISALIGNED_ADDRESS"},
    {717, "CUDA_ERROR_INVALID_ADDRESS_SPACE"},
    {718, "CUDA_ERROR_INVALID_PC"},
    {719, "CUDA_ERROR_LAUNCH_FAILED"},
    {720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE"},
    {721, "CUDA_ERROR_TENSOR_MEMORY_LEAK"},
    {800, "CUDA_ERROR_NOT_PERMITTED"},
    {801, "CUDA_ERROR_NOT_SUPPORTED"},
    {802, "CUDA_ERROR_SYSTEM_NOT_READY"},
    {803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"},
    {804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE"},
    {805, "CUDA_ERROR_MPS_CONNECTION_FAILED"},
    {806, "CUDA_ERROR_MPS_RPC_FAILURE"},
    {807, "CUDA_ERROR_MPS_SERVER_NOT_READY"},
    {808, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED"},
    {809, "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED"},
    {810, "CUDA_ERROR_MPS_CLIENT_TERMINATED"},
    {811, "CUDA_ERROR_CDP_NOT_SUPPORTED"},
    {812, "CUDA_ERROR_CDP_VERSION_MISMATCH"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"},
    {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"},
    {902, "CUDA_ERROR_STREAM_CAPTURE_MERGE"},
    {903, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED"},
    {904, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED"},
    {905, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION"},
    {906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT"},
    {907, "CUDA_ERROR_CAPTURED_EVENT"},
    {908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD"},
    {909, "CUDA_ERROR_TIMEOUT"},
    {910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE"},
    {911, "CUDA_ERROR_EXTERNAL_DEVICE"},
    {912, "CUDA_ERROR_INVALID_CLUSTER_SIZE"},
    {913, "CUDA_ERROR_FUNCTION_NOT_LOADED"},
    {914, "CUDA_ERROR_INVALID_RESOURCE_TYPE"},
    {915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION"},
    {916, "CUDA_ERROR_KEY_ROTATION"},
    {999, "CUDA_ERROR_UNKNOWN"},
};

}  // namespace

Result<void> check_launch_shape(const LaunchLimits& lim, const std::array<uint32_t, 3>& grid,
                                const std::array<uint32_t, 3>& block, uint32_t shared_bytes,
                                std::string_view kernel) {
  static constexpr char kAxis[] = {'x', 'y', 'z'};
  for (int i = 0; i < 3; ++i) {
    if (grid[i] == 0 || grid[i] > lim.max_grid[i]) {
      return launch_error(kernel, std::string("grid.") + kAxis[i] + " = " +
                                      std::to_string(grid[i]) + " is outside [1, " +
                                      std::to_string(lim.max_grid[i]) + "]");
    }
    if (block[i] == 0 || block[i] > lim.max_block[i]) {
      return launch_error(kernel, std::string("block.") + kAxis[i] + " = " +
                                      std::to_string(block[i]) + " is outside [1, " +
                                      std::to_string(lim.max_block[i]) + "]");
    }
  }
  uint64_t threads = uint64_t{block[0]} * block[1] * block[2];
  if (threads > lim.max_threads_per_block) {
    return launch_error(kernel, "block " + dims(block) + " has " + std::to_string(threads) +
                                    " threads; this kernel allows at most " +
                                    std::to_string(lim.max_threads_per_block));
  }
  uint64_t shared = uint64_t{shared_bytes} + lim.static_shared_bytes;
  if (shared > lim.max_shared_per_block) {
    return launch_error(
        kernel, std::to_string(shared_bytes) + " bytes of dynamic shared memory + " +
                    std::to_string(lim.static_shared_bytes) + " static exceed the device's " +
                    std::to_string(lim.max_shared_per_block) + " per block");
  }
  return {};
}

Result<void> check_args(std::span<const ParamInfo> params,
                        const std::vector<std::vector<std::byte>>& args, std::string_view kernel) {
  if (params.size() != args.size()) {
    return launch_error(kernel, "takes " + std::to_string(params.size()) + " parameters, " +
                                    std::to_string(args.size()) + " arguments given");
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].size != args[i].size()) {
      return launch_error(kernel, "parameter " + std::to_string(i) + " is " +
                                      std::to_string(params[i].size) + " bytes, argument is " +
                                      std::to_string(args[i].size()) + " bytes");
    }
  }
  return {};
}

Result<void> check_args_unknown_params(const std::vector<std::vector<std::byte>>& args,
                                       std::string_view kernel) {
  size_t total = 0;
  for (const auto& a : args) {
    if (a.empty()) return launch_error(kernel, "an argument has 0 bytes");
    // Each parameter is aligned to at most 8 bytes in the parameter space.
    total = (total + 7) / 8 * 8 + a.size();
    if (total > kMaxParamBytes) {
      return launch_error(kernel, "arguments exceed the " + std::to_string(kMaxParamBytes) +
                                      "-byte kernel parameter space");
    }
  }
  return {};
}

std::vector<void*> param_pointers(const std::vector<std::vector<std::byte>>& args) {
  std::vector<void*> out;
  out.reserve(args.size());
  // cuLaunchKernel takes void** but only reads through it.
  for (const auto& a : args) out.push_back(const_cast<std::byte*>(a.data()));
  return out;
}

std::string cuda_error_name(int code) {
  for (const auto& e : kErrorNames) {
    if (e.code == code) return e.name;
  }
  return "CUDA_ERROR_UNKNOWN_" + std::to_string(code);
}

bool is_sticky_error(int code) noexcept {
  switch (code) {
    case 4:    // DEINITIALIZED
    case 214:  // ECC_UNCORRECTABLE
    case 220:  // NVLINK_UNCORRECTABLE
    case 226:  // CONTAINED
    case 700:  // ILLEGAL_ADDRESS
    case 702:  // LAUNCH_TIMEOUT
    case 709:  // CONTEXT_IS_DESTROYED
    case 710:  // ASSERT
    case 714:  // HARDWARE_STACK_ERROR
    case 715:  // ILLEGAL_INSTRUCTION
    case 716:  // MISALIGNED_ADDRESS
    case 717:  // INVALID_ADDRESS_SPACE
    case 718:  // INVALID_PC
    case 719:  // LAUNCH_FAILED
    case 721:  // TENSOR_MEMORY_LEAK
    case 911:  // EXTERNAL_DEVICE
    case 999:  // UNKNOWN
      return true;
    default:
      return false;
  }
}

std::string_view jit_log_text(std::span<const char> buf) noexcept {
  size_t n = 0;
  while (n < buf.size() && buf[n] != '\0') ++n;
  std::string_view s(buf.data(), n);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Error load_failure(std::string_view error_name, std::string_view error_log,
                   std::string_view info_log, size_t max_log) {
  std::string msg = "module load failed: " + std::string(error_name);
  auto append = [&](std::string_view label, std::string_view log) {
    if (log.empty()) return;
    msg += "\n";
    msg += label;
    msg += log.substr(0, std::min(log.size(), max_log));
    if (log.size() > max_log) msg += " [log truncated]";
  };
  append("JIT error log: ", error_log);
  append("JIT info log: ", info_log);
  return make_error(Status::kLoadFailed, std::move(msg));
}

std::vector<Chunk> plan_chunks(uint64_t total, uint64_t chunk) {
  std::vector<Chunk> out;
  if (chunk == 0) chunk = total;
  for (uint64_t off = 0; off < total; off += chunk) {
    out.push_back({off, std::min(chunk, total - off)});
  }
  return out;
}

uint32_t exclusive_sm_partition(uint32_t sm_count, uint32_t requested,
                                uint32_t granularity) noexcept {
  if (granularity == 0) granularity = 1;
  uint32_t want = requested != 0 ? requested : sm_count / 4;
  if (want < granularity) want = granularity;
  want = (want + granularity - 1) / granularity * granularity;
  return std::min(want, sm_count);
}

std::string_view image_kind_name(ImageKind k) noexcept {
  switch (k) {
    case ImageKind::kPtx:
      return "ptx";
    case ImageKind::kCubin:
      return "cubin";
    case ImageKind::kFatbin:
      return "fatbin";
  }
  return "unknown";
}

std::vector<std::pair<std::string, VariableSpace>> ptx_variable_spaces(std::string_view ptx) {
  std::vector<std::pair<std::string, VariableSpace>> out;
  // Tokens: runs of characters other than white space and the punctuation
  // that ends a declarator; comments dropped; brace depth tracked so only
  // module scope counts.
  const auto is_ident = [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '$' ||
           ch == '%' || ch == '.';
  };
  size_t i = 0;
  int depth = 0;
  std::vector<std::string_view> stmt;  // tokens of the current module-scope statement
  const auto finish = [&] {
    // ".visible .const .align 4 .b8 coeffs[64]" -> coeffs, kConst: the first
    // name after the last space keyword (directives without a ';', such as
    // .version and .target, may still be in `stmt` before it).
    std::optional<VariableSpace> space;
    size_t at = 0;
    for (size_t k = 0; k < stmt.size(); ++k) {
      if (stmt[k] == ".const" || stmt[k] == ".global") {
        space = stmt[k] == ".const" ? VariableSpace::kConst : VariableSpace::kGlobal;
        at = k + 1;
      }
    }
    if (space) {
      for (size_t k = at; k < stmt.size(); ++k) {
        const std::string_view t = stmt[k];
        if (t.empty() || t[0] == '.' || std::isdigit(static_cast<unsigned char>(t[0])) != 0)
          continue;
        out.emplace_back(std::string(t), *space);
        break;
      }
    }
    stmt.clear();
  };
  while (i < ptx.size()) {
    const char ch = ptx[i];
    if (ch == '/' && i + 1 < ptx.size() && ptx[i + 1] == '/') {
      while (i < ptx.size() && ptx[i] != '\n') ++i;
      continue;
    }
    if (ch == '/' && i + 1 < ptx.size() && ptx[i + 1] == '*') {
      const size_t e = ptx.find("*/", i + 2);
      i = e == std::string_view::npos ? ptx.size() : e + 2;
      continue;
    }
    if (ch == '{') {
      ++depth;
      stmt.clear();
    } else if (ch == '}') {
      if (depth > 0) --depth;
      stmt.clear();
    } else if (depth == 0 && (ch == ';' || ch == '[' || ch == '=' || ch == '<')) {
      // The declarator ends here; the rest of the statement (initialiser)
      // is skipped up to its ';' (braces in it are counted above and below).
      finish();
      if (ch != ';') {
        int d = 0;
        while (i < ptx.size() && !(d == 0 && ptx[i] == ';')) {
          if (ptx[i] == '{') ++d;
          if (ptx[i] == '}' && d > 0) --d;
          ++i;
        }
      }
    } else if (depth == 0 && is_ident(ch)) {
      const size_t b = i;
      while (i < ptx.size() && is_ident(ptx[i])) ++i;
      stmt.push_back(ptx.substr(b, i - b));
      continue;
    } else if (depth == 0 && ch == '(') {
      // A function's parameter list (".param .u64 .ptr .global p"): no
      // module variable is declared in it.
      int d = 0;
      while (i < ptx.size()) {
        if (ptx[i] == '(') ++d;
        if (ptx[i] == ')' && --d == 0) break;
        ++i;
      }
      stmt.clear();
    }
    ++i;
  }
  return out;
}

}  // namespace gpulease::server::cuda
