// The PTX interpreter: a switch over the decoded instruction array, one
// thread at a time (see interpreter.hpp for the execution model).
//
// Float semantics: f32 math is done in float and f64 in double with the
// host's default round-to-nearest-even, which matches PTX .rn bit for bit
// (std::fma for fma/mad, IEEE division and square root). f32 NaN results are
// replaced by the canonical NaN 0x7fffffff, as the GPU produces. Approximate
// instructions (ex2/lg2/sin/cos/tanh/rsqrt .approx) use the libm function,
// which is at least as accurate as the PTX-documented bound.
#include "gpulease/sim/interpreter.hpp"

#include <algorithm>
#include <bit>
#include <cfenv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace gpulease::sim {

RangeTable::RangeTable(size_t capacity)
    : capacity_(capacity),
      chunks_(new std::unique_ptr<GlobalRange[]>[(capacity + kChunk - 1) / kChunk]) {}

void RangeTable::append(const GlobalRange& r, std::shared_ptr<std::byte> owner) {
  if (size_ % kChunk == 0) chunks_[size_ / kChunk].reset(new GlobalRange[kChunk]);
  chunks_[size_ / kChunk][size_ % kChunk] = r;
  ++size_;
  owners_.push_back(std::move(owner));
}

const GlobalRange* GlobalMemory::find(uint64_t addr, uint64_t len) const {
  if (table) {
    // The last entry with base <= addr.
    size_t lo = 0, hi = table_count;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if ((*table)[mid].base <= addr)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == 0) return nullptr;
    const GlobalRange& r = (*table)[lo - 1];
    const uint64_t off = addr - r.base;
    if (off >= r.size || len > r.size - off) return nullptr;
    return &r;
  }
  auto it = std::upper_bound(ranges.begin(), ranges.end(), addr,
                             [](uint64_t a, const GlobalRange& r) { return a < r.base; });
  if (it == ranges.begin()) return nullptr;
  --it;
  const uint64_t off = addr - it->base;
  if (off >= it->size || len > it->size - off) return nullptr;
  return &*it;
}

Launch::Launch(std::shared_ptr<const Module> module, const Kernel* kernel,
               std::array<uint32_t, 3> grid, std::array<uint32_t, 3> block, uint32_t dynamic_shared,
               std::vector<std::byte> params, std::shared_ptr<const GlobalMemory> memory,
               uint64_t budget)
    : module_(std::move(module)),
      kernel_(kernel),
      grid_(grid),
      block_(block),
      dynamic_shared_(dynamic_shared),
      params_(std::move(params)),
      memory_(std::move(memory)),
      budget_(budget),
      total_blocks_(uint64_t{grid[0]} * grid[1] * grid[2]) {}

std::string Launch::fault() const {
  std::lock_guard<std::mutex> lk(fault_mu_);
  return fault_;
}

void Launch::set_fault(std::string msg) {
  std::lock_guard<std::mutex> lk(fault_mu_);
  if (fault_.empty()) fault_ = std::move(msg);
  stop_.store(true, std::memory_order_relaxed);
}

uint64_t Launch::claim_fuel(uint64_t want) {
  if (stop_.load(std::memory_order_relaxed)) return 0;
  const uint64_t prev = claimed_.fetch_add(want, std::memory_order_relaxed);
  if (prev >= budget_) return 0;
  return std::min(want, budget_ - prev);
}

Result<void> validate_launch(const Kernel& k, std::array<uint32_t, 3> grid,
                             std::array<uint32_t, 3> block, uint32_t dynamic_shared,
                             const LaunchLimits& limits) {
  static const char* kAxis[] = {"x", "y", "z"};
  for (int i = 0; i < 3; ++i) {
    if (grid[i] == 0 || grid[i] > limits.max_grid[i])
      return make_error(Status::kLaunchFailed, std::string("grid.") + kAxis[i] + " = " +
                                                   std::to_string(grid[i]) + " is outside 1.." +
                                                   std::to_string(limits.max_grid[i]));
    if (block[i] == 0 || block[i] > limits.max_block[i])
      return make_error(Status::kLaunchFailed, std::string("block.") + kAxis[i] + " = " +
                                                   std::to_string(block[i]) + " is outside 1.." +
                                                   std::to_string(limits.max_block[i]));
  }
  const uint64_t threads = uint64_t{block[0]} * block[1] * block[2];
  if (threads > limits.max_threads_per_block)
    return make_error(Status::kLaunchFailed, "block of " + std::to_string(threads) +
                                                 " threads exceeds " +
                                                 std::to_string(limits.max_threads_per_block));
  // What a block really allocates: the dynamic region starts at
  // dynamic_shared_offset (the static arrays rounded up to its alignment).
  const uint64_t shared =
      std::max<uint64_t>(uint64_t{k.dynamic_shared_offset} + dynamic_shared, k.static_shared_bytes);
  if (shared > limits.max_shared_per_block)
    return make_error(Status::kLaunchFailed,
                      "shared memory (" + std::to_string(k.static_shared_bytes) + " static + " +
                          std::to_string(dynamic_shared) + " dynamic bytes at offset " +
                          std::to_string(k.dynamic_shared_offset) + ") exceeds " +
                          std::to_string(limits.max_shared_per_block));
  const uint64_t per_thread = uint64_t{k.num_slots()} * 8 + k.local_bytes;
  if (per_thread > limits.max_thread_state_bytes)
    return make_error(Status::kLaunchFailed,
                      "kernel " + k.name + " needs " + std::to_string(per_thread) +
                          " bytes of registers and local memory per thread (limit " +
                          std::to_string(limits.max_thread_state_bytes) + ")");
  const uint64_t state = per_thread * threads;  // every thread of a block is resident
  if (state > limits.max_block_state_bytes)
    return make_error(Status::kLaunchFailed,
                      "kernel " + k.name + " needs " + std::to_string(state) +
                          " bytes of registers and local memory per block (limit " +
                          std::to_string(limits.max_block_state_bytes) + ")");
  return {};
}

namespace {

inline float f32(uint64_t v) {
  return std::bit_cast<float>(static_cast<uint32_t>(v));
}
inline double f64(uint64_t v) {
  return std::bit_cast<double>(v);
}
inline uint64_t bits(float f) {
  if (f != f) return 0x7fffffffu;  // canonical NaN
  return std::bit_cast<uint32_t>(f);
}
inline uint64_t bits(double d) {
  return std::bit_cast<uint64_t>(d);
}

inline float ftz(float f) {
  return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0f, f) : f;
}
inline double ftz64(double f) {
  return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0, f) : f;
}
inline float sat(float f) {
  return f > 0.0f ? (f < 1.0f ? f : 1.0f) : 0.0f;
}  // NaN -> 0

inline int64_t sext(uint64_t v, unsigned w) {
  const unsigned s = 64 - w;
  return static_cast<int64_t>(v << s) >> s;
}

template <typename F>
F pmin(F a, F b) {
  if (a != a) return b != b ? std::numeric_limits<F>::quiet_NaN() : b;
  if (b != b) return a;
  if (a == b) return std::signbit(a) ? a : b;
  return a < b ? a : b;
}
template <typename F>
F pmax(F a, F b) {
  if (a != a) return b != b ? std::numeric_limits<F>::quiet_NaN() : b;
  if (b != b) return a;
  if (a == b) return std::signbit(a) ? b : a;
  return a > b ? a : b;
}

template <typename F>
bool fcmp(Cmp c, F a, F b) {
  const bool un = a != a || b != b;
  switch (c) {
    case Cmp::kEq:
      return !un && a == b;
    case Cmp::kNe:
      return !un && a != b;
    case Cmp::kLt:
      return !un && a < b;
    case Cmp::kLe:
      return !un && a <= b;
    case Cmp::kGt:
      return !un && a > b;
    case Cmp::kGe:
      return !un && a >= b;
    case Cmp::kEqu:
      return un || a == b;
    case Cmp::kNeu:
      return un || a != b;
    case Cmp::kLtu:
      return un || a < b;
    case Cmp::kLeu:
      return un || a <= b;
    case Cmp::kGtu:
      return un || a > b;
    case Cmp::kGeu:
      return un || a >= b;
    case Cmp::kNum:
      return !un;
    case Cmp::kNan:
      return un;
  }
  return false;
}
template <typename I>
bool icmp(Cmp c, I a, I b) {
  switch (c) {
    case Cmp::kEq:
      return a == b;
    case Cmp::kNe:
      return a != b;
    case Cmp::kLt:
      return a < b;
    case Cmp::kLe:
      return a <= b;
    case Cmp::kGt:
      return a > b;
    case Cmp::kGe:
      return a >= b;
    default:
      return false;
  }
}
inline uint64_t combine(uint64_t p, int64_t imm, uint64_t c) {
  const auto bop = static_cast<BoolOp>((imm >> 8) & 3);
  if (bop == BoolOp::kNone) return p;
  c = (c ^ static_cast<uint64_t>((imm >> 10) & 1)) & 1;
  switch (bop) {
    case BoolOp::kAnd:
      return p & c;
    case BoolOp::kOr:
      return p | c;
    case BoolOp::kXor:
      return p ^ c;
    case BoolOp::kNone:
      break;
  }
  return p;
}

unsigned ty_bits(Ty t) {
  switch (t) {
    case Ty::kU8:
    case Ty::kS8:
      return 8;
    case Ty::kU16:
    case Ty::kS16:
      return 16;
    case Ty::kU32:
    case Ty::kS32:
    case Ty::kF32:
      return 32;
    default:
      return 64;
  }
}
bool ty_signed(Ty t) {
  return t == Ty::kS8 || t == Ty::kS16 || t == Ty::kS32 || t == Ty::kS64;
}
bool ty_float(Ty t) {
  return t == Ty::kF32 || t == Ty::kF64;
}
uint64_t ty_mask(Ty t) {
  const unsigned b = ty_bits(t);
  return b >= 64 ? ~uint64_t{0} : (uint64_t{1} << b) - 1;
}

// The integer rounding modes of cvt (.rni/.rzi/.rmi/.rpi); other modes leave
// the value as it is.
template <typename F>
F round_to_integer(F v, Rnd r) {
  switch (r) {
    case Rnd::kRni:
      return std::nearbyint(v);
    case Rnd::kRzi:
      return std::trunc(v);
    case Rnd::kRmi:
      return std::floor(v);
    case Rnd::kRpi:
      return std::ceil(v);
    default:
      return v;
  }
}

// Float -> integer per PTX: round as requested, NaN -> 0, saturate to range.
uint64_t float_to_int(double v, Rnd r, Ty dt) {
  v = round_to_integer(v, r);
  if (v != v) return 0;
  const unsigned b = ty_bits(dt);
  if (ty_signed(dt)) {
    const double lo = -std::ldexp(1.0, static_cast<int>(b) - 1);
    const double hi = std::ldexp(1.0, static_cast<int>(b) - 1);  // exclusive
    int64_t i;
    if (v <= lo)
      i = static_cast<int64_t>(-(static_cast<__int128>(1) << (b - 1)));
    else if (v >= hi)
      i = static_cast<int64_t>((static_cast<__int128>(1) << (b - 1)) - 1);
    else
      i = static_cast<int64_t>(v);
    return static_cast<uint64_t>(i) & ty_mask(dt);
  }
  const double hi = std::ldexp(1.0, static_cast<int>(b));
  if (v <= 0) return 0;
  if (v >= hi) return ty_mask(dt);
  return static_cast<uint64_t>(v);
}

uint64_t convert(uint64_t a, Ty st, Ty dt, Rnd r, uint8_t flags) {
  const bool fz = flags & kFlagFtz, st_ = flags & kFlagSat;
  if (ty_float(st)) {
    double v;
    float fv = 0;
    if (st == Ty::kF32) {
      fv = f32(a);
      if (fz) fv = ftz(fv);
      v = fv;
    } else {
      v = f64(a);
    }
    if (!ty_float(dt)) return float_to_int(v, r, dt);
    if (dt == Ty::kF32) {
      float out;
      if (st == Ty::kF32) {
        out = fv;
        out = round_to_integer(out, r);
      } else {
        out = static_cast<float>(v);  // rn
      }
      if (fz) out = ftz(out);
      if (st_) out = sat(out);
      return bits(out);
    }
    double out = v;
    if (st == Ty::kF64) {
      out = round_to_integer(out, r);
    }
    if (st_) out = out > 0.0 ? (out < 1.0 ? out : 1.0) : 0.0;
    return bits(out);
  }
  // Integer source.
  const unsigned sb = ty_bits(st);
  const bool ss = ty_signed(st);
  const uint64_t ua = a & ty_mask(st);
  const int64_t sa = sext(ua, sb);
  if (dt == Ty::kF32) {
    float out = ss ? static_cast<float>(sa) : static_cast<float>(ua);
    if (st_) out = sat(out);
    return bits(out);
  }
  if (dt == Ty::kF64) {
    double out = ss ? static_cast<double>(sa) : static_cast<double>(ua);
    if (st_) out = out > 0.0 ? (out < 1.0 ? out : 1.0) : 0.0;
    return bits(out);
  }
  // int -> int with .sat: clamp to the destination's range.
  const __int128 v = ss ? static_cast<__int128>(sa) : static_cast<__int128>(ua);
  const unsigned db = ty_bits(dt);
  __int128 lo, hi;
  if (ty_signed(dt)) {
    lo = -(static_cast<__int128>(1) << (db - 1));
    hi = (static_cast<__int128>(1) << (db - 1)) - 1;
  } else {
    lo = 0;
    hi = (static_cast<__int128>(1) << db) - 1;
  }
  const __int128 c = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<uint64_t>(c) & ty_mask(dt);
}

uint64_t half_op(int64_t imm, uint64_t a, uint64_t b, uint64_t c);

