// The decoded form of a PTX module, as the sim backend's interpreter runs it.
//
// load_ptx() parses PTX text once, at MODULE_LOAD, into this form:
//   - every register, special register and immediate of a kernel is resolved
//     to a slot of the thread's register file (uint64_t per slot; a value of
//     a type narrower than 64 bits is kept zero-extended, predicates are 0/1);
//   - every label is resolved to an instruction index;
//   - every instruction is checked against the supported subset (opcode,
//     modifiers, types, state spaces, operand kinds and register sizes) and
//     becomes one 32-byte Inst whose Op already names the type and space, so
//     the interpreter is a single switch over a flat array.
// Anything outside the subset (docs/PTX_SUBSET.md) is a LOAD_FAILED error
// naming the instruction or directive and its line; arbitrary text never
// crashes or hangs the loader (it is fuzzed: fuzz/fuzz_ptx_loader.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpulease/wire/result.hpp"

namespace gpulease::sim {

using Slot = uint32_t;

// Fixed slots at the start of every kernel's register file.
inline constexpr Slot kSlotZero = 0;     // constant 0 (base of absolute addresses)
inline constexpr Slot kSlotTrue = 1;     // constant 1 (guard of unguarded instructions)
inline constexpr Slot kSlotTid = 2;      // %tid.x, .y, .z
inline constexpr Slot kSlotNtid = 5;     // %ntid.x, .y, .z
inline constexpr Slot kSlotCtaid = 8;    // %ctaid.x, .y, .z
inline constexpr Slot kSlotNctaid = 11;  // %nctaid.x, .y, .z
inline constexpr Slot kSlotLaneid = 14;  // %laneid
inline constexpr Slot kSlotSink = 15;    // written by red.* and `_`; never read
inline constexpr Slot kFirstFreeSlot = 16;

// Generic-address windows (cvta.shared / cvta.local and generic ld/st/atom).
// Sim global addresses live at 0x7f00'0000'0000 and above, so the windows
// never overlap global memory.
inline constexpr uint64_t kSharedWindow = uint64_t{1} << 44;
inline constexpr uint64_t kLocalWindow = uint64_t{2} << 44;
inline constexpr uint64_t kWindowSize = uint64_t{1} << 32;
// Module-scope .global and .const variables: each loaded module has its own
// 4 GiB window at kModuleWindow + tag * kWindowSize (tag: 0..kModuleTags-1,
// a load counter), .global variables from its start and .const variables
// from kConstOffset within it.
inline constexpr uint64_t kModuleWindow = uint64_t{3} << 44;
inline constexpr uint64_t kModuleTags = 4096;
inline constexpr uint64_t kConstOffset = uint64_t{1} << 31;

// Decoded opcodes. Integer ops are width-generic: Inst::mod holds the width
// in bits (1 for predicates, 8/16/32/64) and Inst::imm the width's mask, so
// one handler serves all widths. Float ops are split by precision.
enum class Op : uint16_t {
  kNop,
  kMov,       // d = a (bit copy)
  kPack64,    // d = a | b << w   (mov.b64 d, {a, b}: w = 32; mov.b32: w = 16; w = mod or 32)
  kUnpack64,  // d = a & mask(w), c = a >> w & mask(w) (mov.b64 / mov.b32 {d, c}, a)
  // integer, d = f(a, b[, c]) & mask(mod)
  kAdd,
  kSub,
  kMulLo,
  kMulHiS,
  kMulHiU,
  kMulWideS,
  kMulWideU,
  kMadLo,
  kMadWideS,
  kMadWideU,
  kMadHiS,
  kMadHiU,
  kDivS,
  kDivU,
  kRemS,
  kRemU,
  kMinS,
  kMinU,
  kMaxS,
  kMaxU,
  kAnd,
  kOr,
  kXor,
  kNot,
  kCnot,
  kNeg,
  kAbs,
  kShl,
  kShrU,
  kShrS,
  kPopc,
  kClz,
  kBrev,
  kSelp,  // d = c ? a : b
  // bit fields and bytes (mod = width unless noted)
  kBfind,  // d = position of the most significant non-sign bit of a (~0u32 if none);
           // mod = width | 0x80 signed; c = 1: .shiftamt (width - 1 - position)
  kFns,    // d = position of the c-th (s32; < 0: downwards) set bit of a from bit b, ~0u32 if none
  kBfe,    // d = bit field of a at b (pos), c (len); mod = width | 0x80 signed
  kBfi,    // d = b with a inserted at c (pos), len in slot imm
  kShf,    // d = funnel shift of b:a by c; mod = 0 l.wrap, 1 l.clamp, 2 r.wrap, 3 r.clamp
  kPrmt,   // d = bytes of b:a selected by c
  kLop3,   // d = the 3-input function imm (a lookup table) of a, b, c, bit by bit
  kSad,    // d = c + |a - b|; mod = width | 0x80 signed
  kDp4a,   // d = c + dot(bytes a, bytes b); mod bit 0: a signed, bit 1: b signed
  kDp2a,   // d = c + dot(halves a, 2 bytes of b); mod bits 0, 1 as kDp4a, bit 2: .hi
  // carry chains: the carry flag lives in slot imm; neg bit 1: add the carry
  // in, bit 2: write the carry out, bit 3: subtract (the flag is a borrow)
  kAddC,      // d = a +/- b (+/- CC); mod = width
  kMadC,      // d = lo/hi(a * b) + c (+ CC); mod = width | 0x80 hi | 0x40 signed
  kCopysign,  // d = b with the sign of a; mod = width
  // comparisons: d = cmp(a, b) [boolop c]; mod = width; imm = Cmp | BoolOp << 8 | (c negated) << 10
  kSetpS,
  kSetpU,
  kSetpF32,
  kSetpF64,
  // f32 (Inst::mod: kFlagFtz | kFlagSat)
  kAddF32,
  kSubF32,
  kMulF32,
  kFmaF32,
  kDivF32,
  kMinF32,
  kMaxF32,
  kNegF32,
  kAbsF32,
  kSqrtF32,
  kRcpF32,
  kRsqrtF32,
  kEx2F32,
  kLg2F32,
  kSinF32,
  kCosF32,
  kTanhF32,
  // f64
  kAddF64,
  kSubF64,
  kMulF64,
  kFmaF64,
  kDivF64,
  kMinF64,
  kMaxF64,
  kNegF64,
  kAbsF64,
  kSqrtF64,
  kRcpF64,
  kRsqrtF64,
  // f32/f64 arithmetic with directed rounding (.rz/.rm/.rp), exact: imm =
  // 0 add, 1 sub, 2 mul, 3 fma, 4 div, 5 sqrt, 6 rcp | 256 (f64);
  // mod = kFlagFtz | kFlagSat | mode << 4 (1 rz, 2 rm, 3 rp)
  kFDir,
  // f16 / bf16, exact: imm = sub-op (0 add, 1 sub, 2 mul, 3 fma, 4 neg, 5 abs, 6 min, 7 max,
  // 8 setp (Cmp at bits 16..23), 9 f32 -> half, 10 f64 -> half, 11 half -> f32,
  // 12 half -> f64, 13 integer (Ty at bits 16..23) -> half, 14 half -> integer (Ty at
  // bits 16..23, Rnd at 24..27), 15 two f32 (a upper, b lower) -> x2, 16 set (Cmp at 16..23,
  // result kind at kHalfSetShift: HalfSet), 17 round to an integral value (Rnd at 24..27),
  // 18 tanh.approx, 19 ex2.approx) | (0 f16, 1 bf16) << 8 | x2 << 10 | rounding (0 rn, 1 rz,
  // 2 rm, 3 rp) << 12 | the kHalf* flags below (bits 32 and up)
  kHalf,
  // conversions
  kCvtInt,  // int -> int: extend a from mod bits (sign-extend when c == 1), then & imm
  kCvt,     // everything else: b = source Ty, c = destination Ty, mod = Rnd | flags << 4
  // memory: address = a + imm; Inst::mod = access size log2 | kLdSigned | dst reg size log2 << 4
  kLdGlobal,
  kLdShared,
  kLdLocal,
  kLdParam,
  kLdGeneric,
  kStGlobal,
  kStShared,
  kStLocal,
  kStGeneric,  // value in b
  kLdVec,
  kStVec,  // c = index into Kernel::vec_slots, b = space, Inst::mod as above + count << 6
  kAtom,   // d = atom(op, [a + imm], b[, c]); Inst::mod = AtomOp | type << 4; Inst::neg>>1 = space
  // wmma (warp-collective: wait for the whole warp; d = membermask slot).
  // Inst::neg bits 1..2: shape (0 m16n16k16, 1 m32n8k16, 2 m8n32k16); A is M x
  // K, B K x N, C and D M x N. Fragment registers are Kernel::vec_slots from
  // index c. Fragment layout (the sim's own; wmma leaves it unspecified):
  // element (row, col) of a matrix with `cols` columns is e = row * cols +
  // col; a c/d fragment (256 elements) holds e = lane * 8 + j in f32 register
  // j, or e = lane * 8 + 2j (low half) and 2j + 1 (high) in f16x2 register j;
  // an a/b fragment of R registers (two f16/bf16 each) holds e = (lane * 2R
  // + 2j + h) mod (the matrix's elements): f16 fragments (R = 8) hold copies
  // where the matrix has fewer than 512 elements.
  kWmmaLoad,   // fragment = [a + imm] with stride b (elements); mod = matrix (0 a, 1 b, 2 c)
               // | 4 col-major | 8 f32 | space << 4 | 0x80 bf16
  kWmmaStore,  // [a + imm] = fragment d, as kWmmaLoad (matrix 2)
  kWmmaMma,    // d = a * b + c, rounded once; slots a, b, c, d; mod = 1 a col | 2 b col |
               // 4 d f32 | 8 c f32 | 16 bf16 inputs
  kLea,        // d = a + imm (64-bit): the source address of a kCpAsync
  // cp.async (sm_80), done at once (results are defined only after the wait, so
  // the copy may complete immediately; commit_group / wait_group are no-ops):
  // shared [a + imm] = cp bytes from global [b], the bytes past the source
  // size zero-filled. mod = cp-size (4, 8, 16) | 0x80: c is the ignore-src
  // predicate (all zeros when true), else c is the source size in bytes.
  kCpAsync,
  // warp-synchronous; every one waits until the lanes of its membermask
  // (operand slot named below) that have not exited arrive at it
  kShfl,        // d = a of lane j (b: lane/offset, c: clamp|segmask); mod = mode (0 up, 1 down,
                // 2 bfly, 3 idx); imm = membermask slot | predicate destination slot << 32
  kVote,        // d = vote(a); mod = 0 all, 1 any, 2 uni, 3 ballot | 4 (a negated); b = membermask
  kMatch,       // d = lanes with a equal; mod = 0 any, 1 all; b = membermask; c = predicate dest
  kRedux,       // d = reduce(a) over the lanes; mod = 0 add, 1 min, 2 max, 3 and, 4 or, 5 xor
                // | 8 (signed); b = membermask
  kActiveMask,  // d = the lanes executing this instruction together
  kWarpSync,    // bar.warp.sync a: waits only
  kTrap,        // trap / brkpt / call __assertfail: the launch faults (mod = 0, 1, 2)
  kLaneMask,    // d = %lanemask_{eq,le,lt,ge,gt} of the lane: mod = 0 eq, 1 le, 2 lt, 3 ge, 4 gt
  kClock,       // d = a clock: mod = 0 %clock, 1 %clock_hi, 2 %clock64 (nanoseconds of a
                // steady clock: monotonic, advancing), 3 %globaltimer, 4 _lo, 5 _hi (ns, system)
  // control
  kBra,     // pc = imm; mod & kBraSpin: the loop it closes has atomics or volatile loads
  kBar,     // bar.sync / barrier.sync: wait for the block's other threads; mod != 0 (bar.red,
            // followed by kBarRed): also reduce predicate a over the arriving threads
  kBarRed,  // d = that reduction, after the barrier opened: mod = 1 popc (u32), 2 and, 3 or
  kRet,     // ret / exit: the thread is done
  // device functions (imm = index into Kernel::calls)
  kCall,     // copy the arguments into the callee's parameters, save the return pc, jump
  kCallRet,  // (after kCall, where the callee returns) copy the return values back
  kRetFunc,  // return from a device function: pc = slot a
};

// kHalf flags (Inst::imm bits 32 and up). setp (8) and set (16) combine
// their comparison with predicate c by the BoolOp at kHalfBoolShift (c
// negated: kHalfCNeg); kHalfUpper makes setp compare the upper halves.
inline constexpr int64_t kHalfSat = int64_t{1} << 32;   // clamp to [0, 1], NaN -> +0
inline constexpr int64_t kHalfRelu = int64_t{1} << 33;  // negative (and -0) -> +0, NaN -> canonical
inline constexpr int64_t kHalfFtz = int64_t{1} << 34;   // subnormal inputs and results -> signed 0
inline constexpr int64_t kHalfNaNs = int64_t{1} << 35;  // min/max .NaN: a NaN operand -> NaN
inline constexpr int kHalfBoolShift = 36;               // 2 bits: BoolOp
inline constexpr int64_t kHalfCNeg = int64_t{1} << 38;
inline constexpr int64_t kHalfUpper = int64_t{1} << 39;
inline constexpr int kHalfSetShift = 40;  // 3 bits: HalfSet
// What set.* writes for true (false is 0): 1.0 of the half format (per half
// of an x2), 0xffff per half, 0xffffffff, 1.0f, 0xffff (16-bit integer dtype).
enum class HalfSet : uint8_t { kOne, kMask16x2, kMask32, kOneF32, kMask16 };

inline constexpr uint8_t kFlagFtz = 1;
inline constexpr uint8_t kFlagSat = 2;
inline constexpr uint8_t kLdSigned = 4;
inline constexpr uint8_t kBraSpin = 1;  // on a backward kBra

// State spaces of memory operands.
enum class Space : uint8_t { kGlobal = 0, kShared = 1, kLocal = 2, kParam = 3, kGeneric = 4 };

// Comparison kinds of setp.
enum class Cmp : uint8_t {
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,  // ordered for floats; signedness from the Op
  kEqu,
  kNeu,
  kLtu,
  kLeu,
  kGtu,
  kGeu,  // floats, unordered (true if either is NaN)
  kNum,
  kNan,
};
enum class BoolOp : uint8_t { kNone, kAnd, kOr, kXor };

// kAddHalf: atom/red .add.noftz on a 16-bit format, rounded to nearest even
// (Ty in the descriptor: kU16 f16, kS16 bf16, kU32 f16x2, kS32 bf16x2).
enum class AtomOp : uint8_t {
  kAdd,
  kMin,
  kMax,
  kExch,
  kCas,
  kAnd,
  kOr,
  kXor,
  kInc,
  kDec,
  kAddHalf
};
// Scalar types, as they travel in kCvt / kAtom descriptors.
enum class Ty : uint8_t { kU8, kU16, kU32, kU64, kS8, kS16, kS32, kS64, kF32, kF64, kPred };
// Rounding of kCvt: none, rn, rz, rm, rp (float results) or rni, rzi, rmi, rpi.
enum class Rnd : uint8_t { kNone, kRn, kRz, kRm, kRp, kRni, kRzi, kRmi, kRpi };

struct Inst {
  Op op = Op::kNop;
  uint8_t neg = 0;  // bit 0: guard is negated (@!p); bits 1..3: space of kAtom
  uint8_t mod = 0;  // op-specific (see Op)
  Slot guard = kSlotTrue;
  Slot d = kSlotSink;
  Slot a = kSlotZero;
  Slot b = kSlotZero;
  Slot c = kSlotZero;
  int64_t imm = 0;  // mask, address offset, branch target, or op-specific
};
static_assert(sizeof(Inst) == 32, "Inst is meant to stay compact");

struct Param {
  std::string name;
  uint32_t offset = 0;  // in the launch's parameter buffer
  uint32_t size = 0;
  uint32_t align = 1;
};

// A call of a device function: its code is part of the kernel's; arguments
// and return values are bytes of the thread's local memory.
struct CallSite {
  struct Copy {
    uint32_t dst = 0, src = 0, size = 0;  // local memory offsets
  };
  uint32_t target = 0;     // the callee's first instruction
  Slot ret_slot = 0;       // where the callee keeps its return address
  std::vector<Copy> args;  // caller's .param -> callee's parameter
  std::vector<Copy> rets;  // callee's return value -> caller's .param
};

struct Kernel {
  std::string name;
  std::vector<Param> params;
  uint32_t param_bytes = 0;
  std::vector<Inst> code;
  std::vector<uint32_t> lines;  // source line of each instruction
  std::vector<Slot> vec_slots;  // register lists of vector ld/st
  std::vector<CallSite> calls;
  uint32_t slots = 0;  // size of each thread's register file
  // Every thread's register file starts zeroed except these slots (the
  // constant 1 of kSlotTrue, immediates, symbol addresses), sorted by slot,
  // so a kernel's decoded size follows what it uses, not what it declares.
  std::vector<std::pair<Slot, uint64_t>> init_values;
  uint32_t static_shared_bytes = 0;    // static .shared, laid out from shared offset 0
  uint32_t dynamic_shared_offset = 0;  // where extern .shared arrays start
  uint32_t local_bytes = 0;            // .local per thread
  bool has_barrier = false;
  uint32_t num_slots() const { return slots; }
  // The value slot `s` holds when a thread starts (0 for most).
  uint64_t initial_value(Slot s) const;
};

// A module-scope .global or .const variable.
struct GlobalVar {
  std::string name;
  uint64_t address = 0;  // sim address (generic and global)
  uint64_t size = 0;
  bool is_const = false;
};

struct Module {
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<Kernel> kernels;
  const Kernel* find(std::string_view name) const;

