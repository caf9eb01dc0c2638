// libFuzzer target: arbitrary text into the sim backend's PTX loader and, when
// it loads, through the interpreter: every kernel of the module runs on a
// small grid (1-2 blocks of up to 64 threads, so warps diverge and partial
// warps exist) with zeroed parameters, one small global buffer and an
// instruction budget, once whole and once in time slices. Whatever the code
// does, the interpreter must finish (budget), fault cleanly or complete,
// without touching memory outside what it owns (ASan/UBSan in fuzz builds).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "gpulease/sim/interpreter.hpp"
#include "gpulease/sim/ptx_module.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpulease::sim;
  LoadLimits limits;
  limits.max_text_bytes = 1 << 20;
  limits.max_global_bytes = 1 << 20;
  limits.max_local_bytes = 1 << 16;
  auto r = load_ptx(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!r.ok()) return 0;
  const std::shared_ptr<const Module> mod = *r;
  // One 4 KiB global buffer; parameters point at it where they are 8 bytes.
  std::shared_ptr<std::byte> buf(new std::byte[4096](), std::default_delete<std::byte[]>());
  auto mem = std::make_shared<GlobalMemory>();
  const uint64_t base = 0x7f0000000000ull;
  mem->ranges.push_back(GlobalRange{base, 4096, buf.get()});
  mem->owners.push_back(buf);
  LaunchLimits ll;
  ll.max_block_state_bytes = 8u << 20;
  size_t runs = 0;
  for (const Kernel& k : mod->kernels) {
    if (runs++ >= 4) break;
    std::vector<std::byte> params(k.param_bytes);
    for (const Param& p : k.params)
      if (p.size == 8) std::memcpy(params.data() + p.offset, &base, 8);
    const uint32_t threads = 1 + static_cast<uint32_t>(size % 64);
    const std::array<uint32_t, 3> grid{1 + static_cast<uint32_t>(size % 2), 1, 1};
    const std::array<uint32_t, 3> block{threads, 1, 1};
    if (!validate_launch(k, grid, block, 64, ll).ok()) continue;
    {
      Launch whole(mod, &k, grid, block, 64, params, mem, 200'000);
      whole.run_blocks(0, whole.total_blocks());
      if (whole.instructions() > 200'000 + 64 * 4096) __builtin_trap();
    }
    {
      Launch sliced(mod, &k, grid, block, 64, params, mem, 200'000);
      for (int i = 0; i < 100'000 && !sliced.run_slice(1 + size % 997); ++i) {
      }
    }
  }
  return 0;
}