uint64_t atom_apply(AtomOp op, Ty t, uint64_t old, uint64_t b, uint64_t c) {
  const unsigned w = ty_bits(t);
  const uint64_t m = ty_mask(t);
  switch (op) {
    case AtomOp::kAdd:
      if (t == Ty::kF32) return bits(f32(old) + f32(b));
      if (t == Ty::kF64) return bits(f64(old) + f64(b));
      return (old + b) & m;
    case AtomOp::kMin:
      if (ty_signed(t)) return sext(old, w) <= sext(b, w) ? old : b;
      return old <= b ? old : b;
    case AtomOp::kMax:
      if (ty_signed(t)) return sext(old, w) >= sext(b, w) ? old : b;
      return old >= b ? old : b;
    case AtomOp::kExch:
      return b;
    case AtomOp::kCas:
      return old == b ? c : old;
    case AtomOp::kAnd:
      return old & b;
    case AtomOp::kOr:
      return old | b;
    case AtomOp::kXor:
      return old ^ b;
    case AtomOp::kInc:
      return old >= b ? 0 : (old + 1) & m;
    case AtomOp::kDec:
      return (old == 0 || old > b) ? b : old - 1;
    case AtomOp::kAddHalf:  // add.rn on f16 / bf16 (x2: each half)
      return half_op((t == Ty::kS16 || t == Ty::kS32 ? 1 << 8 : 0) |
                         (t == Ty::kU32 || t == Ty::kS32 ? 1 << 10 : 0),
                     old, b, 0);
  }
  return old;
}

// ---- f16 / bf16, computed exactly: every operation's exact result is
// s + e with s a double and e its (tiny) rounding error, and is rounded once
// to the 16-bit format in the requested mode.
struct HalfFormat {
  int p;     // significand bits, with the implicit one
  int emin;  // exponent of the smallest normal
  int emax;  // exponent of the largest finite
  int bias;
};
constexpr HalfFormat kF16{11, -14, 15, 15};
constexpr HalfFormat kBF16{8, -126, 127, 127};
constexpr uint32_t kHalfNaN = 0x7fff;  // canonical NaN of both formats

double half_decode(uint32_t h, const HalfFormat& f) {
  const int ebits = f.p == 11 ? 5 : 8;
  const uint32_t sign = h >> 15 & 1, ex = (h >> (f.p - 1)) & ((1u << ebits) - 1),
                 man = h & ((1u << (f.p - 1)) - 1);
  double v;
  if (ex == 0) {
    v = std::ldexp(static_cast<double>(man), f.emin - (f.p - 1));
  } else if (ex == (1u << ebits) - 1) {
    v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(static_cast<double>(man | 1u << (f.p - 1)),
                   static_cast<int>(ex) - f.bias - (f.p - 1));
  }
  return sign ? -v : v;
}

// Encodes a value that the format represents exactly (or an infinity).
uint32_t half_encode(double v, const HalfFormat& f) {
  const int ebits = f.p == 11 ? 5 : 8;
  const uint32_t sign = std::signbit(v) ? 0x8000u : 0u;
  v = std::fabs(v);
  if (std::isinf(v)) return sign | ((1u << ebits) - 1) << (f.p - 1);
  if (v == 0) return sign;
  int e = 0;
  std::frexp(v, &e);
  --e;  // v in [2^e, 2^(e+1))
  if (e < f.emin) {
    const auto man = static_cast<uint32_t>(std::ldexp(v, (f.p - 1) - f.emin));
    return sign | man;  // subnormal (man may reach the smallest normal: still right)
  }
  const auto sig = static_cast<uint32_t>(std::ldexp(v, (f.p - 1) - e));
  return sign | static_cast<uint32_t>(e + f.bias) << (f.p - 1) | (sig & ((1u << (f.p - 1)) - 1));
}

// Rounds s + e (|e| at most half an ulp of s as a double) to the format.
uint32_t half_round(double s, double e, const HalfFormat& f, unsigned mode) {
  if (std::isnan(s)) return kHalfNaN;
  if (std::isinf(s)) return half_encode(s, f);
  const bool neg = std::signbit(s) || (s == 0 && e < 0);
  if (s == 0 && e == 0) return std::signbit(s) ? 0x8000u : 0u;
  double a = std::fabs(s), ea = neg ? -e : e;  // magnitude and its correction
  // Modes on the magnitude: 0 nearest, 1 toward zero, 2 away from zero.
  unsigned m = mode == 0 ? 0 : mode == 1 ? 1 : ((mode == 2) == neg ? 2 : 1);
  int ex = 0;
  std::frexp(a, &ex);
  --ex;
  const int qexp = std::max(ex, f.emin) - (f.p - 1);
  const double k = std::ldexp(a, -qexp);  // exact: a has at most 53 bits
  double kf = std::floor(k);
  const double frac = k - kf;  // exact
  double kr = kf;
  if (m == 0) {
    if (frac > 0.5 || (frac == 0.5 && ea > 0) ||
        (frac == 0.5 && ea == 0 && std::fmod(kf, 2.0) != 0))
      kr = kf + 1;
  } else if (m == 1) {
    if (frac == 0 && ea < 0) kr = kf - 1;
  } else {
    if (frac > 0 || ea > 0) kr = kf + 1;
  }
  double r = std::ldexp(kr, qexp);
  const double maxf = std::ldexp(static_cast<double>((1u << f.p) - 1), f.emax - (f.p - 1));
  if (r > maxf) r = m == 1 ? maxf : std::numeric_limits<double>::infinity();
  return half_encode(neg ? -r : r, f);
}

inline void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double bb = s - a;
  e = (a - (s - bb)) + (b - bb);
  if (!std::isfinite(s)) e = 0;
}

// A subnormal of the format flushed to zero of the same sign.
inline uint32_t half_ftz(uint32_t h, const HalfFormat& f) {
  const uint32_t exp_mask = f.p == 11 ? 0x7c00u : 0x7f80u;
  return (h & exp_mask) == 0 ? h & 0x8000u : h;
}

inline bool half_is_nan(uint32_t h, const HalfFormat& f) {
  const uint32_t exp_mask = f.p == 11 ? 0x7c00u : 0x7f80u;
  return (h & exp_mask) == exp_mask && (h & ~exp_mask & 0x7fffu) != 0;
}

// The exact operation, rounded once.
uint32_t half_lane_exact(unsigned sub, const HalfFormat& f, unsigned mode, uint32_t a, uint32_t b,
                         uint32_t c, int64_t flags) {
  const double x = half_decode(a, f), y = half_decode(b, f), z = half_decode(c, f);
  double s = 0, e = 0;
  switch (sub) {
    case 0:
      two_sum(x, y, s, e);
      break;
    case 1:
      two_sum(x, -y, s, e);
      break;
    case 2:
      s = x * y;  // exact: at most 22 significant bits
      break;
    case 3:
      two_sum(x * y, z, s, e);
      break;
    case 4:
      return a ^ 0x8000u;
    case 5:
      return a & 0x7fffu;
    case 6:
    case 7: {
      if ((flags & kHalfNaNs) && (std::isnan(x) || std::isnan(y))) return kHalfNaN;
      if (std::isnan(x) && std::isnan(y)) return kHalfNaN;
      if (std::isnan(x)) return b;
      if (std::isnan(y)) return a;
      if (x == y) return ((sub == 6) == std::signbit(x)) ? a : b;
      return ((x < y) == (sub == 6)) ? a : b;
    }
    case 17: {  // round to an integral value: exact, keeps the sign of zero
      if (std::isnan(x)) return kHalfNaN;
      double r;
      switch (static_cast<Rnd>(mode)) {
        case Rnd::kRzi:
          r = std::trunc(x);
          break;
        case Rnd::kRmi:
          r = std::floor(x);
          break;
        case Rnd::kRpi:
          r = std::ceil(x);
          break;
        default:
          r = std::nearbyint(x);  // the default FE_TONEAREST: ties to even
          break;
      }
      return half_encode(std::copysign(r, x), f);
    }
    case 18:  // tanh.approx: the correctly rounded tanh, within the ISA's bound
      if (std::isnan(x)) return kHalfNaN;
      return half_round(std::tanh(x), 0, f, 0);
    case 19:  // ex2.approx: the correctly rounded 2^x, within the ISA's bound
      if (std::isnan(x)) return kHalfNaN;
      return half_round(std::exp2(x), 0, f, 0);
    default:
      return kHalfNaN;
  }
  return half_round(s, e, f, mode);
}

uint32_t half_lane(unsigned sub, const HalfFormat& f, unsigned mode, uint32_t a, uint32_t b,
                   uint32_t c, int64_t flags) {
  if (flags & kHalfFtz) {
    a = half_ftz(a, f);
    b = half_ftz(b, f);
    c = half_ftz(c, f);
  }
  uint32_t r = half_lane_exact(sub, f, mode, a, b, c, flags);
  if (flags & kHalfFtz) r = half_ftz(r, f);
  if (flags & kHalfSat) {
    // [0, 1]; NaN and -0 -> +0 (rounding and clamping commute: 0 and 1 are exact)
    const uint32_t one = f.p == 11 ? 0x3c00u : 0x3f80u;
    if (half_is_nan(r, f) || (r & 0x8000u)) return 0;
    return r > one ? one : r;  // positive values order as their bits
  }
  if (flags & kHalfRelu) {
    if (half_is_nan(r, f)) return kHalfNaN;
    if (r & 0x8000u) return 0;
  }
  return r;
}

// set.*: the comparison of one half (combined with predicate c), as the
// 16-bit (or, for scalar sources, full) result pattern.
uint64_t half_set(int64_t imm, const HalfFormat& f, uint32_t a, uint32_t b, uint64_t c) {
  if (imm & kHalfFtz) {
    a = half_ftz(a, f);
    b = half_ftz(b, f);
  }
  const auto cmp = static_cast<Cmp>((imm >> 16) & 0xff);
  const int64_t bool_imm = ((imm >> kHalfBoolShift) & 3) << 8 | ((imm & kHalfCNeg) ? 1 << 10 : 0);
  const bool p = combine(fcmp<double>(cmp, half_decode(a, f), half_decode(b, f)), bool_imm, c) != 0;
  if (!p) return 0;
  switch (static_cast<HalfSet>((imm >> kHalfSetShift) & 7)) {
    case HalfSet::kOne:
      return f.p == 11 ? 0x3c00u : 0x3f80u;
    case HalfSet::kMask16x2:
    case HalfSet::kMask16:
      return 0xffffu;
    case HalfSet::kMask32:
      return 0xffffffffu;
    case HalfSet::kOneF32:
      return 0x3f800000u;
  }
  return 0;
}

uint64_t half_op(int64_t imm, uint64_t a, uint64_t b, uint64_t c) {
  const unsigned sub = imm & 0xff;
  const HalfFormat& f = ((imm >> 8) & 1) ? kBF16 : kF16;
  const bool x2 = (imm >> 10) & 1;
  const unsigned mode = (imm >> 12) & 3;
  switch (sub) {
    case 8: {  // setp (kHalfUpper: on the upper halves)
      if (imm & kHalfUpper) {
        a >>= 16;
        b >>= 16;
      }
      return half_set(imm & ~(int64_t{7} << kHalfSetShift), f, a & 0xffff, b & 0xffff, c) != 0;
    }
    case 16:  // set
      if (!x2) return half_set(imm, f, a & 0xffff, b & 0xffff, c);
      return half_set(imm, f, a & 0xffff, b & 0xffff, c) |
             half_set(imm, f, (a >> 16) & 0xffff, (b >> 16) & 0xffff, c) << 16;
    case 9:
      return half_round(f32(a), 0, f, mode);
    case 10:
      return half_round(f64(a), 0, f, mode);
    case 15:  // two f32 -> f16x2/bf16x2: a to the upper half, b to the lower
      return half_round(f32(b), 0, f, mode) | uint64_t{half_round(f32(a), 0, f, mode)} << 16;
    case 11:
      return bits(static_cast<float>(half_decode(a & 0xffff, f)));
    case 12:
      return bits(half_decode(a & 0xffff, f));
    case 13: {
      const auto st = static_cast<Ty>((imm >> 16) & 0xff);
      const uint64_t ua = a & ty_mask(st);
      // Exact in double up to 2^53; beyond that s + e carries the rest.
      if (ty_signed(st)) {
        const int64_t v = sext(ua, ty_bits(st));
        const double s = static_cast<double>(v);
        const double e = static_cast<double>(static_cast<__int128>(v) - static_cast<__int128>(s));
        return half_round(s, e, f, mode);
      }
      const double s = static_cast<double>(ua);
      const double e = static_cast<double>(static_cast<__int128>(ua) - static_cast<__int128>(s));
      return half_round(s, e, f, mode);
    }
    case 14: {
      const auto dt = static_cast<Ty>((imm >> 16) & 0xff);
      const auto r = static_cast<Rnd>((imm >> 24) & 0xf);
      return float_to_int(half_decode(a & 0xffff, f), r, dt);
    }
    default:
      break;
  }
  const unsigned lane_mode = sub == 17 ? static_cast<unsigned>((imm >> 24) & 0xf) : mode;
  uint64_t out = half_lane(sub, f, lane_mode, a & 0xffff, b & 0xffff, c & 0xffff, imm);
  if (x2)
    out |= uint64_t{half_lane(sub, f, lane_mode, (a >> 16) & 0xffff, (b >> 16) & 0xffff,
                              (c >> 16) & 0xffff, imm)}
           << 16;
  return out;
}

}  // namespace

// Directed rounding (.rz/.rm/.rp) is done by the host FPU in the requested
// mode: the caller sets the mode with fesetround around these functions. They
// are kept out of line and out of interprocedural analysis (external linkage,
// noinline, and noipa on GCC), so no floating-point operation can be moved
// or folded across the mode switch. glibc's fma and the SSE arithmetic,
// square root and conversion instructions round in the current mode.
#if defined(__GNUC__) && !defined(__clang__)
#define GL_OUT_OF_LINE __attribute__((noinline, noipa))
#else
#define GL_OUT_OF_LINE __attribute__((noinline))
#endif
GL_OUT_OF_LINE void directed_lanes(const Inst& in, uint32_t exec, uint64_t* rd, const uint64_t* ra,
                                   const uint64_t* rb, const uint64_t* rc) {
  const int sub = static_cast<int>(in.imm & 0xff);
  if (in.imm & 256) {
    for (uint32_t m = exec; m != 0; m &= m - 1) {
      const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
      const double a = f64(ra[l]), b = f64(rb[l]), c = f64(rc[l]);
      double v;
      switch (sub) {
        case 0:
          v = a + b;
          break;
        case 1:
          v = a - b;
          break;
        case 2:
          v = a * b;
          break;
        case 3:
          v = std::fma(a, b, c);
          break;
        case 4:
          v = a / b;
          break;
        case 5:
          v = std::sqrt(a);
          break;
        default:
          v = 1.0 / a;
          break;
      }
      rd[l] = bits(v);
    }
    return;
  }
  const bool fz = in.mod & kFlagFtz, st = in.mod & kFlagSat;
  for (uint32_t m = exec; m != 0; m &= m - 1) {
    const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
    float a = f32(ra[l]), b = f32(rb[l]), c = f32(rc[l]);
    if (fz) {
      a = ftz(a);
      b = ftz(b);
      c = ftz(c);
    }
    float v;
    switch (sub) {
      case 0:
        v = a + b;
        break;
      case 1:
        v = a - b;
        break;
      case 2:
        v = a * b;
        break;
      case 3:
        v = std::fma(a, b, c);
        break;
      case 4:
        v = a / b;
        break;
      case 5:
        v = std::sqrt(a);
        break;
      default:
        v = 1.0f / a;
        break;
    }
    if (fz) v = ftz(v);
    if (st) v = sat(v);
    rd[l] = bits(v);
  }
}

