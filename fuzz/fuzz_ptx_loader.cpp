// libFuzzer target: arbitrary text into the sim backend's PTX loader. The
// loader must return a Result (never crash, hang, or allocate past its
// limits); a module it accepts must be internally consistent.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gpulease/sim/ptx_module.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gpulease::sim;
  LoadLimits limits;
  limits.max_text_bytes = 1 << 20;
  auto r = load_ptx(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!r.ok()) return 0;
  for (const Kernel& k : (*r)->kernels) {
    // Every slot and branch target the interpreter will use is in range.
    const uint32_t slots = k.num_slots();
    if (k.code.empty() || k.code.size() != k.lines.size()) __builtin_trap();
    for (const Inst& in : k.code) {
      if (in.guard >= slots || in.d >= slots || in.a >= slots) __builtin_trap();
      const bool b_slot = in.op != Op::kCvt && in.op != Op::kLdVec && in.op != Op::kStVec;
      const bool c_slot =
          in.op != Op::kCvt && in.op != Op::kLdVec && in.op != Op::kStVec && in.op != Op::kCvtInt;
      if ((b_slot && in.b >= slots) || (c_slot && in.c >= slots)) __builtin_trap();
      if (in.op == Op::kBra && (in.imm < 0 || static_cast<uint64_t>(in.imm) >= k.code.size()))
        __builtin_trap();
      // Slots carried in imm, and call sites.
      const uint64_t imm = static_cast<uint64_t>(in.imm);
      if (in.op == Op::kShfl && ((imm & 0xffffffffu) >= slots || (imm >> 32) >= slots))
        __builtin_trap();
      if ((in.op == Op::kBfi || in.op == Op::kAddC || in.op == Op::kMadC) && imm >= slots)
        __builtin_trap();
      if ((in.op == Op::kCall || in.op == Op::kCallRet) && imm >= k.calls.size()) __builtin_trap();
    }
    for (const CallSite& c : k.calls) {
      if (c.target >= k.code.size() || c.ret_slot >= slots) __builtin_trap();
      for (const auto* v : {&c.args, &c.rets})
        for (const CallSite::Copy& cp : *v)
          if (uint64_t{cp.dst} + cp.size > k.local_bytes ||
              uint64_t{cp.src} + cp.size > k.local_bytes)
            __builtin_trap();
    }
  }
  return 0;
}