  // Module-scope variables, by name (what cuModuleGetGlobal looks up: a
  // "module globals" op can hand out address + size and read/write
  // global_data()). Their storage belongs to this loaded module: it starts
  // with the initialisers, launches of the module read and write it, and it
  // lives as long as the module.
  std::vector<GlobalVar> globals;
  const GlobalVar* find_global(std::string_view name) const;
  uint64_t window_base = 0;   // kModuleWindow + tag * kWindowSize
  uint64_t global_bytes = 0;  // .global storage at window_base
  uint64_t const_bytes = 0;   // .const storage at window_base + kConstOffset
  // Host storage: .global bytes, then .const bytes. Kernels access it with
  // relaxed atomics, as they do context memory.
  std::unique_ptr<std::byte[]> storage;
  // Host pointer for [addr, addr + len) inside this module's variables, or
  // nullptr; `write` excludes .const.
  std::byte* variable_bytes(uint64_t addr, uint64_t len, bool write) const;
  // Host memory the decoded module occupies, approximately (code, line
  // table, constants, names): what a quota could charge for it.
  size_t decoded_bytes() const;
};

// Caps that keep a hostile module from exhausting the node. The defaults are
// far above what nvcc emits for real kernels.
struct LoadLimits {
  size_t max_text_bytes = 64u << 20;
  uint32_t max_kernels = 1024;
  uint32_t max_instructions = 1u << 20;         // per kernel
  uint32_t max_module_instructions = 1u << 21;  // all kernels together
  uint32_t max_slots = 1u << 16;                // register file slots per kernel
  uint32_t max_module_slots = 1u << 20;         // all kernels' slots together
  uint32_t max_scope_depth = 64;                // nesting of { } blocks in a kernel body
  uint32_t max_params = 4096;
  uint32_t max_param_bytes = 32764;       // CUDA 12.1+ limit on kernel parameters
  uint32_t max_shared_bytes = 48u << 10;  // static .shared per kernel
  uint32_t max_local_bytes = 512u << 10;  // .local per thread
  uint64_t max_global_bytes = 64u << 20;  // module-scope .global and .const together
};

// Parses and checks a PTX module. LOAD_FAILED with "line N: ..." on anything
// malformed or outside the supported subset.
[[nodiscard]] Result<std::shared_ptr<const Module>> load_ptx(std::string_view text,
                                                             const LoadLimits& limits = {});

}  // namespace gpulease::sim