GL_OUT_OF_LINE void convert_lanes(uint32_t exec, uint64_t* rd, const uint64_t* ra, Ty st, Ty dt,
                                  Rnd rnd, uint8_t flags) {
  for (uint32_t m = exec; m != 0; m &= m - 1) {
    const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
    rd[l] = convert(ra[l], st, dt, rnd, flags);
  }
}
#undef GL_OUT_OF_LINE

// Sets the host's rounding mode for a scope (directed rounding, see above).
class RoundingMode {
 public:
  explicit RoundingMode(int mode) : old_(std::fegetround()) { std::fesetround(mode); }
  ~RoundingMode() { std::fesetround(old_); }
  RoundingMode(const RoundingMode&) = delete;
  RoundingMode& operator=(const RoundingMode&) = delete;

 private:
  int old_;
};

inline int fe_mode(unsigned dir) {
  return dir == 1 ? FE_TOWARDZERO : dir == 2 ? FE_DOWNWARD : FE_UPWARD;
}

namespace {

const char* space_name(Space s) {
  switch (s) {
    case Space::kGlobal:
      return "global";
    case Space::kShared:
      return "shared";
    case Space::kLocal:
      return "local";
    case Space::kParam:
      return "param";
    case Space::kGeneric:
      return "generic";
  }
  return "?";
}

enum class Stop : uint8_t { kExit, kBlocked, kYield, kFault, kSlice };

constexpr uint32_t kNoPc = 0xffffffffu;
constexpr uint32_t kFullWarp = 0xffffffffu;
// Warp instructions a warp runs before the next warp of its block gets a
// turn (so warps that wait on each other through memory make progress).
constexpr uint32_t kQuantum = 2048;
// Backward branches of a spin loop (kBraSpin) a divergent warp takes before
// the lanes furthest ahead get a turn (so a lane holding a lock that its
// warp's other lanes spin on can release it).
constexpr uint32_t kSpinYield = 64;

inline uint64_t lane_mask(unsigned w) {
  return w >= 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1;
}

inline uint32_t popc(uint32_t m) {
  m = m - ((m >> 1) & 0x55555555u);  // no libgcc call without -mpopcnt
  m = (m & 0x33333333u) + ((m >> 2) & 0x33333333u);
  return (((m + (m >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
}

// fma.rn.f32 over the lanes of `exec` with the host's fused multiply-add
// instruction where it has one (the same correctly rounded result as
// std::fma, without a libm call per lane).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("fma"))) void fma_f32_lanes_hw(uint32_t exec, uint64_t* d, const uint64_t* a,
                                                     const uint64_t* b, const uint64_t* c) {
  if (exec == 0xffffffffu) {
    for (uint32_t l = 0; l < 32; ++l) d[l] = bits(__builtin_fmaf(f32(a[l]), f32(b[l]), f32(c[l])));
    return;
  }
  for (uint32_t m = exec; m != 0; m &= m - 1) {
    const uint32_t l = static_cast<uint32_t>(__builtin_ctz(m));
    d[l] = bits(__builtin_fmaf(f32(a[l]), f32(b[l]), f32(c[l])));
  }
}
const bool kHostFma = __builtin_cpu_supports("fma");
#else
void fma_f32_lanes_hw(uint32_t, uint64_t*, const uint64_t*, const uint64_t*, const uint64_t*) {}
const bool kHostFma = false;
#endif

// One warp's scheduling state. Lanes in `active` execute together at `pc`;
// every other runnable lane (live, not waiting) has its own pc in `pcs` and
// `next_pc` is the lowest of those. The group with the lowest pc runs (min-PC
// scheduling): divergent lanes reconverge where their paths meet.
struct WarpState {
  uint32_t exists = 0;  // lanes that are threads of the block
  uint32_t live = 0;    // not exited
  uint32_t bar = 0;     // waiting at bar.sync
  uint32_t wsync = 0;   // waiting at a warp-synchronous instruction (at pcs[l])
  uint32_t active = 0;
  uint32_t pc = 0;
  uint32_t next_pc = kNoPc;
  uint32_t spins = 0;
  std::array<uint32_t, 32> pcs{};
};

}  // namespace

// Lane loops: BODY runs for every lane `l` of `exec` (dense when all 32).
#define GL_LANES(...)                                                   \
  do {                                                                  \
    if (exec == kFullWarp) {                                            \
      for (uint32_t l = 0; l < 32; ++l) {                               \
        __VA_ARGS__;                                                    \
      }                                                                 \
    } else {                                                            \
      for (uint32_t m_ = exec; m_ != 0; m_ &= m_ - 1) {                 \
        const uint32_t l = static_cast<uint32_t>(std::countr_zero(m_)); \
        __VA_ARGS__;                                                    \
      }                                                                 \
    }                                                                   \
  } while (0)

// Runs the blocks of one Launch on the calling worker; holds the scratch
// buffers (registers, shared and local memory) reused between blocks.
// Registers are stored per warp, slot-major: lane l of slot s of warp w is
// regs_[(w * slots + s) * 32 + l], so one decoded instruction runs over the
// 32 lanes in a tight loop.
class BlockRunner {
 public:
  explicit BlockRunner(Launch& l) : l_(l), k_(*l.kernel_), mem_(*l.memory_), module_(*l.module_) {
    nthreads_ = l.block_[0] * l.block_[1] * l.block_[2];
    nwarps_ = (nthreads_ + 31) / 32;
    nslots_ = k_.num_slots();
    shared_size_ = static_cast<uint64_t>(k_.dynamic_shared_offset) + l.dynamic_shared_;
    if (shared_size_ < k_.static_shared_bytes) shared_size_ = k_.static_shared_bytes;
    shared_.resize(shared_size_);
    regs_.resize(static_cast<size_t>(nslots_) * 32 * nwarps_);
    local_.resize(static_cast<size_t>(k_.local_bytes) * 32 * nwarps_);
    warps_.resize(nwarps_);
    tmpl_.assign(static_cast<size_t>(nslots_) * 32, 0);
    // Setup is not free: copying the register file and zeroing local memory
    // per thread, zeroing shared memory per block. It is charged to the
    // budget (one instruction per 64 bytes, at least one per thread) so the
    // budget bounds a launch's CPU time whatever its shape.
    thread_setup_cost_ = std::max<uint64_t>(1, (uint64_t{nslots_} * 8 + k_.local_bytes) / 64);
    block_setup_cost_ = shared_size_ / 64;
    auto set = [&](Slot s, uint64_t v) {
      for (uint32_t i = 0; i < 32; ++i) tmpl_[static_cast<size_t>(s) * 32 + i] = v;
    };
    for (const auto& [slot, value] : k_.init_values) set(slot, value);
    set(kSlotNtid, l.block_[0]);
    set(kSlotNtid + 1, l.block_[1]);
    set(kSlotNtid + 2, l.block_[2]);
    set(kSlotNctaid, l.grid_[0]);
    set(kSlotNctaid + 1, l.grid_[1]);
    set(kSlotNctaid + 2, l.grid_[2]);
    for (uint32_t i = 0; i < 32; ++i) tmpl_[kSlotLaneid * 32 + i] = i;
  }

  ~BlockRunner() { settle(); }

  // Accounts the instructions this runner executed and returns the unused
  // part of its last claim to the launch's budget.
  void settle() {
    l_.executed_.fetch_add(granted_total_ - fuel_, std::memory_order_relaxed);
    l_.claimed_.fetch_sub(fuel_, std::memory_order_relaxed);
    granted_total_ = 0;
    fuel_ = 0;
  }

  // False when the launch was stopped (fault, budget or cancel).
  bool run_block(uint64_t index) {
    if (!start_block(index)) return false;
    return resume_block() == Stop::kExit;
  }

  // Sets up block `index` (charging its setup to the budget); false when the
  // launch was stopped.
  bool start_block(uint64_t index) {
    const uint32_t bx = static_cast<uint32_t>(index % l_.grid_[0]);
    const uint32_t by = static_cast<uint32_t>((index / l_.grid_[0]) % l_.grid_[1]);
    const uint32_t bz = static_cast<uint32_t>(index / (uint64_t{l_.grid_[0]} * l_.grid_[1]));
    ctaid_ = {bx, by, bz};
    for (uint32_t i = 0; i < 32; ++i) {
      tmpl_[kSlotCtaid * 32 + i] = bx;
      tmpl_[(kSlotCtaid + 1) * 32 + i] = by;
      tmpl_[(kSlotCtaid + 2) * 32 + i] = bz;
    }
    tid_linear_ = 0;
    if (!charge(block_setup_cost_)) return false;
    // Shared memory starts zeroed in the sim (uninitialised on a GPU).
    std::fill(shared_.begin(), shared_.end(), std::byte{0});
    for (uint32_t w = 0; w < nwarps_; ++w) {
      const uint32_t first = w * 32;
      const uint32_t n = std::min<uint32_t>(32, nthreads_ - first);
      tid_linear_ = first;
      if (!charge(thread_setup_cost_ * n)) return false;
      uint64_t* r = regs_.data() + static_cast<size_t>(w) * nslots_ * 32;
      if (!initialised_) {
        // Constants, %tid and %laneid never change between blocks, and PTX
        // registers are undefined until written: the register file and
        // local memory are set up once per runner (zeros, constants, %tid),
        // after that only %ctaid changes.
        std::memcpy(r, tmpl_.data(), tmpl_.size() * 8);
        for (uint32_t i = 0; i < n; ++i) {
          const uint32_t t = first + i;
          r[kSlotTid * 32 + i] = t % l_.block_[0];
          r[(kSlotTid + 1) * 32 + i] = (t / l_.block_[0]) % l_.block_[1];
          r[(kSlotTid + 2) * 32 + i] = t / (l_.block_[0] * l_.block_[1]);
        }
      } else {
        for (uint32_t i = 0; i < 32; ++i) {
          r[kSlotCtaid * 32 + i] = bx;
          r[(kSlotCtaid + 1) * 32 + i] = by;
          r[(kSlotCtaid + 2) * 32 + i] = bz;
        }
      }
      WarpState& W = warps_[w];
      W = WarpState{};
      W.exists = n == 32 ? kFullWarp : (1u << n) - 1;
      W.live = W.exists;
      W.active = W.exists;
    }
    initialised_ = true;
    live_threads_ = nthreads_;
    bar_count_ = 0;
    bar_red_ = {};
    bar_gen_ = 0;
    cur_warp_ = 0;
    return true;
  }

  // Runs the started block until every thread exited (kExit), the launch
  // stopped (kFault) or the slice ran out (kSlice; call again to resume
  // exactly where it stopped). Warps take turns (kQuantum instructions or
  // until they wait); bar.sync opens when every live thread waits at it.
  Stop resume_block() {
    for (;;) {
      if (live_threads_ == 0) return Stop::kExit;
      bool ran = false;
      for (uint32_t i = 0; i < nwarps_; ++i) {
        WarpState& W = warps_[cur_warp_];
        if ((W.live & ~W.bar & ~W.wsync) != 0) {
          ran = true;
          const Stop s = run_warp(cur_warp_);
          if (s == Stop::kFault || s == Stop::kSlice) return s;
        }
        cur_warp_ = cur_warp_ + 1 == nwarps_ ? 0 : cur_warp_ + 1;
      }
      if (ran) continue;
      if (live_threads_ == 0) return Stop::kExit;
      if (bar_count_ == live_threads_) {
        for (WarpState& W : warps_) {
          W.bar = 0;
          W.active = 0;
        }
        bar_count_ = 0;
        ++bar_gen_;
        bar_red_[bar_gen_ & 1] = BarRed{};
        continue;
      }
      if (!release_warp_syncs()) return deadlock();
    }
  }

  // Limits what the following runs may execute to `n` more instructions
  // (kNoSlice: unlimited).
  void set_slice(uint64_t n) {
    slice_left_ = n;
    slice_progress_ = false;
  }

  static constexpr uint64_t kNoSlice = ~uint64_t{0};

 private:
  // ---- scheduling
  static void park(WarpState& W, uint32_t pc, uint32_t lanes) {
    for (uint32_t m = lanes; m != 0; m &= m - 1) W.pcs[std::countr_zero(m)] = pc;
  }
  // Picks the runnable lanes with the lowest pc as the group. The current
  // group's pcs must be parked first. False when no lane is runnable.
  static bool reschedule(WarpState& W) {
    const uint32_t run = W.live & ~W.bar & ~W.wsync;
    uint32_t best = kNoPc;
    for (uint32_t m = run; m != 0; m &= m - 1) best = std::min(best, W.pcs[std::countr_zero(m)]);
    W.active = 0;
    W.next_pc = kNoPc;
    if (best == kNoPc) return false;
    for (uint32_t m = run; m != 0; m &= m - 1) {
      const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
      if (W.pcs[l] == best)
        W.active |= 1u << l;
      else
        W.next_pc = std::min(W.next_pc, W.pcs[l]);
    }
    W.pc = best;
    return true;
  }
  // Gives the lanes furthest ahead a turn (a spin loop's lanes wait behind).
  static void yield_ahead(WarpState& W, uint32_t pc, uint32_t act) {
    park(W, pc, act);
    const uint32_t run = W.live & ~W.bar & ~W.wsync;
    uint32_t far = 0;
    bool found = false;
    for (uint32_t m = run & ~act; m != 0; m &= m - 1) {
      far = std::max(far, W.pcs[std::countr_zero(m)]);
      found = true;
    }
    if (!found || far <= pc) {
      reschedule(W);
      return;
    }
    W.active = 0;
    W.next_pc = kNoPc;
    for (uint32_t m = run; m != 0; m &= m - 1) {
      const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
      if (W.pcs[l] == far)
        W.active |= 1u << l;
      else if (W.pcs[l] > far)
        W.next_pc = std::min(W.next_pc, W.pcs[l]);
    }
    W.pc = far;
  }

  // The membermask of a warp-synchronous instruction (union over the lanes).
  uint32_t member_mask(const uint64_t* r, Slot s, uint32_t exec) const {
    uint32_t mm = 0;
    const uint64_t* rm = r + static_cast<size_t>(s) * 32;
    for (uint32_t m = exec; m != 0; m &= m - 1)
      mm |= static_cast<uint32_t>(rm[std::countr_zero(m)]);
    return mm;
  }
  static Slot member_slot(const Inst& in) {
    return in.op == Op::kShfl       ? static_cast<Slot>(static_cast<uint64_t>(in.imm) & 0xffffffffu)
           : in.op == Op::kWarpSync ? in.a
           : (in.op == Op::kWmmaLoad || in.op == Op::kWmmaStore || in.op == Op::kWmmaMma) ? in.d
                                                                                          : in.b;
  }

  // Nothing can run: lanes waiting at a warp-synchronous instruction whose
  // other members have exited since may go on. False when none can.
  bool release_warp_syncs() {
    bool released = false;
    for (uint32_t w = 0; w < nwarps_; ++w) {
      WarpState& W = warps_[w];
      const uint64_t* r = regs_.data() + static_cast<size_t>(w) * nslots_ * 32;
      for (uint32_t m = W.wsync; m != 0; m &= m - 1) {
        const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
        if (!(W.wsync >> l & 1)) continue;
        const uint32_t pc = W.pcs[l];
        uint32_t here = 0;
        for (uint32_t q = W.wsync; q != 0; q &= q - 1) {
          const uint32_t j = static_cast<uint32_t>(std::countr_zero(q));
          if (W.pcs[j] == pc) here |= 1u << j;
        }
        const uint32_t need = member_mask(r, member_slot(k_.code[pc]), here) & W.live;
        if ((need & ~here) == 0) {
          W.wsync &= ~here;
          W.active = 0;
          released = true;
        }
      }
    }
    return released;
  }

  Stop deadlock() {
    for (uint32_t w = 0; w < nwarps_; ++w) {
      const WarpState& W = warps_[w];
      if (W.wsync == 0) continue;
      const uint32_t l = static_cast<uint32_t>(std::countr_zero(W.wsync));
      const uint32_t pc = W.pcs[l];
      const uint64_t* r = regs_.data() + static_cast<size_t>(w) * nslots_ * 32;
      const uint32_t need = member_mask(r, member_slot(k_.code[pc]), 1u << l) & W.live;
      tid_linear_ = w * 32 + l;
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "deadlock: a warp-synchronous instruction waits for lanes 0x%08x of its "
                    "membermask that never arrive (lanes 0x%08x wait at bar.sync)",
                    need & ~W.wsync, W.bar);
      l_.set_fault(buf + where(pc));
      return Stop::kFault;
    }
    l_.set_fault("deadlock: threads wait at bar.sync while others can never arrive" + where(0));
    return Stop::kFault;
  }

  // ---- faults
  std::string where(uint32_t pc) const {
    const uint32_t tx = tid_linear_ % l_.block_[0];
    const uint32_t ty = (tid_linear_ / l_.block_[0]) % l_.block_[1];
    const uint32_t tz = tid_linear_ / (l_.block_[0] * l_.block_[1]);
    char buf[160];
    std::snprintf(buf, sizeof buf, " in kernel %s at line %u (block (%u,%u,%u), thread (%u,%u,%u))",
                  k_.name.c_str(), pc < k_.lines.size() ? k_.lines[pc] : 0u, ctaid_[0], ctaid_[1],
                  ctaid_[2], tx, ty, tz);
    return buf;
  }

  Stop mem_fault(uint32_t pc, const char* what, Space sp, const char* access, uint64_t addr,
                 uint32_t size) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s 0x%" PRIx64 " (%s %s, %u bytes)", what, addr, space_name(sp),
                  access, size);
    l_.set_fault(buf + where(pc));
    return Stop::kFault;
  }

  // Host pointer for a global access, or nullptr (bounds) — alignment is
  // checked by the caller.
  std::byte* gptr(uint64_t addr, uint32_t size, bool write) {
    const uint64_t off = addr - cache_.base;
    if (off < cache_.size && size <= cache_.size - off) return cache_.data + off;
    // The module's own .global / .const variables (never cached: .const is
    // read-only).
    if (addr - module_.window_base < kWindowSize) return module_.variable_bytes(addr, size, write);
    const GlobalRange* r = mem_.find(addr, size);
    if (r == nullptr) return nullptr;
    cache_ = *r;
    return r->data + (addr - r->base);
  }

  // Resolves an address in `sp` to a host pointer with bounds and alignment
  // checks. On failure records the fault and returns nullptr.
  std::byte* resolve(Space sp, uint64_t addr, uint32_t size, uint32_t align, std::byte* local,
                     uint32_t pc, const char* access, Space* actual) {
    if (sp == Space::kGeneric) {
      if (addr - kSharedWindow < kWindowSize) {
        sp = Space::kShared;
        addr -= kSharedWindow;
      } else if (addr - kLocalWindow < kWindowSize) {
        sp = Space::kLocal;
        addr -= kLocalWindow;
      } else {
        sp = Space::kGlobal;
      }
    }
    *actual = sp;
    if ((addr & (align - 1)) != 0) {
      mem_fault(pc, "misaligned address", sp, access, addr, size);
      return nullptr;
    }
    std::byte* p = nullptr;
    switch (sp) {
      case Space::kGlobal:
        p = gptr(addr, size, access[0] != 'l');
        break;
      case Space::kShared:
        if (addr < shared_size_ && size <= shared_size_ - addr) p = shared_.data() + addr;
        break;
      case Space::kLocal:
        if (addr < k_.local_bytes && size <= k_.local_bytes - addr) p = local + addr;
        break;
      case Space::kParam:
        if (addr < l_.params_.size() && size <= l_.params_.size() - addr)
          p = l_.params_.data() + addr;
        break;
      case Space::kGeneric:
        break;
    }
    if (p == nullptr) mem_fault(pc, "illegal address", sp, access, addr, size);
    return p;
  }

  static uint64_t load_raw(const std::byte* p, uint32_t size, bool atomic) {
    if (atomic) {
      switch (size) {
        case 1:
          return __atomic_load_n(reinterpret_cast<const uint8_t*>(p), __ATOMIC_RELAXED);
        case 2:
          return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_RELAXED);
        case 4:
          return __atomic_load_n(reinterpret_cast<const uint32_t*>(p), __ATOMIC_RELAXED);
        default:
          return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_RELAXED);
      }
    }
    switch (size) {  // little-endian host; fixed-size copies stay in registers
      case 1: {
        uint8_t v;
        std::memcpy(&v, p, 1);
        return v;
      }
      case 2: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        return v;
      }
      case 4: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
      default: {
        uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
      }
    }
  }
  static void store_raw(std::byte* p, uint32_t size, uint64_t v, bool atomic) {
    if (atomic) {
      switch (size) {
        case 1:
          __atomic_store_n(reinterpret_cast<uint8_t*>(p), static_cast<uint8_t>(v),
                           __ATOMIC_RELAXED);
          return;
        case 2:
          __atomic_store_n(reinterpret_cast<uint16_t*>(p), static_cast<uint16_t>(v),
                           __ATOMIC_RELAXED);
          return;
        case 4:
          __atomic_store_n(reinterpret_cast<uint32_t*>(p), static_cast<uint32_t>(v),
                           __ATOMIC_RELAXED);
          return;
        default:
          __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELAXED);
          return;
      }
    }
    switch (size) {
      case 1: {
        const auto x = static_cast<uint8_t>(v);
        std::memcpy(p, &x, 1);
        return;
      }
      case 2: {
        const auto x = static_cast<uint16_t>(v);
        std::memcpy(p, &x, 2);
        return;
      }
      case 4: {
        const auto x = static_cast<uint32_t>(v);
        std::memcpy(p, &x, 4);
        return;
      }
      default:
        std::memcpy(p, &v, 8);
        return;
    }
  }

  // Extends a loaded value to the destination register (mod: see Op::kLd*).
  static uint64_t extend(uint64_t v, uint8_t mod) {
    const unsigned size_bits = 8u << (mod & 3);
    const unsigned reg_bits = 8u << ((mod >> 4) & 3);
    if ((mod & kLdSigned) && reg_bits > size_bits) {
      const uint64_t s = static_cast<uint64_t>(sext(v, size_bits));
      return reg_bits >= 64 ? s : s & ((uint64_t{1} << reg_bits) - 1);
    }
    return v;
  }

  // One lane of an atomic; `r` is the warp's register file.
  bool do_atom(const Inst& in, uint64_t* r, uint32_t l, std::byte* local, uint32_t pc) {
    const auto op = static_cast<AtomOp>(in.mod & 15);
    const auto t = static_cast<Ty>(in.mod >> 4);
    const auto sp = static_cast<Space>((in.neg >> 1) & 7);
    const uint32_t size = ty_bits(t) / 8;
    Space actual;
    std::byte* p = resolve(sp, r[in.a * 32 + l] + static_cast<uint64_t>(in.imm), size, size, local,
                           pc, "atom", &actual);
    if (p == nullptr) return false;
    const uint64_t b = r[in.b * 32 + l], c = r[in.c * 32 + l];
    uint64_t old;
    if (actual != Space::kGlobal) {
      old = load_raw(p, size, false);
      store_raw(p, size, atom_apply(op, t, old, b, c), false);
    } else if (size == 2) {  // atom.cas.b16, atom.add.noftz.f16 / .bf16
      auto* q = reinterpret_cast<uint16_t*>(p);
      uint16_t cur = __atomic_load_n(q, __ATOMIC_RELAXED);
      for (;;) {
        const auto next = static_cast<uint16_t>(atom_apply(op, t, cur, b, c));
        if (next == cur ||
            __atomic_compare_exchange_n(q, &cur, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
          break;
      }
      old = cur;
    } else if (size == 4) {
      auto* q = reinterpret_cast<uint32_t*>(p);
      if (op == AtomOp::kAdd && !ty_float(t)) {
        old = __atomic_fetch_add(q, static_cast<uint32_t>(b), __ATOMIC_RELAXED);
      } else if (op == AtomOp::kExch) {
        old = __atomic_exchange_n(q, static_cast<uint32_t>(b), __ATOMIC_RELAXED);
      } else {
        uint32_t cur = __atomic_load_n(q, __ATOMIC_RELAXED);
        for (;;) {
          const auto next = static_cast<uint32_t>(atom_apply(op, t, cur, b, c));
          if (next == cur ||
              __atomic_compare_exchange_n(q, &cur, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            break;
        }
        old = cur;
      }
    } else {
      auto* q = reinterpret_cast<uint64_t*>(p);
      if (op == AtomOp::kAdd && !ty_float(t)) {
        old = __atomic_fetch_add(q, b, __ATOMIC_RELAXED);
      } else if (op == AtomOp::kExch) {
        old = __atomic_exchange_n(q, b, __ATOMIC_RELAXED);
      } else {
        uint64_t cur = __atomic_load_n(q, __ATOMIC_RELAXED);
        for (;;) {
          const uint64_t next = atom_apply(op, t, cur, b, c);
          if (next == cur ||
              __atomic_compare_exchange_n(q, &cur, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            break;
        }
        old = cur;
      }
    }
    r[in.d * 32 + l] = old;
    return true;
  }

  // wmma over the whole warp (see Op::kWmmaLoad for the fragment layout).
  struct WmmaFrag {
    uint32_t regs;    // registers per lane
    uint32_t halves;  // values per register: 2 (f16, bf16) or 1 (f32)
    uint32_t size;    // elements of the matrix
    uint32_t cols;    // its columns
  };
  static WmmaFrag wmma_frag(uint32_t shape, uint32_t matrix, bool f32_frag, bool bf16) {
    static const uint32_t kDims[][3] = {{16, 16, 16}, {32, 8, 16}, {8, 32, 16}};
    const uint32_t M = kDims[shape][0], N = kDims[shape][1], K = kDims[shape][2];
    if (matrix == 2) return {f32_frag ? 8u : 4u, f32_frag ? 1u : 2u, M * N, N};
    const uint32_t size = matrix == 0 ? M * K : K * N;
    return {bf16 ? size / 64 : 8u, 2u, size, matrix == 0 ? K : N};
  }
  static uint32_t wmma_elem(const WmmaFrag& f, uint32_t lane, uint32_t j, uint32_t h) {
    return (lane * f.regs * f.halves + j * f.halves + h) % f.size;
  }
  bool wmma(const Inst& in, uint64_t* r, uint32_t w, std::byte* local0, uint32_t local_bytes,
            uint32_t pc) {
    const Slot* slots = k_.vec_slots.data() + in.c;
    const uint32_t shape = (in.neg >> 1) & 3;
    if (in.op == Op::kWmmaMma) {
      // The a/b memory layouts (mod bits 0, 1) only mattered to the loads.
      const bool bf16 = in.mod & 16;
      const HalfFormat& hf = bf16 ? kBF16 : kF16;
      const WmmaFrag fa = wmma_frag(shape, 0, false, bf16), fb = wmma_frag(shape, 1, false, bf16);
      const WmmaFrag fc = wmma_frag(shape, 2, in.mod & 8, false);
      const WmmaFrag fd = wmma_frag(shape, 2, in.mod & 4, false);
      const uint32_t M = fc.size / fc.cols, N = fc.cols, K = fa.cols;
      double a[512], b[512], c[256];
      auto gather = [&](const WmmaFrag& f, const Slot* fs, double* out, const HalfFormat* fmt) {
        for (uint32_t l = 0; l < 32; ++l)
          for (uint32_t j = 0; j < f.regs; ++j) {
            const uint64_t v = r[fs[j] * 32 + l];
            for (uint32_t h = 0; h < f.halves; ++h)
              out[wmma_elem(f, l, j, h)] =
                  fmt ? half_decode((v >> (16 * h)) & 0xffff, *fmt) : f32(v);
          }
      };
      gather(fa, slots, a, &hf);
      gather(fb, slots + fa.regs, b, &hf);
      gather(fc, slots + fa.regs + fb.regs, c, fc.halves == 2 ? &kF16 : nullptr);
      // d = a * b + c per element: exact products, summed with their error
      // terms, rounded once to the accumulator type.
      uint64_t d[256];
      for (uint32_t i = 0; i < M; ++i)
        for (uint32_t n = 0; n < N; ++n) {
          double sum = c[i * N + n], err = 0;
          for (uint32_t k = 0; k < K; ++k) {
            double t, e;
            two_sum(sum, a[i * K + k] * b[k * N + n], t, e);
            sum = t;
            err += e;
          }
          if (fd.halves == 1) {
            const auto f = static_cast<float>(sum + err);
            d[i * N + n] = std::isnan(f) ? 0x7fffffffu : bits(f);
          } else {
            d[i * N + n] = half_round(sum, std::isfinite(sum) ? err : 0, kF16, 0);
          }
        }
      const Slot* ds = slots + fa.regs + fb.regs + fc.regs;
      for (uint32_t l = 0; l < 32; ++l)
        for (uint32_t j = 0; j < fd.regs; ++j)
          r[ds[j] * 32 + l] = fd.halves == 1
                                  ? d[wmma_elem(fd, l, j, 0)]
                                  : d[wmma_elem(fd, l, j, 0)] | d[wmma_elem(fd, l, j, 1)] << 16;
      return true;
    }
    const bool load = in.op == Op::kWmmaLoad;
    const uint32_t matrix = in.mod & 3;
    const bool col = in.mod & 4;
    const auto sp = static_cast<Space>((in.mod >> 4) & 7);
    const WmmaFrag f = wmma_frag(shape, matrix, in.mod & 8, in.mod & 0x80);
    const uint32_t esize = f.halves == 1 ? 4 : 2;
    for (uint32_t l = 0; l < 32; ++l) {
      tid_linear_ = w * 32 + l;
      const uint64_t base = r[in.a * 32 + l] + static_cast<uint64_t>(in.imm);
      const uint64_t stride = r[in.b * 32 + l] & 0xffffffffu;
      for (uint32_t j = 0; j < f.regs; ++j) {
        uint64_t v = load ? 0 : r[slots[j] * 32 + l];
        for (uint32_t h = 0; h < f.halves; ++h) {
          const uint32_t e = wmma_elem(f, l, j, h), row = e / f.cols, cl = e % f.cols;
          const uint64_t idx = col ? cl * stride + row : row * stride + cl;
          Space actual;
          std::byte* p = resolve(sp, base + idx * esize, esize, esize,
                                 local0 + static_cast<size_t>(l) * local_bytes, pc,
                                 load ? "ld (wmma)" : "st (wmma)", &actual);
          if (p == nullptr) return false;
          if (load)
            v |= load_raw(p, esize, actual == Space::kGlobal) << (16 * h);
          else
            store_raw(p, esize, (v >> (16 * h)) & (esize == 4 ? 0xffffffffu : 0xffffu),
                      actual == Space::kGlobal);
        }
        if (load) r[slots[j] * 32 + l] = v;
      }
    }
    return true;
  }

  // cp.async: the whole copy at once (see Op::kCpAsync).
  bool cp_async(const Inst& in, uint64_t dst, uint64_t src, uint64_t c, uint32_t pc) {
    const uint32_t cp = in.mod & 31u;
    uint32_t n = cp;
    if (in.mod & 0x80u)
      n = (c & 1) ? 0 : cp;
    else if (c < cp)
      n = static_cast<uint32_t>(c);  // a source size past cp-size (undefined) copies cp
    Space actual;
    std::byte* d = resolve(Space::kShared, dst + static_cast<uint64_t>(in.imm), cp, cp, nullptr, pc,
                           "st (cp.async)", &actual);
    if (d == nullptr) return false;
    if (n > 0) {
      const std::byte* s =
          resolve(Space::kGlobal, src, n, cp, nullptr, pc, "ld (cp.async)", &actual);
      if (s == nullptr) return false;
      for (uint32_t i = 0; i < n; ++i)
        d[i] = static_cast<std::byte>(
            __atomic_load_n(reinterpret_cast<const uint8_t*>(s + i), __ATOMIC_RELAXED));
    }
    std::memset(d + n, 0, cp - n);
    return true;
  }

  bool vec_access(const Inst& in, uint64_t* r, uint32_t l, std::byte* local, uint32_t pc,
                  bool is_ld) {
    const uint32_t size = 1u << (in.mod & 3);
    const uint32_t n = (in.mod >> 6) == 1 ? 2 : 4;
    const auto sp = static_cast<Space>(in.b);
    Space actual;
    std::byte* p = resolve(sp, r[in.a * 32 + l] + static_cast<uint64_t>(in.imm), size * n, size * n,
                           local, pc, is_ld ? "ld" : "st", &actual);
    if (p == nullptr) return false;
    const bool atomic = actual == Space::kGlobal;
    const Slot* slots = k_.vec_slots.data() + in.c;
    for (uint32_t e = 0; e < n; ++e) {
      if (is_ld)
        r[slots[e] * 32 + l] = extend(load_raw(p + e * size, size, atomic), in.mod);
      else
        store_raw(p + e * size, size, r[slots[e] * 32 + l], atomic);
    }
    return true;
  }

  // ---- budget
  // Makes `fuel` (the local copy of fuel_) cover `cost`. False when the
  // launch stopped (*slice_end false) or the slice is over (*slice_end true).
  bool get_fuel(uint64_t& fuel, uint32_t cost, bool* slice_end) {
    *slice_end = false;
    while (fuel < cost) {
      uint64_t want = kFuelChunk;
      if (slice_left_ != kNoSlice) {
        if (slice_left_ == 0) {
          if (slice_progress_) {
            *slice_end = true;
            return false;
          }
          want = cost - fuel;  // every slice makes progress
        } else {
          want = std::min(want, slice_left_);
        }
      }
      const uint64_t got = l_.claim_fuel(want);
      if (got == 0) return false;
      granted_total_ += got;
      fuel += got;
      if (slice_left_ != kNoSlice) slice_left_ -= std::min(slice_left_, got);
    }
    return true;
  }

  // Setup is done whole once started: it is charged against the slice
  // (saturating) but never stopped by it.
  bool charge(uint64_t n) {
    if (slice_left_ != kNoSlice) slice_left_ -= std::min(slice_left_, n);
    while (n > 0) {
      if (fuel_ == 0) {
        fuel_ = l_.claim_fuel(kFuelChunk);
        granted_total_ += fuel_;
      }
      if (fuel_ == 0) {
        if (!l_.stopped())
          l_.set_fault("instruction budget exceeded (" + std::to_string(l_.budget_) +
                       " instructions)" + where(0));
        return false;
      }
      const uint64_t take = std::min(n, fuel_);
      fuel_ -= take;
      n -= take;
    }
    if (slice_left_ != kNoSlice && fuel_ > 0) {
      // Give the rest of the claim back: the slice's remaining instructions
      // are claimed (and limited) by get_fuel().
      l_.claimed_.fetch_sub(fuel_, std::memory_order_relaxed);
      granted_total_ -= fuel_;
      fuel_ = 0;
    }
    slice_progress_ = true;
    return true;
  }

  Stop out_of_fuel(uint32_t pc) {
    if (l_.stopped()) return Stop::kFault;  // another worker faulted, or cancel
    l_.set_fault("instruction budget exceeded (" + std::to_string(l_.budget_) + " instructions)" +
                 where(pc));
    return Stop::kFault;
  }

  Stop run_warp(uint32_t w);

  static constexpr uint64_t kFuelChunk = 1u << 16;

  Launch& l_;
  const Kernel& k_;
  const GlobalMemory& mem_;
  const Module& module_;
  GlobalRange cache_{};
  uint32_t nthreads_ = 0;
  uint32_t nwarps_ = 0;
  uint32_t nslots_ = 0;
  uint64_t shared_size_ = 0;
  uint64_t thread_setup_cost_ = 1;
  uint64_t block_setup_cost_ = 0;
  std::vector<std::byte> shared_;
  std::vector<uint64_t> regs_;
  std::vector<std::byte> local_;
  std::vector<WarpState> warps_;
  std::vector<uint64_t> tmpl_;  // one warp's initial registers
  std::array<uint32_t, 3> ctaid_{};
  uint32_t tid_linear_ = 0;    // the thread a fault message names
  bool initialised_ = false;   // register files set up (start_block)
  uint32_t live_threads_ = 0;  // of the started block
  uint32_t bar_count_ = 0;     // threads waiting at bar.sync
  // bar.red: what the arriving threads' predicates reduce to, for the barrier
  // now filling (bar_gen_ & 1) and the one last opened (the other entry).
  struct BarRed {
    uint32_t popc = 0;
    bool all = true;
    bool any = false;
  };
  std::array<BarRed, 2> bar_red_{};
  uint64_t bar_gen_ = 0;            // barriers opened in this block
  uint32_t cur_warp_ = 0;           // whose turn it is
  uint64_t slice_left_ = kNoSlice;  // instructions the current slice may still claim
  bool slice_progress_ = false;     // the current slice executed something
  uint64_t fuel_ = 0;               // instructions left of the current claim
  uint64_t granted_total_ = 0;      // all claims so far
};

Stop BlockRunner::run_warp(uint32_t w) {
  WarpState& W = warps_[w];
  const Inst* const code = k_.code.data();
  uint64_t* const r = regs_.data() + static_cast<size_t>(w) * nslots_ * 32;
  std::byte* const local0 = local_.data() + static_cast<size_t>(w) * 32 * k_.local_bytes;
  const uint32_t local_bytes = k_.local_bytes;
  const std::byte* const params = l_.params_.data();
  const uint64_t param_size = l_.params_.size();
  std::byte* const shared = shared_.data();
  const uint64_t shared_size = shared_size_;
  if (W.active == 0 && !reschedule(W)) return Stop::kBlocked;
  uint32_t pc = W.pc;
  uint32_t act = W.active;
  uint64_t fuel = fuel_;
  uint32_t quantum = kQuantum;
  Stop result = Stop::kYield;
  uint32_t cost_of = act, cost = popc(act);  // instructions a warp instruction costs

#define GL_FAULT_LANE(L)        \
  do {                          \
    tid_linear_ = w * 32 + (L); \
  } while (0)

  for (;;) {
    if (pc >= W.next_pc) {
      // Reached (or jumped past) lanes parked further on: the lowest pc runs.
      park(W, pc, act);
      reschedule(W);
      pc = W.pc;
      act = W.active;
    }
    if (act != cost_of) {
      cost_of = act;
      cost = popc(act);
    }
    if (fuel < cost) {
      bool slice_end = false;
      if (!get_fuel(fuel, cost, &slice_end)) {
        if (slice_end) {
          result = Stop::kSlice;
        } else {
          tid_linear_ = w * 32 + static_cast<uint32_t>(std::countr_zero(act));
          fuel_ = fuel;
          result = out_of_fuel(pc);
        }
        goto out;
      }
    }
    if (--quantum == 0) {
      result = Stop::kYield;
      goto out;
    }
    fuel -= cost;
    slice_progress_ = true;
    {
      const Inst& in = code[pc];
      uint32_t exec = act;
      if (in.guard != kSlotTrue || (in.neg & 1)) {
        const uint64_t* g = r + static_cast<size_t>(in.guard) * 32;
        uint32_t m = 0;
        for (uint32_t i = 0; i < 32; ++i) m |= (static_cast<uint32_t>(g[i]) & 1u) << i;
        if (in.neg & 1) m = ~m;
        exec &= m;
      }
      uint64_t* const rd = r + static_cast<size_t>(in.d) * 32;
      const uint64_t* const ra = r + static_cast<size_t>(in.a) * 32;
      const uint64_t* const rb = r + static_cast<size_t>(in.b) * 32;
      const uint64_t* const rc = r + static_cast<size_t>(in.c) * 32;
      const uint64_t mask = static_cast<uint64_t>(in.imm);
      if (exec == 0 && in.op != Op::kBra) {
        ++pc;
        continue;
      }
      switch (in.op) {
        case Op::kNop:
          break;
        case Op::kMov:
          GL_LANES(rd[l] = ra[l]);
          break;
        case Op::kPack64: {
          const unsigned w = in.mod ? in.mod : 32;
          const uint64_t hm = lane_mask(w);
          GL_LANES(rd[l] = (ra[l] & hm) | ((rb[l] & hm) << w));
          break;
        }
        case Op::kUnpack64: {
          const unsigned w = in.mod ? in.mod : 32;
          const uint64_t hm = lane_mask(w);
          uint64_t* const rc2 = r + static_cast<size_t>(in.c) * 32;
          GL_LANES({
            const uint64_t v = ra[l];
            rd[l] = v & hm;
            rc2[l] = (v >> w) & hm;
          });
          break;
        }
        case Op::kHalf:
          GL_LANES(rd[l] = half_op(in.imm, ra[l], rb[l], rc[l]));
          break;
        case Op::kAdd:
          GL_LANES(rd[l] = (ra[l] + rb[l]) & mask);
          break;
        case Op::kSub:
          GL_LANES(rd[l] = (ra[l] - rb[l]) & mask);
          break;
        case Op::kMulLo:
          GL_LANES(rd[l] = (ra[l] * rb[l]) & mask);
          break;
        case Op::kMadLo:
          GL_LANES(rd[l] = (ra[l] * rb[l] + rc[l]) & mask);
          break;
        case Op::kMulHiS:
        case Op::kMadHiS: {
          const unsigned wd = in.mod;
          const bool mad = in.op == Op::kMadHiS;
          GL_LANES({
            const __int128 p = static_cast<__int128>(sext(ra[l], wd)) * sext(rb[l], wd);
            uint64_t hi = static_cast<uint64_t>(p >> wd);
            if (mad) hi += rc[l];
            rd[l] = hi & mask;
          });
          break;
        }
        case Op::kMulHiU:
        case Op::kMadHiU: {
          const unsigned wd = in.mod;
          const bool mad = in.op == Op::kMadHiU;
          GL_LANES({
            const unsigned __int128 p = static_cast<unsigned __int128>(ra[l]) * rb[l];
            uint64_t hi = static_cast<uint64_t>(p >> wd);
            if (mad) hi += rc[l];
            rd[l] = hi & mask;
          });
          break;
        }
        case Op::kMulWideS:
          GL_LANES(rd[l] = static_cast<uint64_t>(sext(ra[l], in.mod) * sext(rb[l], in.mod)) & mask);
          break;
        case Op::kMulWideU:
          GL_LANES(rd[l] = (ra[l] * rb[l]) & mask);
          break;
        case Op::kMadWideS:
          GL_LANES(rd[l] =
                       (static_cast<uint64_t>(sext(ra[l], in.mod) * sext(rb[l], in.mod)) + rc[l]) &
                       mask);
          break;
        case Op::kMadWideU:
          GL_LANES(rd[l] = (ra[l] * rb[l] + rc[l]) & mask);
          break;
        case Op::kDivS:
          // PTX leaves x/0 unspecified; the sim defines it as -1 (all ones,
          // like the GPU's unsigned result) and MIN/-1 as MIN.
          GL_LANES({
            const int64_t a = sext(ra[l], in.mod), b = sext(rb[l], in.mod);
            rd[l] = (b == 0 ? ~uint64_t{0}
                            : (b == -1 ? static_cast<uint64_t>(0) - static_cast<uint64_t>(a)
                                       : static_cast<uint64_t>(a / b))) &
                    mask;
          });
          break;
        case Op::kDivU:
          GL_LANES(rd[l] = (rb[l] == 0 ? ~uint64_t{0} : ra[l] / rb[l]) & mask);
          break;
        case Op::kRemS:
          GL_LANES({
            const int64_t a = sext(ra[l], in.mod), b = sext(rb[l], in.mod);
            rd[l] =
                (b == 0 ? static_cast<uint64_t>(a) : (b == -1 ? 0 : static_cast<uint64_t>(a % b))) &
                mask;
          });
          break;
        case Op::kRemU:
          GL_LANES(rd[l] = (rb[l] == 0 ? ra[l] : ra[l] % rb[l]) & mask);
          break;
        case Op::kMinS:
          GL_LANES(rd[l] = sext(ra[l], in.mod) <= sext(rb[l], in.mod) ? ra[l] : rb[l]);
          break;
        case Op::kMaxS:
          GL_LANES(rd[l] = sext(ra[l], in.mod) >= sext(rb[l], in.mod) ? ra[l] : rb[l]);
          break;
        case Op::kMinU:
          GL_LANES(rd[l] = std::min(ra[l], rb[l]));
          break;
        case Op::kMaxU:
          GL_LANES(rd[l] = std::max(ra[l], rb[l]));
          break;
        case Op::kAnd:
          GL_LANES(rd[l] = ra[l] & rb[l]);
          break;
        case Op::kOr:
          GL_LANES(rd[l] = ra[l] | rb[l]);
          break;
        case Op::kXor:
          GL_LANES(rd[l] = ra[l] ^ rb[l]);
          break;
        case Op::kNot:
          GL_LANES(rd[l] = ~ra[l] & mask);
          break;
        case Op::kCnot:
          GL_LANES(rd[l] = ra[l] == 0 ? 1 : 0);
          break;
        case Op::kNeg:
          GL_LANES(rd[l] = (0 - ra[l]) & mask);
          break;
        case Op::kAbs:
          GL_LANES({
            const int64_t a = sext(ra[l], in.mod);
            rd[l] = (a < 0 ? 0 - static_cast<uint64_t>(a) : static_cast<uint64_t>(a)) & mask;
          });
          break;
        case Op::kShl:
          GL_LANES({
            const uint64_t s = rb[l] & 0xffffffffu;
            rd[l] = s >= in.mod ? 0 : (ra[l] << s) & mask;
          });
          break;
        case Op::kShrU:
          GL_LANES({
            const uint64_t s = rb[l] & 0xffffffffu;
            rd[l] = s >= in.mod ? 0 : ra[l] >> s;
          });
          break;
        case Op::kShrS:
          GL_LANES({
            const uint64_t s = std::min<uint64_t>(rb[l] & 0xffffffffu, in.mod - 1u);
            rd[l] = static_cast<uint64_t>(sext(ra[l], in.mod) >> s) & mask;
          });
          break;
        case Op::kPopc:
          GL_LANES(rd[l] = static_cast<uint64_t>(std::popcount(ra[l])));
          break;
        case Op::kClz:
          GL_LANES(rd[l] = static_cast<uint64_t>(std::countl_zero(ra[l]) - (64 - in.mod)));
          break;
        case Op::kBrev:
          GL_LANES({
            uint64_t v = ra[l], o = 0;
            for (unsigned i = 0; i < in.mod; ++i) o |= ((v >> i) & 1) << (in.mod - 1 - i);
            rd[l] = o;
          });
          break;
        case Op::kSelp:
          GL_LANES(rd[l] = (rc[l] & 1) ? ra[l] : rb[l]);
          break;
        case Op::kCopysign: {
          const uint64_t sign = uint64_t{1} << ((in.mod & 0x7f) - 1);
          GL_LANES(rd[l] = (rb[l] & ~sign) | (ra[l] & sign));
          break;
        }
        case Op::kFns:
          // PTX ISA: offset 0 tests bit base alone; otherwise walk from base
          // (inclusive) up (offset > 0) or down (offset < 0), counting set bits.
          GL_LANES({
            const uint32_t msk = static_cast<uint32_t>(ra[l]);
            const uint32_t base = static_cast<uint32_t>(rb[l]);
            const int32_t off = static_cast<int32_t>(static_cast<uint32_t>(rc[l]));
            uint64_t out = 0xffffffffu;
            if (off == 0) {
              if (base < 32 && (msk >> base & 1)) out = base;
            } else {
              int64_t count = (off > 0 ? int64_t{off} : -int64_t{off}) - 1;
              const int64_t inc = off > 0 ? 1 : -1;
              for (int64_t pos = base; pos >= 0 && pos < 32; pos += inc) {
                if ((msk >> pos & 1) == 0) continue;
                if (count == 0) {
                  out = static_cast<uint64_t>(pos);
                  break;
                }
                --count;
              }
            }
            rd[l] = out;
          });
          break;
        case Op::kBfind: {
          const unsigned wd = in.mod & 0x7f;
          const bool sgn = (in.mod & 0x80) != 0;
          GL_LANES({
            uint64_t v = ra[l] & lane_mask(wd);
            if (sgn && (v >> (wd - 1) & 1)) v = ~v & lane_mask(wd);
            uint64_t out = 0xffffffffu;
            if (v != 0) {
              const unsigned pos = 63u - static_cast<unsigned>(std::countl_zero(v));
              out = in.c ? wd - 1 - pos : pos;
            }
            rd[l] = out;
          });
          break;
        }
        case Op::kBfe: {
          const unsigned wd = in.mod & 0x7f;
          const bool sgn = (in.mod & 0x80) != 0;
          GL_LANES({
            const uint64_t a = ra[l];
            const unsigned pos = static_cast<unsigned>(rb[l] & 0xff);
            const unsigned len = static_cast<unsigned>(rc[l] & 0xff);
            const unsigned msb = wd - 1;
            uint64_t sbit = 0;
            if (sgn && len != 0) sbit = a >> std::min(pos + len - 1, msb) & 1;
            uint64_t d = 0;
            for (unsigned i = 0; i <= msb; ++i) {
              const uint64_t bit = (i < len && pos + i <= msb) ? (a >> (pos + i) & 1) : sbit;
              d |= bit << i;
            }
            rd[l] = d;
          });
          break;
        }
        case Op::kBfi: {
          const unsigned wd = in.mod & 0x7f;
          const uint64_t* const rlen = r + static_cast<size_t>(in.imm) * 32;
          GL_LANES({
            const unsigned pos = static_cast<unsigned>(rc[l] & 0xff);
            const unsigned len = static_cast<unsigned>(rlen[l] & 0xff);
            uint64_t f = rb[l];
            for (unsigned i = 0; i < len && pos + i < wd; ++i)
              f = (f & ~(uint64_t{1} << (pos + i))) | ((ra[l] >> i & 1) << (pos + i));
            rd[l] = f;
          });
          break;
        }
        case Op::kShf: {
          const bool clamp = in.mod & 1, right = in.mod & 2;
          GL_LANES({
            const uint64_t c = rc[l] & 0xffffffffu;
            const unsigned n = static_cast<unsigned>(clamp ? std::min<uint64_t>(c, 32) : (c & 31));
            const uint64_t x = (rb[l] & 0xffffffffu) << 32 | (ra[l] & 0xffffffffu);
            rd[l] = right ? (x >> n) & 0xffffffffu : ((x << n) >> 32) & 0xffffffffu;
          });
          break;
        }
        case Op::kLop3: {
          const uint32_t lut = static_cast<uint32_t>(in.imm);
          GL_LANES({
            const uint32_t a = static_cast<uint32_t>(ra[l]), b = static_cast<uint32_t>(rb[l]),
                           c = static_cast<uint32_t>(rc[l]);
            uint32_t d = 0;
            for (uint32_t i = 0; i < 8; ++i)
              if (lut >> i & 1) d |= ((i & 4) ? a : ~a) & ((i & 2) ? b : ~b) & ((i & 1) ? c : ~c);
            rd[l] = d;
          });
          break;
        }
        case Op::kPrmt:
          GL_LANES({
            const uint64_t x = (rb[l] & 0xffffffffu) << 32 | (ra[l] & 0xffffffffu);
            const uint64_t sel = rc[l];
            uint64_t d = 0;
            for (unsigned i = 0; i < 4; ++i) {
              const unsigned nib = static_cast<unsigned>(sel >> (4 * i)) & 15;
              uint64_t byte = x >> (8 * (nib & 7)) & 0xff;
              if (nib & 8) byte = (byte & 0x80) ? 0xff : 0;
              d |= byte << (8 * i);
            }
            rd[l] = d;
          });
          break;
        case Op::kSad: {
          const unsigned wd = in.mod & 0x7f;
          const bool sgn = (in.mod & 0x80) != 0;
          GL_LANES({
            uint64_t diff;
            if (sgn) {
              const int64_t a = sext(ra[l], wd), b = sext(rb[l], wd);
              diff = a > b ? static_cast<uint64_t>(a) - static_cast<uint64_t>(b)
                           : static_cast<uint64_t>(b) - static_cast<uint64_t>(a);
            } else {
              diff = ra[l] > rb[l] ? ra[l] - rb[l] : rb[l] - ra[l];
            }
            rd[l] = (rc[l] + diff) & mask;
          });
          break;
        }
        case Op::kDp4a:
        case Op::kDp2a: {
          const bool sa = in.mod & 1, sb = in.mod & 2, hi = in.mod & 4;
          const bool four = in.op == Op::kDp4a;
          GL_LANES({
            uint32_t acc = static_cast<uint32_t>(rc[l]);
            const uint32_t a = static_cast<uint32_t>(ra[l]), b = static_cast<uint32_t>(rb[l]);
            for (unsigned i = 0; i < (four ? 4u : 2u); ++i) {
              int64_t x, y;
              if (four) {
                const uint32_t xa = a >> (8 * i) & 0xff;
                x = sa ? static_cast<int8_t>(xa) : static_cast<int64_t>(xa);
              } else {
                const uint32_t xa = a >> (16 * i) & 0xffff;
                x = sa ? static_cast<int16_t>(xa) : static_cast<int64_t>(xa);
              }
              const unsigned bi = four ? i : i + (hi ? 2 : 0);
              const uint32_t yb = b >> (8 * bi) & 0xff;
              y = sb ? static_cast<int8_t>(yb) : static_cast<int64_t>(yb);
              acc += static_cast<uint32_t>(x * y);
            }
            rd[l] = acc;
          });
          break;
        }
        case Op::kAddC: {
          const unsigned wd = in.mod;
          const uint64_t m = lane_mask(wd);
          uint64_t* const rcc = r + static_cast<size_t>(in.imm) * 32;
          const bool cin = in.neg & 2, cout = in.neg & 4, sub = in.neg & 8;
          GL_LANES({
            const uint64_t cc = cin ? (rcc[l] & 1) : 0;
            const unsigned __int128 a = ra[l] & m, b = rb[l] & m;
            uint64_t res, flag;
            if (sub) {
              const unsigned __int128 t = a - b - cc;
              res = static_cast<uint64_t>(t) & m;
              flag = (a < b + cc) ? 1 : 0;
            } else {
              const unsigned __int128 t = a + b + cc;
              res = static_cast<uint64_t>(t) & m;
              flag = static_cast<uint64_t>(t >> wd) & 1;
            }
            rd[l] = res;
            if (cout) rcc[l] = flag;
          });
          break;
        }
        case Op::kMadC: {
          const unsigned wd = in.mod & 0x3f;
          const uint64_t m = lane_mask(wd);
          const bool hi = in.mod & 0x80, sgn = in.mod & 0x40;
          uint64_t* const rcc = r + static_cast<size_t>(in.imm) * 32;
          const bool cin = in.neg & 2, cout = in.neg & 4;
          GL_LANES({
            unsigned __int128 p;
            if (sgn)
              p = static_cast<unsigned __int128>(static_cast<__int128>(sext(ra[l], wd)) *
                                                 sext(rb[l], wd));
            else
              p = static_cast<unsigned __int128>(ra[l] & m) * (rb[l] & m);
            const uint64_t part = static_cast<uint64_t>(hi ? p >> wd : p) & m;
            const unsigned __int128 t =
                static_cast<unsigned __int128>(part) + (rc[l] & m) + (cin ? (rcc[l] & 1) : 0);
            rd[l] = static_cast<uint64_t>(t) & m;
            if (cout) rcc[l] = static_cast<uint64_t>(t >> wd) & 1;
          });
          break;
        }
        case Op::kSetpS:
        case Op::kSetpU: {
          const auto cmp = static_cast<Cmp>(in.imm & 0xff);
          const bool sgn = in.op == Op::kSetpS;
          const unsigned wd = in.mod;
          // Signed compares as unsigned after flipping the sign bit.
          const uint64_t flip = sgn ? uint64_t{1} << 63 : 0;
          const unsigned sh = 64 - wd;
#define GL_SETP(EXPR)                                                                             \
  GL_LANES({                                                                                      \
    const uint64_t a = (sgn ? static_cast<uint64_t>(sext(ra[l], wd)) : ra[l] << sh >> sh) ^ flip; \
    const uint64_t b = (sgn ? static_cast<uint64_t>(sext(rb[l], wd)) : rb[l] << sh >> sh) ^ flip; \
    rd[l] = (EXPR);                                                                               \
  })
          if ((in.imm >> 8 & 3) == 0) {
            switch (cmp) {
              case Cmp::kEq:
                GL_SETP(a == b);
                break;
              case Cmp::kNe:
                GL_SETP(a != b);
                break;
              case Cmp::kLt:
                GL_SETP(a < b);
                break;
              case Cmp::kLe:
                GL_SETP(a <= b);
                break;
              case Cmp::kGt:
                GL_SETP(a > b);
                break;
              default:
                GL_SETP(a >= b);
                break;
            }
          } else {
            GL_SETP(combine(icmp<uint64_t>(cmp, a, b), in.imm, rc[l]));
          }
#undef GL_SETP
          break;
        }
        case Op::kSetpF32: {
          const auto cmp = static_cast<Cmp>(in.imm & 0xff);
          GL_LANES(rd[l] = combine(fcmp<float>(cmp, f32(ra[l]), f32(rb[l])), in.imm, rc[l]));
          break;
        }
        case Op::kSetpF64: {
          const auto cmp = static_cast<Cmp>(in.imm & 0xff);
          GL_LANES(rd[l] = combine(fcmp<double>(cmp, f64(ra[l]), f64(rb[l])), in.imm, rc[l]));
          break;
        }
#define GL_F32_BIN(NAME, EXPR)              \
  case Op::NAME:                            \
    GL_LANES({                              \
      float a = f32(ra[l]), b = f32(rb[l]); \
      if (in.mod & kFlagFtz) {              \
        a = ftz(a);                         \
        b = ftz(b);                         \
      }                                     \
      float v = (EXPR);                     \
      if (in.mod) {                         \
        if (in.mod & kFlagFtz) v = ftz(v);  \
        if (in.mod & kFlagSat) v = sat(v);  \
      }                                     \
      rd[l] = bits(v);                      \
    });                                     \
    break;
          GL_F32_BIN(kAddF32, a + b)
          GL_F32_BIN(kSubF32, a - b)
          GL_F32_BIN(kMulF32, a * b)
          GL_F32_BIN(kDivF32, a / b)
          GL_F32_BIN(kMinF32, pmin(a, b))
          GL_F32_BIN(kMaxF32, pmax(a, b))
#undef GL_F32_BIN
        case Op::kFmaF32:
          if (in.mod == 0 && kHostFma) {
            fma_f32_lanes_hw(exec, rd, ra, rb, rc);
            break;
          }
          GL_LANES({
            float a = f32(ra[l]), b = f32(rb[l]), c = f32(rc[l]);
            if (in.mod & kFlagFtz) {
              a = ftz(a);
              b = ftz(b);
              c = ftz(c);
            }
            float v = std::fma(a, b, c);
            if (in.mod) {
              if (in.mod & kFlagFtz) v = ftz(v);
              if (in.mod & kFlagSat) v = sat(v);
            }
            rd[l] = bits(v);
          });
          break;
#define GL_F32_UN(NAME, EXPR)              \
  case Op::NAME:                           \
    GL_LANES({                             \
      float a = f32(ra[l]);                \
      if (in.mod & kFlagFtz) a = ftz(a);   \
      float v = (EXPR);                    \
      if (in.mod) {                        \
        if (in.mod & kFlagFtz) v = ftz(v); \
        if (in.mod & kFlagSat) v = sat(v); \
      }                                    \
      rd[l] = bits(v);                     \
    });                                    \
    break;
          GL_F32_UN(kSqrtF32, std::sqrt(a))
          GL_F32_UN(kRcpF32, 1.0f / a)
          GL_F32_UN(kRsqrtF32, 1.0f / std::sqrt(a))
          GL_F32_UN(kEx2F32, std::exp2(a))
          GL_F32_UN(kLg2F32, std::log2(a))
          GL_F32_UN(kSinF32, std::sin(a))
          GL_F32_UN(kCosF32, std::cos(a))
          GL_F32_UN(kTanhF32, std::tanh(a))
#undef GL_F32_UN
        case Op::kNegF32:
          GL_LANES(rd[l] = (ra[l] ^ 0x80000000u) & 0xffffffffu);
          break;
        case Op::kAbsF32:
          GL_LANES(rd[l] = ra[l] & 0x7fffffffu);
          break;
        case Op::kAddF64:
          GL_LANES(rd[l] = bits(f64(ra[l]) + f64(rb[l])));
          break;
        case Op::kSubF64:
          GL_LANES(rd[l] = bits(f64(ra[l]) - f64(rb[l])));
          break;
        case Op::kMulF64:
          GL_LANES(rd[l] = bits(f64(ra[l]) * f64(rb[l])));
          break;
        case Op::kDivF64:
          GL_LANES(rd[l] = bits(f64(ra[l]) / f64(rb[l])));
          break;
        case Op::kFmaF64:
          GL_LANES(rd[l] = bits(std::fma(f64(ra[l]), f64(rb[l]), f64(rc[l]))));
          break;
        case Op::kMinF64:
          GL_LANES(rd[l] = bits(pmin(f64(ra[l]), f64(rb[l]))));
          break;
        case Op::kMaxF64:
          GL_LANES(rd[l] = bits(pmax(f64(ra[l]), f64(rb[l]))));
          break;
        case Op::kNegF64:
          GL_LANES(rd[l] = ra[l] ^ (uint64_t{1} << 63));
          break;
        case Op::kAbsF64:
          GL_LANES(rd[l] = ra[l] & ~(uint64_t{1} << 63));
          break;
        case Op::kSqrtF64:
          GL_LANES(rd[l] = bits(std::sqrt(f64(ra[l]))));
          break;
        case Op::kRcpF64:
          GL_LANES(rd[l] = bits(1.0 / (in.c ? ftz64(f64(ra[l])) : f64(ra[l]))));
          break;
        case Op::kRsqrtF64:
          GL_LANES(rd[l] = bits(1.0 / std::sqrt(in.c ? ftz64(f64(ra[l])) : f64(ra[l]))));
          break;
        case Op::kCvtInt:
          GL_LANES({
            const uint64_t v = in.c
                                   ? static_cast<uint64_t>(sext(ra[l], in.mod))
                                   : (in.mod >= 64 ? ra[l] : ra[l] & ((uint64_t{1} << in.mod) - 1));
            rd[l] = v & mask;
          });
          break;
        case Op::kFDir: {
          RoundingMode mode(fe_mode((in.mod >> 4) & 3));
          directed_lanes(in, exec, rd, ra, rb, rc);
          break;
        }
        case Op::kCvt: {
          const auto st = static_cast<Ty>(in.b), dt = static_cast<Ty>(in.c);
          const auto rnd = static_cast<Rnd>(in.mod & 15);
          const auto fl = static_cast<uint8_t>(in.mod >> 4);
          if (ty_float(dt) && (rnd == Rnd::kRz || rnd == Rnd::kRm || rnd == Rnd::kRp)) {
            RoundingMode mode(fe_mode(rnd == Rnd::kRz ? 1 : rnd == Rnd::kRm ? 2 : 3));
            convert_lanes(exec, rd, ra, st, dt, rnd, fl);
            break;
          }
          GL_LANES(rd[l] = convert(ra[l], st, dt, rnd, fl));
          break;
        }
        case Op::kLdGlobal: {
          const uint32_t size = 1u << (in.mod & 3);
          if (size >= 4 && !(in.mod & kLdSigned) && exec == kFullWarp) {
            // The common case, specialised: 32 lanes, 4 or 8 bytes, no
            // extension; any lane that needs a fault message takes the
            // general loop below.
            bool ok = true;
#define GL_LD_FAST(T)                                                                           \
  for (uint32_t l = 0; l < 32; ++l) {                                                           \
    const uint64_t addr = ra[l] + mask;                                                         \
    const uint64_t off = addr - cache_.base;                                                    \
    if ((addr & (sizeof(T) - 1)) != 0 || off >= cache_.size || sizeof(T) > cache_.size - off) { \
      const std::byte* p = (addr & (sizeof(T) - 1)) ? nullptr : gptr(addr, sizeof(T), false);   \
      if (p == nullptr) {                                                                       \
        ok = false;                                                                             \
        break;                                                                                  \
      }                                                                                         \
      rd[l] = __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_RELAXED);                 \
      continue;                                                                                 \
    }                                                                                           \
    rd[l] = __atomic_load_n(reinterpret_cast<const T*>(cache_.data + off), __ATOMIC_RELAXED);   \
  }
            if (size == 4) {
              GL_LD_FAST(uint32_t)
            } else {
              GL_LD_FAST(uint64_t)
            }
#undef GL_LD_FAST
            if (ok) break;
          }
          GL_LANES({
            const uint64_t addr = ra[l] + mask;
            if ((addr & (size - 1)) != 0) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, "misaligned address", Space::kGlobal, "ld", addr, size);
              goto out;
            }
            const std::byte* p = gptr(addr, size, false);
            if (p == nullptr) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, "illegal address", Space::kGlobal, "ld", addr, size);
              goto out;
            }
            rd[l] = extend(load_raw(p, size, true), in.mod);
          });
          break;
        }
        case Op::kStGlobal: {
          const uint32_t size = 1u << (in.mod & 3);
          if (size >= 4 && exec == kFullWarp) {
            bool ok = true;
#define GL_ST_FAST(T)                                                                           \
  for (uint32_t l = 0; l < 32; ++l) {                                                           \
    const uint64_t addr = ra[l] + mask;                                                         \
    const uint64_t off = addr - cache_.base;                                                    \
    std::byte* p;                                                                               \
    if ((addr & (sizeof(T) - 1)) != 0 || off >= cache_.size || sizeof(T) > cache_.size - off) { \
      p = (addr & (sizeof(T) - 1)) ? nullptr : gptr(addr, sizeof(T), true);                     \
      if (p == nullptr) {                                                                       \
        ok = false;                                                                             \
        break;                                                                                  \
      }                                                                                         \
    } else {                                                                                    \
      p = cache_.data + off;                                                                    \
    }                                                                                           \
    __atomic_store_n(reinterpret_cast<T*>(p), static_cast<T>(rb[l]), __ATOMIC_RELAXED);         \
  }
            if (size == 4) {
              GL_ST_FAST(uint32_t)
            } else {
              GL_ST_FAST(uint64_t)
            }
#undef GL_ST_FAST
            if (ok) break;
          }
          GL_LANES({
            const uint64_t addr = ra[l] + mask;
            if ((addr & (size - 1)) != 0) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, "misaligned address", Space::kGlobal, "st", addr, size);
              goto out;
            }
            std::byte* p = gptr(addr, size, true);
            if (p == nullptr) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, "illegal address", Space::kGlobal, "st", addr, size);
              goto out;
            }
            store_raw(p, size, rb[l], true);
          });
          break;
        }
        case Op::kLdShared: {
          const uint32_t size = 1u << (in.mod & 3);
          GL_LANES({
            const uint64_t addr = ra[l] + mask;
            if (addr >= shared_size || size > shared_size - addr || (addr & (size - 1)) != 0) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, (addr & (size - 1)) ? "misaligned address" : "illegal address",
                                 Space::kShared, "ld", addr, size);
              goto out;
            }
            rd[l] = extend(load_raw(shared + addr, size, false), in.mod);
          });
          break;
        }
        case Op::kStShared: {
          const uint32_t size = 1u << (in.mod & 3);
          GL_LANES({
            const uint64_t addr = ra[l] + mask;
            if (addr >= shared_size || size > shared_size - addr || (addr & (size - 1)) != 0) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, (addr & (size - 1)) ? "misaligned address" : "illegal address",
                                 Space::kShared, "st", addr, size);
              goto out;
            }
            store_raw(shared + addr, size, rb[l], false);
          });
          break;
        }
        case Op::kLdParam: {
          const uint32_t size = 1u << (in.mod & 3);
          if (in.a == kSlotZero) {  // [name+off]: the same value for every lane
            const uint64_t addr = mask;
            if (addr >= param_size || size > param_size - addr) {
              GL_FAULT_LANE(static_cast<uint32_t>(std::countr_zero(exec)));
              result = mem_fault(pc, "illegal address", Space::kParam, "ld", addr, size);
              goto out;
            }
            const uint64_t v = extend(load_raw(params + addr, size, false), in.mod);
            GL_LANES(rd[l] = v);
            break;
          }
          GL_LANES({
            const uint64_t addr = ra[l] + mask;
            if (addr >= param_size || size > param_size - addr) {
              GL_FAULT_LANE(l);
              result = mem_fault(pc, "illegal address", Space::kParam, "ld", addr, size);
              goto out;
            }
            rd[l] = extend(load_raw(params + addr, size, false), in.mod);
          });
          break;
        }
        case Op::kLdLocal:
        case Op::kLdGeneric: {
          const uint32_t size = 1u << (in.mod & 3);
          const Space sp = in.op == Op::kLdLocal ? Space::kLocal : Space::kGeneric;
          GL_LANES({
            Space actual;
            GL_FAULT_LANE(l);
            const std::byte* p =
                resolve(sp, ra[l] + mask, size, size, local0 + static_cast<size_t>(l) * local_bytes,
                        pc, "ld", &actual);
            if (p == nullptr) {
              result = Stop::kFault;
              goto out;
            }
            rd[l] = extend(load_raw(p, size, actual == Space::kGlobal), in.mod);
          });
          break;
        }
        case Op::kStLocal:
        case Op::kStGeneric: {
          const uint32_t size = 1u << (in.mod & 3);
          const Space sp = in.op == Op::kStLocal ? Space::kLocal : Space::kGeneric;
          GL_LANES({
            Space actual;
            GL_FAULT_LANE(l);
            std::byte* p =
                resolve(sp, ra[l] + mask, size, size, local0 + static_cast<size_t>(l) * local_bytes,
                        pc, "st", &actual);
            if (p == nullptr) {
              result = Stop::kFault;
              goto out;
            }
            store_raw(p, size, rb[l], actual == Space::kGlobal);
          });
          break;
        }
        case Op::kLdVec:
        case Op::kStVec: {
          const bool is_ld = in.op == Op::kLdVec;
          GL_LANES({
            GL_FAULT_LANE(l);
            if (!vec_access(in, r, l, local0 + static_cast<size_t>(l) * local_bytes, pc, is_ld)) {
              result = Stop::kFault;
              goto out;
            }
          });
          break;
        }
        case Op::kLea:
          GL_LANES(rd[l] = ra[l] + static_cast<uint64_t>(in.imm));
          break;
        case Op::kCpAsync:
          GL_LANES({
            GL_FAULT_LANE(l);
            if (!cp_async(in, ra[l], rb[l], rc[l], pc)) {
              result = Stop::kFault;
              goto out;
            }
          });
          break;
        case Op::kAtom:
          GL_LANES({
            GL_FAULT_LANE(l);
            if (!do_atom(in, r, l, local0 + static_cast<size_t>(l) * local_bytes, pc)) {
              result = Stop::kFault;
              goto out;
            }
          });
          break;
        case Op::kShfl:
        case Op::kVote:
        case Op::kMatch:
        case Op::kRedux:
        case Op::kWmmaLoad:
        case Op::kWmmaStore:
        case Op::kWmmaMma:
        case Op::kWarpSync: {
          // Wait until every live lane of the membermask is here.
          const uint32_t need = member_mask(r, member_slot(in), exec) & W.live;
          if ((need & ~exec) != 0) {
            uint32_t here = 0;
            for (uint32_t m = W.wsync; m != 0; m &= m - 1) {
              const uint32_t j = static_cast<uint32_t>(std::countr_zero(m));
              if (W.pcs[j] == pc) here |= 1u << j;
            }
            if ((need & ~(exec | here)) != 0) {
              park(W, pc, exec);
              W.wsync |= exec;
              park(W, pc + 1, act & ~exec);  // guarded-off lanes go on
              if (!reschedule(W)) {
                result = Stop::kBlocked;
                W.active = 0;
                fuel_ = fuel;
                return result;
              }
              pc = W.pc;
              act = W.active;
              continue;
            }
            W.wsync &= ~here;
            exec |= here;
            act |= here;
          }
          const uint32_t part = exec & (need | exec);
          switch (in.op) {
            case Op::kShfl: {
              uint64_t src[32];
              for (uint32_t i = 0; i < 32; ++i) src[i] = ra[i];
              uint64_t* const rp =
                  r + static_cast<size_t>(static_cast<uint64_t>(in.imm) >> 32) * 32;
              const uint32_t mode = in.mod & 3;
              GL_LANES({
                const int32_t lane = static_cast<int32_t>(l);
                const int32_t bval = static_cast<int32_t>(rb[l] & 31);
                const int32_t cval = static_cast<int32_t>(rc[l] & 31);
                const int32_t seg = static_cast<int32_t>((rc[l] >> 8) & 31);
                const int32_t max_lane = (lane & seg) | (cval & ~seg);
                const int32_t min_lane = lane & seg;
                int32_t j = lane;
                bool ok = false;
                switch (mode) {
                  case 0:
                    j = lane - bval;
                    ok = j >= max_lane;
                    break;
                  case 1:
                    j = lane + bval;
                    ok = j <= max_lane;
                    break;
                  case 2:
                    j = lane ^ bval;
                    ok = j <= max_lane;
                    break;
                  default:
                    j = min_lane | (bval & ~seg);
                    ok = j <= max_lane;
                    break;
                }
                if (!ok) j = lane;
                rd[l] = src[j & 31];
                rp[l] = ok ? 1 : 0;
              });
              break;
            }
            case Op::kVote: {
              uint32_t ballot = 0;
              const uint32_t neg = (in.mod >> 2) & 1;
              GL_LANES(ballot |= ((static_cast<uint32_t>(ra[l]) & 1u) ^ neg) << l);
              uint64_t v = 0;
              switch (in.mod & 3) {
                case 0:
                  v = ballot == part;
                  break;
                case 1:
                  v = ballot != 0;
                  break;
                case 2:
                  v = ballot == 0 || ballot == part;
                  break;
                default:
                  v = ballot;
                  break;
              }
              GL_LANES(rd[l] = v);
              break;
            }
            case Op::kMatch: {
              uint64_t vals[32];
              for (uint32_t i = 0; i < 32; ++i) vals[i] = ra[i];
              uint64_t* const rp = r + static_cast<size_t>(in.c) * 32;
              bool all = true;
              const uint32_t first = static_cast<uint32_t>(std::countr_zero(part));
              for (uint32_t m = part; m != 0; m &= m - 1)
                if (vals[std::countr_zero(m)] != vals[first]) all = false;
              GL_LANES({
                if (in.mod == 1) {
                  rd[l] = all ? part : 0;
                  rp[l] = all ? 1 : 0;
                } else {
                  uint32_t same = 0;
                  for (uint32_t m = part; m != 0; m &= m - 1) {
                    const uint32_t j = static_cast<uint32_t>(std::countr_zero(m));
                    if (vals[j] == vals[l]) same |= 1u << j;
                  }
                  rd[l] = same;
                }
              });
              break;
            }
            case Op::kRedux: {
              const uint32_t op = in.mod & 7;
              const bool sgn = (in.mod & 8) != 0;
              uint32_t acc = 0;
              bool first = true;
              GL_LANES({
                const uint32_t v = static_cast<uint32_t>(ra[l]);
                if (first) {
                  acc = v;
                  first = false;
                } else {
                  switch (op) {
                    case 0:
                      acc += v;
                      break;
                    case 1:
                      acc = sgn ? (static_cast<int32_t>(v) < static_cast<int32_t>(acc) ? v : acc)
                                : std::min(acc, v);
                      break;
                    case 2:
                      acc = sgn ? (static_cast<int32_t>(v) > static_cast<int32_t>(acc) ? v : acc)
                                : std::max(acc, v);
                      break;
                    case 3:
                      acc &= v;
                      break;
                    case 4:
                      acc |= v;
                      break;
                    default:
                      acc ^= v;
                      break;
                  }
                }
              });
              GL_LANES(rd[l] = acc);
              break;
            }
            case Op::kWmmaLoad:
            case Op::kWmmaStore:
            case Op::kWmmaMma:
              if (part != kFullWarp) {
                GL_FAULT_LANE(static_cast<uint32_t>(std::countr_zero(part)));
                l_.set_fault("wmma needs all 32 lanes of the warp" + where(pc));
                result = Stop::kFault;
                goto out;
              }
              if (!wmma(in, r, w, local0, local_bytes, pc)) {
                result = Stop::kFault;
                goto out;
              }
              break;
            default:  // bar.warp.sync
              break;
          }
          break;
        }
        case Op::kActiveMask:
          GL_LANES(rd[l] = act);
          break;
        case Op::kTrap: {
          GL_FAULT_LANE(static_cast<uint32_t>(std::countr_zero(exec)));
          l_.set_fault(std::string(in.mod == 2   ? "device-side assertion failed"
                                   : in.mod == 1 ? "brkpt executed"
                                                 : "trap executed") +
                       where(pc));
          result = Stop::kFault;
          goto out;
        }
        case Op::kLaneMask:
          GL_LANES({
            const uint64_t eq = uint64_t{1} << l, lt = eq - 1, le = lt | eq;
            rd[l] = (in.mod == 0   ? eq
                     : in.mod == 1 ? le
                     : in.mod == 2 ? lt
                     : in.mod == 3 ? ~lt
                                   : ~le) &
                    0xffffffffu;
          });
          break;
        case Op::kClock: {
          uint64_t v = 0;
          if (in.mod <= 2) {
            v = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
            if (in.mod == 0) v &= 0xffffffffu;
            if (in.mod == 1) v >>= 32;
          } else {
            v = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
            if (in.mod == 4) v &= 0xffffffffu;
            if (in.mod == 5) v >>= 32;
          }
          GL_LANES(rd[l] = v);
          break;
        }
        case Op::kBra: {
          const uint32_t target = static_cast<uint32_t>(in.imm);
          if (exec == act) {
            if (target <= pc && W.next_pc != kNoPc && (in.mod & kBraSpin) &&
                ++W.spins >= kSpinYield) {
              W.spins = 0;
              yield_ahead(W, target, act);
              pc = W.pc;
              act = W.active;
              continue;
            }
            pc = target;
            continue;
          }
          if (exec == 0) break;
          park(W, target, exec);
          park(W, pc + 1, act & ~exec);
          reschedule(W);
          pc = W.pc;
          act = W.active;
          continue;
        }
        case Op::kCall: {
          const CallSite& cs = k_.calls[static_cast<size_t>(in.imm)];
          uint64_t* const rret = r + static_cast<size_t>(cs.ret_slot) * 32;
          GL_LANES({
            std::byte* const lm = local0 + static_cast<size_t>(l) * local_bytes;
            for (const CallSite::Copy& cp : cs.args)
              std::memmove(lm + cp.dst, lm + cp.src, cp.size);
            rret[l] = pc + 1;
          });
          if (exec == act) {
            pc = cs.target;
            continue;
          }
          park(W, cs.target, exec);
          park(W, pc + 1, act & ~exec);
          reschedule(W);
          pc = W.pc;
          act = W.active;
          continue;
        }
        case Op::kCallRet: {
          const CallSite& cs = k_.calls[static_cast<size_t>(in.imm)];
          GL_LANES({
            std::byte* const lm = local0 + static_cast<size_t>(l) * local_bytes;
            for (const CallSite::Copy& cp : cs.rets)
              std::memmove(lm + cp.dst, lm + cp.src, cp.size);
          });
          break;
        }
        case Op::kRetFunc: {
          // Each lane returns to where it was called from.
          const uint32_t first = static_cast<uint32_t>(std::countr_zero(exec));
          const uint64_t to = ra[first];
          bool same = true;
          GL_LANES(same = same && ra[l] == to);
          if (same && exec == act && to < k_.code.size()) {
            pc = static_cast<uint32_t>(to);
            continue;
          }
          for (uint32_t m = exec; m != 0; m &= m - 1) {
            const uint32_t l = static_cast<uint32_t>(std::countr_zero(m));
            W.pcs[l] = static_cast<uint32_t>(std::min<uint64_t>(ra[l], k_.code.size() - 1));
          }
          park(W, pc + 1, act & ~exec);
          reschedule(W);
          pc = W.pc;
          act = W.active;
          continue;
        }
        case Op::kBarRed: {
          // After a bar.red opened: the reduction of the barrier just passed.
          const BarRed& R = bar_red_[(bar_gen_ - 1) & 1];
          const uint64_t v = in.mod == 1 ? R.popc : in.mod == 2 ? (R.all ? 1 : 0) : (R.any ? 1 : 0);
          GL_LANES(rd[l] = v);
          break;
        }
        case Op::kBar:
          if (in.mod != 0) {
            BarRed& R = bar_red_[bar_gen_ & 1];
            GL_LANES({
              const bool p = (ra[l] & 1) != 0;
              R.popc += p ? 1 : 0;
              R.all = R.all && p;
              R.any = R.any || p;
            });
          }
          park(W, pc + 1, act);
          W.bar |= exec;
          bar_count_ += popc(exec);
          if (!reschedule(W)) {
            fuel_ = fuel;
            return Stop::kBlocked;
          }
          pc = W.pc;
          act = W.active;
          continue;
        case Op::kRet:
          W.live &= ~exec;
          live_threads_ -= popc(exec);
          act &= ~exec;
          if (act == 0) {
            if (!reschedule(W)) {
              fuel_ = fuel;
              return Stop::kBlocked;
            }
            pc = W.pc;
            act = W.active;
            continue;
          }
          break;
      }
    }
    ++pc;
  }
out:
  W.pc = pc;
  W.active = act;
  fuel_ = fuel;
  return result;
#undef GL_FAULT_LANE
}

#undef GL_LANES

Launch::~Launch() = default;

void Launch::run_blocks(uint64_t first, uint64_t count) {
  if (stopped()) return;
  // One runner (and its scratch state, up to max_block_state_bytes) per
  // concurrent caller for the whole launch, not one per chunk of blocks.
  std::unique_ptr<BlockRunner> runner;
  {
    std::lock_guard<std::mutex> lk(runners_mu_);
    if (!runners_.empty()) {
      runner = std::move(runners_.back());
      runners_.pop_back();
    }
  }
  if (!runner) runner = std::make_unique<BlockRunner>(*this);
  for (uint64_t i = first; i < first + count && i < total_blocks_; ++i) {
    if (stopped() || !runner->run_block(i)) break;
  }
  runner->settle();
  std::lock_guard<std::mutex> lk(runners_mu_);
  runners_.push_back(std::move(runner));
}

bool Launch::run_slice(uint64_t max_instructions) {
  if (slice_done_) return true;
  if (stopped()) {
    slice_done_ = true;
    slice_runner_.reset();
    return true;
  }
  if (max_instructions == 0) return false;
  if (!slice_runner_) slice_runner_ = std::make_unique<BlockRunner>(*this);
  BlockRunner& r = *slice_runner_;
  r.set_slice(max_instructions);
  bool done = false;
  for (;;) {
    if (!slice_in_block_) {
      if (slice_next_block_ >= total_blocks_) {
        done = true;
        break;
      }
      if (!r.start_block(slice_next_block_++)) {
        done = true;  // stopped: fault, budget or cancel
        break;
      }
      slice_in_block_ = true;
    }
    const Stop s = r.resume_block();
    if (s == Stop::kSlice) break;
    slice_in_block_ = false;
    if (s == Stop::kFault) {
      done = true;
      break;
    }
  }
  r.set_slice(BlockRunner::kNoSlice);
  r.settle();
  if (done) {
    slice_done_ = true;
    slice_runner_.reset();
  }
  return done;
}

}  // namespace gpulease::sim
