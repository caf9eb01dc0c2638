// The cuda_fp16.h / cuda_bf16.h API (kernels/fp16api.cu) as nvcc emits it for
// compute_75, 80 and 90, with and without --use_fast_math: every function on
// special values (zeros, infinities, NaNs, subnormals, the extremes, values
// around 1) and pseudo-random bit patterns, against a CPU reference that
// shares nothing with the interpreter (it rounds by brute force over every
// value of the format). Exact functions must match bit for bit (any NaN for
// a NaN result where the API does not promise the canonical one); the
// approximate ones (hexp, hsin, ...) must be within the bound given below.
// Also atomicAdd on every half type and 16-bit atomicCAS.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sim_harness.hpp"

namespace gpulease::sim::testing {
namespace {

double decode(uint16_t h, bool bf) {
  if (bf) {
    uint32_t b = uint32_t{h} << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  const int e = h >> 10 & 31, m = h & 1023;
  if (e == 31) return m ? NAN : ((h & 0x8000) ? -INFINITY : INFINITY);
  const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(m | 1024), e - 25);
  return (h & 0x8000) ? -mag : mag;
}
bool is_nan(uint16_t h, bool bf) {
  return std::isnan(decode(h, bf));
}

// All finite non-negative values of a format, ascending.
const std::vector<std::pair<double, uint16_t>>& table(bool bf) {
  static std::map<bool, std::vector<std::pair<double, uint16_t>>> t;
  auto& x = t[bf];
  if (x.empty()) {
    for (uint32_t h = 0; h < 0x8000; ++h) {
      const double d = decode(uint16_t(h), bf);
      if (std::isfinite(d)) x.emplace_back(d, uint16_t(h));
    }
    std::sort(x.begin(), x.end());
  }
  return x;
}

// The value s + e (e: an error term far below s's last bit, from two_sum)
// rounded to nearest, ties to even, overflow to infinity.
uint16_t nearest(double s, bool bf, double e = 0) {
  if (std::isnan(s)) return 0x7fff;
  const auto& t = table(bf);
  const bool neg = std::signbit(s) || (s == 0 && e < 0);
  const uint16_t sign = neg ? 0x8000 : 0;
  const double a = std::fabs(s), ea = neg ? -e : e;
  const uint16_t inf = bf ? 0x7f80 : 0x7c00;
  if (std::isinf(a)) return sign | inf;
  const double maxf = t.back().first, ulp_max = maxf - t[t.size() - 2].first;
  const double lim = maxf + ulp_max / 2;
  if (a > lim || (a == lim && ea >= 0)) return sign | inf;
  auto it = std::lower_bound(t.begin(), t.end(), std::make_pair(a, uint16_t(0)));
  if (it == t.end()) return sign | t.back().second;
  if (it->first == a) {
    // Exactly representable, unless the error term crosses it: then the
    // value is between it and a neighbour, far from their midpoint.
    return sign | it->second;
  }
  auto lo = it - 1;
  const double dl = a - lo->first, dh = it->first - a;
  if (dl < dh) return sign | lo->second;
  if (dh < dl) return sign | it->second;
  if (ea > 0) return sign | it->second;
  if (ea < 0) return sign | lo->second;
  return sign | ((lo->second & 1) ? it->second : lo->second);
}

void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double bb = s - a;
  e = std::isfinite(s) ? (a - (s - bb)) + (b - bb) : 0;
}

// What a function must give: exact bits, any NaN, or within `ulps` of bits.
struct Want {
  uint32_t bits = 0;
  bool any_nan = false;
  int ulps = 0;
};

// Monotonic index of a finite value (both zeros -> 0).
int64_t order(uint16_t h) {
  const int64_t m = h & 0x7fff;
  return (h & 0x8000) ? -m : m;
}

bool matches(uint32_t got, const Want& w, bool bf) {
  const auto g = uint16_t(got);
  if (!w.any_nan && w.ulps == 0) return got == w.bits;
  if (got > 0xffff) return false;
  if (w.any_nan) return is_nan(g, bf);
  const auto want = uint16_t(w.bits);
  if (is_nan(want, bf)) return is_nan(g, bf);
  if (is_nan(g, bf)) return false;
  if (std::isinf(decode(want, bf)) || std::isinf(decode(g, bf))) {
    // An infinity is right if the finite neighbour is within the bound.
    return std::llabs(order(g) - order(want)) <= w.ulps;
  }
  return std::llabs(order(g) - order(want)) <= w.ulps;
}

Want exact(uint32_t bits) {
  Want w;
  w.bits = bits;
  return w;
}
// An arithmetic result: NaN results may be any NaN.
Want arith(double s, bool bf, double e = 0) {
  Want w;
  if (std::isnan(s)) {
    w.any_nan = true;
    return w;
  }
  w.bits = nearest(s, bf, e);
  return w;
}
Want approx(double v, bool bf, int ulps) {
  Want w = arith(v, bf);
  w.ulps = ulps;
  return w;
}

bool cmp(int k, double x, double y) {
  const bool un = std::isnan(x) || std::isnan(y);
  switch (k) {
    case 0:
      return !un && x == y;
    case 1:
      return !un && x != y;
    case 2:
      return !un && x < y;
    case 3:
      return !un && x <= y;
    case 4:
      return !un && x > y;
    case 5:
      return !un && x >= y;
    case 6:
      return un || x == y;
    case 7:
      return un || x != y;
    case 8:
      return un || x < y;
    case 9:
      return un || x <= y;
    case 10:
      return un || x > y;
    default:
      return un || x >= y;
  }
}

uint16_t one(bool bf) {
  return bf ? 0x3f80 : 0x3c00;
}

// max / min: the non-NaN operand; +0 above -0; both NaN (or, with nan_wins,
// either) -> canonical NaN.
uint16_t minmax(bool is_max, bool nan_wins, uint16_t a, uint16_t b, bool bf) {
  const double x = decode(a, bf), y = decode(b, bf);
  const bool nx = std::isnan(x), ny = std::isnan(y);
  if ((nx && ny) || (nan_wins && (nx || ny))) return 0x7fff;
  if (nx) return b;
  if (ny) return a;
  if (x == y) return (is_max == !std::signbit(x)) ? a : b;
  return ((x > y) == is_max) ? a : b;
}

uint16_t clamp01(uint16_t r, bool bf) {
  if (is_nan(r, bf) || (r & 0x8000)) return 0;
  return decode(r, bf) > 1 ? one(bf) : r;
}

// The reference for one scalar function (ops as in kernels/fp16api.cu).
// Returns false for ops that are not scalar functions of (a, b, c).
bool scalar_ref(int op, uint16_t a, uint16_t b, uint16_t c, bool bf, Want& w, bool arch75 = false) {
  const double x = decode(a, bf), y = decode(b, bf), z = decode(c, bf);
  if (bf && arch75 && (op == 11 || op == 12) && !std::isnan(x) && !std::isnan(y) && x == y) {
    // Below sm_80 cuda_bf16.hpp computes __hmax_nan / __hmin_nan as
    // __hge(a, b) ? a : b (__hle for min): a for equal values, -0 included.
    w = exact(a);
    return true;
  }
  double s, e;
  switch (op) {
    case 0:
      two_sum(x, y, s, e);
      w = arith(s, bf, e);
      return true;
    case 1:
      two_sum(x, -y, s, e);
      w = arith(s, bf, e);
      return true;
    case 2:
      w = arith(x * y, bf);
      return true;
    case 3:
      two_sum(x * y, z, s, e);
      w = arith(s, bf, e);
      return true;
    case 4:
      two_sum(x, y, s, e);
      w = exact(clamp01(nearest(s, bf, e), bf));
      return true;
    case 5:
      two_sum(x, -y, s, e);
      w = exact(clamp01(nearest(s, bf, e), bf));
      return true;
    case 6:
      w = exact(clamp01(nearest(x * y, bf), bf));
      return true;
    case 7:
      two_sum(x * y, z, s, e);
      w = exact(clamp01(nearest(s, bf, e), bf));
      return true;
    case 8: {  // relu: negative (and -0) -> +0, NaN -> canonical NaN
      two_sum(x * y, z, s, e);
      const uint16_t r = nearest(s, bf, e);
      w = exact(is_nan(r, bf) ? 0x7fff : (r & 0x8000) ? 0 : r);
      return true;
    }
    case 9:
      w = exact(minmax(true, false, a, b, bf));
      return true;
    case 10:
      w = exact(minmax(false, false, a, b, bf));
      return true;
    case 11:
      w = exact(minmax(true, true, a, b, bf));
      return true;
    case 12:
      w = exact(minmax(false, true, a, b, bf));
      return true;
    case 13:
      w = exact(a ^ 0x8000);
      w.any_nan = is_nan(a, bf);
      return true;
    case 14:
      w = exact(a & 0x7fff);
      w.any_nan = is_nan(a, bf);
      return true;
    case 15:
      two_sum(x, y, s, e);
      w = arith(s, bf, e);
      return true;
    case 16:
      two_sum(x, -y, s, e);
      w = arith(s, bf, e);
      return true;
    case 17:
      w = arith(x * y, bf);
      return true;
    case 40:
      w = arith(std::ceil(x), bf);
      return true;
    case 41:
      w = arith(std::floor(x), bf);
      return true;
    case 42:
      w = arith(std::trunc(x), bf);
      return true;
    case 43:
      w = arith(std::nearbyint(x), bf);
      return true;
    // Approximate: within one unit in the last place of the correctly
    // rounded result (two for the functions built on sin/cos/exp10/tanh of
    // the fp32 hardware approximations).
    case 44:
      w = approx(std::sqrt(x), bf, 1);
      return true;
    case 45:
      w = approx(1 / std::sqrt(x), bf, 1);
      return true;
    case 46:
      w = approx(1 / x, bf, 1);
      return true;
    case 47:
      w = approx(std::exp(x), bf, 1);
      return true;
    case 48:
      w = approx(std::exp2(x), bf, 1);
      return true;
    case 49:
      w = approx(std::pow(10.0, x), bf, 1);
      return true;
    case 50:
      w = approx(std::log(x), bf, 1);
      return true;
    case 51:
      w = approx(std::log2(x), bf, 1);
      return true;
    case 52:
      w = approx(std::log10(x), bf, 1);
      return true;
    case 53:
      w = approx(std::sin(x), bf, 1);
      return true;
    case 54:
      w = approx(std::cos(x), bf, 1);
      return true;
    case 55:
      w = approx(std::tanh(x), bf, 1);
      return true;
    case 56:
      w = approx(std::tanh(x), bf, 1);
      return true;
    case 57:
      w = approx(x / y, bf, 1);
      return true;
    default:
      break;
  }
  if (op >= 20 && op <= 31) {
    w = exact(cmp(op - 20, x, y) ? 1 : 0);
    return true;
  }
  if (op == 32) {
    w = exact(std::isnan(x) ? 1 : 0);
    return true;
  }
  if (op == 33) {
    w = exact(std::isinf(x) ? (x < 0 ? 0xffffffffu : 1u) : 0u);
    return true;
  }
  return false;
}

bool fma_op(int op) {
  return op == 3 || op == 7 || op == 8 || op == 18;
}

uint16_t ftz(uint16_t h, bool bf) {
  const uint16_t e = bf ? 0x7f80 : 0x7c00;
  return (h & e) == 0 ? h & 0x8000 : h;
}

// The bf16 math functions (hsqrt ... hdiv) are built on fp32 approximations
// with .ftz: a subnormal input or result may be flushed to zero, as the GPU
// does.
bool flushed_ok(int op, uint16_t a, uint16_t b, uint16_t c, bool bf, uint32_t got) {
  if (!bf || op < 44 || op > 57) return false;
  Want w;
  scalar_ref(op, ftz(a, bf), ftz(b, bf), ftz(c, bf), bf, w);
  if (matches(got, w, bf)) return true;
  scalar_ref(op, a, b, c, bf, w);
  if (!w.any_nan && got == ftz(uint16_t(w.bits), bf)) return true;
  scalar_ref(op, ftz(a, bf), ftz(b, bf), ftz(c, bf), bf, w);
  return !w.any_nan && got == ftz(uint16_t(w.bits), bf);
}

// Inputs: every pair of special values, then pseudo-random bit patterns.
std::vector<uint16_t> specials(bool bf) {
  if (bf)
    return {0x0000, 0x8000, 0x3f80, 0xbf80, 0x3f00, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x0001,
            0x8040, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x3f7f, 0x3f81, 0x4040, 0x42c8, 0xc2c8};
  return {0x0000, 0x8000, 0x3c00, 0xbc00, 0x3800, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x0001,
          0x8200, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3bff, 0x3c01, 0x4200, 0x5640, 0xd640};
}

struct Inputs {
  std::vector<uint16_t> a, b, c;
};

Inputs make_inputs(bool bf) {
  Inputs in;
  const auto s = specials(bf);
  for (uint16_t x : s)
    for (uint16_t y : s) {
      in.a.push_back(x);
      in.b.push_back(y);
      in.c.push_back(s[(x + 3 * y) % s.size()]);
    }
  uint32_t st = 12345;
  auto rnd = [&st]() {
    st = st * 1664525u + 1013904223u;
    return st >> 8;
  };
  // Moderate exponents (around 1) and any bits.
  for (int i = 0; i < 400; ++i) {
    for (auto* v : {&in.a, &in.b, &in.c}) {
      const uint32_t r = rnd();
      uint16_t h;
      if (i % 3 == 2) {
        h = uint16_t(r);
      } else if (bf) {
        h = uint16_t((r & 0x807f) | ((0x7f - 6 + (r >> 16) % 12) << 7));
      } else {
        h = uint16_t((r & 0x83ff) | ((15 - 6 + (r >> 16) % 12) << 10));
      }
      v->push_back(h);
    }
  }
  return in;
}

std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%04x", v);
  return b;
}

class Fp16Api : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    m_ = h_.load_file(GetParam());
    ASSERT_NE(m_, 0u);
  }
  bool arch75() const { return GetParam().find(".75") != std::string::npos; }
  Harness& h() { return h_; }
  uint64_t module() const { return m_; }
  // Runs `kernel` for op over the inputs; returns the outputs.
  std::vector<uint32_t> run_op(const char* kernel, int op, const std::vector<uint32_t>& a,
                               const std::vector<uint32_t>& b, const std::vector<uint32_t>& c,
                               bool x2) {
    const int n = int(a.size());
    auto up = [&](const std::vector<uint32_t>& v) {
      if (x2) return h_.upload(v);
      std::vector<uint16_t> h(v.begin(), v.end());
      return h_.upload(h);
    };
    const uint64_t da = up(a), db = up(b), dc = up(c), dout = h_.upload(std::vector<uint32_t>(n));
    auto r = h_.run(m_, kernel, {blocks_for(n, 128), 1, 1}, {128, 1, 1},
                    Args().add(op).add(da).add(db).add(dc).add(dout).add(n));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return h_.download<uint32_t>(dout, n);
  }

 private:
  Harness h_;
  uint64_t m_ = 0;
};

const std::vector<int>& scalar_ops() {
  static const std::vector<int> ops = [] {
    std::vector<int> v;
    for (int i = 0; i <= 17; ++i) v.push_back(i);
    for (int i = 20; i <= 33; ++i) v.push_back(i);
    for (int i = 40; i <= 57; ++i) v.push_back(i);
    return v;
  }();
  return ops;
}

void check_scalar(Fp16Api& t, bool bf) {
  const Inputs in = make_inputs(bf);
  std::vector<uint32_t> a(in.a.begin(), in.a.end()), b(in.b.begin(), in.b.end()),
      c(in.c.begin(), in.c.end());
  for (int op : scalar_ops()) {
    auto out = t.run_op(bf ? "bf16_ops" : "f16_ops", op, a, b, c, false);
    int bad = 0;
    for (size_t i = 0; i < a.size() && bad < 5; ++i) {
      if (bf && fma_op(op) && t.arch75()) {
        EXPECT_EQ(out[i], 0xdeadu);
        continue;
      }
      Want w;
      ASSERT_TRUE(scalar_ref(op, in.a[i], in.b[i], in.c[i], bf, w, t.arch75())) << op;
      if (!matches(out[i], w, bf) && !flushed_ok(op, in.a[i], in.b[i], in.c[i], bf, out[i])) {
        ++bad;
        ADD_FAILURE() << (bf ? "bf16" : "f16") << " op " << op << " (" << hex(in.a[i]) << ", "
                      << hex(in.b[i]) << ", " << hex(in.c[i]) << "): got " << hex(out[i])
                      << ", want " << (w.any_nan ? "NaN" : hex(w.bits))
                      << (w.ulps ? " within " + std::to_string(w.ulps) + " ulp" : "");
      }
    }
  }
}

void check_pairs(Fp16Api& t, bool bf) {
  const Inputs in = make_inputs(bf);
  // Pairs: (a[i], a[i+1]) etc., so every special value meets every other in
  // both halves.
  const size_t n = in.a.size() - 1;
  std::vector<uint32_t> a(n), b(n), c(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = in.a[i] | uint32_t{in.a[n - i]} << 16;
    b[i] = in.b[i] | uint32_t{in.b[n - i]} << 16;
    c[i] = in.c[i] | uint32_t{in.c[(i * 7) % n]} << 16;
  }
  std::vector<int> ops;
  for (int i = 0; i <= 39; ++i)
    if (i != 19) ops.push_back(i);
  for (int i = 40; i <= 57; ++i) ops.push_back(i);
  for (int i = 60; i <= 76; ++i) ops.push_back(i);
  static const int kMaskCmp[] = {0, 1, 2, 3, 4, 5, 6};  // ops 33..39
  for (int op : ops) {
    auto out = t.run_op(bf ? "bf16x2_ops" : "f16x2_ops", op, a, b, c, true);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; ++i) {
      const uint16_t al = uint16_t(a[i]), ah = uint16_t(a[i] >> 16), bl = uint16_t(b[i]),
                     bh = uint16_t(b[i] >> 16), cl = uint16_t(c[i]), ch = uint16_t(c[i] >> 16);
      const double xl = decode(al, bf), xh = decode(ah, bf), yl = decode(bl, bf),
                   yh = decode(bh, bf);
      if (bf && fma_op(op) && t.arch75()) {
        EXPECT_EQ(out[i], 0xdeadu);
        continue;
      }
      bool ok;
      std::string want;
      if (op >= 65) {  // __hbXX2: both halves
        const int k = op - 65;
        const uint32_t w = cmp(k, xl, yl) && cmp(k, xh, yh) ? 1 : 0;
        ok = out[i] == w;
        want = hex(w);
      } else if ((op >= 33 && op <= 39) || op >= 60) {  // __hXX2_mask
        const int k = op <= 39 ? kMaskCmp[op - 33] : op - 60 + 7;
        const uint32_t w = (cmp(k, xl, yl) ? 0xffffu : 0) | (cmp(k, xh, yh) ? 0xffff0000u : 0);
        ok = out[i] == w;
        want = hex(w);
      } else if (op >= 20 && op <= 32) {  // half results 1.0 / 0.0
        auto res = [&](double x, double y) {
          const bool r = op == 32 ? std::isnan(x) : cmp(op - 20, x, y);
          return r ? uint32_t{one(bf)} : 0u;
        };
        const uint32_t w = res(xl, yl) | res(xh, yh) << 16;
        ok = out[i] == w;
        want = hex(w);
      } else {
        Want wl, wh;
        if (op == 18) {  // __hcmadd: (re, im) = a * b + c with fmas, in the header's order
          Want t1, t2;
          scalar_ref(3, al, bl, cl, bf, t1);
          scalar_ref(3, static_cast<uint16_t>(ah ^ 0x8000), bh,
                     t1.any_nan ? uint16_t(0x7fff) : uint16_t(t1.bits), bf, wl);
          scalar_ref(3, al, bh, ch, bf, t2);
          scalar_ref(3, ah, bl, t2.any_nan ? uint16_t(0x7fff) : uint16_t(t2.bits), bf, wh);
        } else {
          EXPECT_TRUE(scalar_ref(op, al, bl, cl, bf, wl, t.arch75()));
          EXPECT_TRUE(scalar_ref(op, ah, bh, ch, bf, wh, t.arch75()));
        }
        ok =
            (matches(out[i] & 0xffff, wl, bf) || flushed_ok(op, al, bl, cl, bf, out[i] & 0xffff)) &&
            (matches(out[i] >> 16, wh, bf) || flushed_ok(op, ah, bh, ch, bf, out[i] >> 16));
        want = (wh.any_nan ? "NaN" : hex(wh.bits)) + ":" + (wl.any_nan ? "NaN" : hex(wl.bits));
      }
      if (!ok) {
        ++bad;
        ADD_FAILURE() << (bf ? "bf16x2" : "f16x2") << " op " << op << " (" << hex(a[i]) << ", "
                      << hex(b[i]) << ", " << hex(c[i]) << "): got " << hex(out[i]) << ", want "
                      << want;
      }
    }
  }
}

TEST_P(Fp16Api, HalfFunctions) {
  check_scalar(*this, false);
}
TEST_P(Fp16Api, Bfloat16Functions) {
  check_scalar(*this, true);
}
TEST_P(Fp16Api, Half2Functions) {
  check_pairs(*this, false);
}
TEST_P(Fp16Api, Bfloat162Functions) {
  check_pairs(*this, true);
}

// atomicAdd on __half, __half2, __nv_bfloat16, __nv_bfloat162 from many
// threads into a few bins (small integers: every sum is exact whatever the
// order), and 16-bit atomicCAS loops (a maximum and a counter).
TEST_P(Fp16Api, HalfAtomicsAndCas16) {
  const int n = 1000, bins = 7;
  std::vector<uint16_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = nearest(double((i * 37) % 9) - 3, false);
  auto& h = this->h();
  const uint64_t hs = h.upload(std::vector<uint16_t>(bins)),
                 h2s = h.upload(std::vector<uint32_t>(bins)),
                 bs = h.upload(std::vector<uint16_t>(bins)),
                 b2s = h.upload(std::vector<uint32_t>(bins)),
                 olds = h.upload(std::vector<uint16_t>(n)), dv = h.upload(v);
  auto r = h.run(module(), "half_atomics", {blocks_for(n, 128), 1, 1}, {128, 1, 1},
                 Args().add(hs).add(h2s).add(bs).add(b2s).add(olds).add(dv).add(bins).add(n));
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto ghs = h.download<uint16_t>(hs, bins);
  auto gh2 = h.download<uint32_t>(h2s, bins);
  auto gbs = h.download<uint16_t>(bs, bins);
  auto gb2 = h.download<uint32_t>(b2s, bins);
  for (int k = 0; k < bins; ++k) {
    double sum = 0, count = 0;
    for (int i = k; i < n; i += bins) {
      sum += decode(v[i], false);
      count += 1;
    }
    EXPECT_EQ(ghs[k], nearest(sum, false)) << k;
    EXPECT_EQ(gh2[k], nearest(sum, false) | uint32_t{nearest(count, false)} << 16) << k;
    EXPECT_EQ(gbs[k], nearest(sum, true)) << k;
    EXPECT_EQ(gb2[k], nearest(count, true) | uint32_t{nearest(sum, true)} << 16) << k;
  }
  EXPECT_EQ(h.download<uint16_t>(olds, n), std::vector<uint16_t>(n, 0));

  std::vector<uint16_t> w(n);
  for (int i = 0; i < n; ++i) w[i] = uint16_t((i * 7919u) % 60000u);
  const uint64_t dmax = h.upload(std::vector<uint16_t>(bins)),
                 dcnt = h.upload(std::vector<uint16_t>(bins)), dw = h.upload(w);
  r = h.run(module(), "cas16", {blocks_for(n, 128), 1, 1}, {128, 1, 1},
            Args().add(dmax).add(dcnt).add(dw).add(bins).add(n));
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto gmax = h.download<uint16_t>(dmax, bins);
  auto gcnt = h.download<uint16_t>(dcnt, bins);
  for (int k = 0; k < bins; ++k) {
    uint16_t m = 0, cnt = 0;
    for (int i = k; i < n; i += bins) {
      m = std::max(m, w[i]);
      ++cnt;
    }
    EXPECT_EQ(gmax[k], m) << k;
    EXPECT_EQ(gcnt[k], cnt) << k;
  }
}

// Forms nvcc does not emit for the API above but the ISA defines, written by
// hand: setp on f16x2 (p|q) and with a BoolOp, set with every result kind,
// .ftz and .NaN, ex2/tanh.approx on halves, bar.red with a negated predicate.
const char* kForms = R"(
.version 8.0
.target sm_90
.address_size 64
.visible .entry forms(.param .u64 out)
{
  .reg .pred %p<8>;
  .reg .b16 %h<8>;
  .reg .b32 %r<24>;
  .reg .f32 %f<4>;
  .reg .f64 %d<2>;
  .reg .b64 %rd<2>;
  ld.param.u64 %rd1, [out];
  mov.b32 %r1, 0x3c00bc00;          // {hi 1.0, lo -1.0}
  mov.b32 %r2, 0x7e000000;          // {hi NaN, lo +0}
  setp.lt.f16x2 %p1|%p2, %r1, %r2;  // lo: -1 < 0 true; hi: 1 < NaN false
  selp.u32 %r3, 1, 0, %p1;
  selp.u32 %r4, 1, 0, %p2;
  st.global.u32 [%rd1], %r3;
  st.global.u32 [%rd1+4], %r4;
  mov.b16 %h1, 0x3c00;
  mov.b16 %h2, 0x4000;
  setp.gt.f16 %p3|%p4, %h1, %h2;    // 1 > 2 false; q: !(1 > 2) true
  setp.ne.s32 %p5, %r3, 0;          // true
  setp.lt.and.f16 %p6, %h1, %h2, !%p5;  // true and !true = false
  selp.u32 %r5, 1, 0, %p3;
  selp.u32 %r6, 1, 0, %p4;
  selp.u32 %r7, 1, 0, %p6;
  st.global.u32 [%rd1+8], %r5;
  st.global.u32 [%rd1+12], %r6;
  st.global.u32 [%rd1+16], %r7;
  mov.f32 %f1, 0f3F800000;
  mov.f32 %f2, 0f40000000;
  set.lt.u32.f32 %r8, %f1, %f2;     // 0xffffffff
  set.gt.f32.f32 %f3, %f1, %f2;     // 0.0
  mov.b32 %r9, 0xfffffff0;
  set.hi.u32.s32 %r10, %r9, %r3;    // unsigned: 0xfffffff0 > 1: all ones
  set.gt.s32.s32 %r11, %r9, %r3;    // signed: -16 > 1: 0
  set.eq.or.f32.u32 %f3, %r9, %r3, %p5;  // false or true: 1.0f
  mov.b32 %r12, %f3;
  st.global.u32 [%rd1+20], %r8;
  st.global.u32 [%rd1+24], %r10;
  st.global.u32 [%rd1+28], %r11;
  st.global.u32 [%rd1+32], %r12;
  set.le.u16.f16 %h3, %h1, %h2;     // 0xffff
  set.lt.s32.bf16 %r13, %h2, %h1;   // (bf16 bits) 2.0 < 1.875 false: 0
  set.ne.and.f16.f16 %h4, %h1, %h2, %p5;  // 1.0 (0x3c00)
  set.nan.f16x2.f16x2 %r14, %r2, %r1;     // {hi 0x3c00, lo 0}
  mov.b32 %r20, 0x40003c00;               // bf16 {2.0, 2^-7}
  set.geu.u32.bf16x2 %r15, %r2, %r20;     // {2^125 >= 2, 0 >= 2^-7}: 0xffff0000
  cvt.u32.u16 %r16, %h3;
  cvt.u32.u16 %r17, %h4;
  st.global.u32 [%rd1+36], %r16;
  st.global.u32 [%rd1+40], %r13;
  st.global.u32 [%rd1+44], %r17;
  st.global.u32 [%rd1+48], %r14;
  st.global.u32 [%rd1+52], %r15;
  mov.b16 %h5, 0x0001;              // the smallest f16 subnormal
  mov.b16 %h6, 0x0000;
  set.eq.ftz.u32.f16 %r18, %h5, %h6;  // flushed: equal
  add.ftz.f16 %h7, %h5, %h5;        // 0 (flushed)
  cvt.u32.u16 %r19, %h7;
  st.global.u32 [%rd1+56], %r18;
  st.global.u32 [%rd1+60], %r19;
  mov.b32 %r20, 0x40003c00;         // {2.0, 1.0}
  ex2.approx.f16x2 %r21, %r20;      // {4.0, 2.0}
  min.NaN.f16x2 %r22, %r20, %r2;    // {NaN, +0}
  mov.b16 %h1, 0x3f80;              // bf16 1.0
  tanh.approx.bf16 %h2, %h1;        // tanh(1) = 0.76159 -> 0x3f43
  cvt.u32.u16 %r23, %h2;
  st.global.u32 [%rd1+64], %r21;
  st.global.u32 [%rd1+68], %r22;
  st.global.u32 [%rd1+72], %r23;
  ret;
}
.visible .entry count_not(.param .u64 out)
{
  .reg .pred %p<2>;
  .reg .b32 %r<4>;
  .reg .b64 %rd<2>;
  ld.param.u64 %rd1, [out];
  mov.u32 %r1, %tid.x;
  setp.lt.u32 %p1, %r1, 5;
  bar.red.popc.u32 %r2, 0, !%p1;    // threads not below 5
  bar.red.and.pred %p1, 0, !%p1;    // all >= 5? no
  selp.u32 %r3, 1, 0, %p1;
  add.u32 %r2, %r2, %r3;
  setp.eq.u32 %p1, %r1, 0;
  @%p1 st.global.u32 [%rd1], %r2;
  ret;
}
)";

TEST(Fp16Forms, HandWrittenFormsGiveTheIsaResults) {
  Harness h;
  const uint64_t m = h.load(kForms);
  ASSERT_NE(m, 0u);
  const uint64_t out = h.upload(std::vector<uint32_t>(19, 0xdeadbeef));
  auto r = h.run(m, "forms", {1, 1, 1}, {1, 1, 1}, Args().add(out));
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::vector<uint32_t> want = {1,          0,          0,          1,          0,
                                      0xffffffff, 0xffffffff, 0,          0x3f800000, 0xffff,
                                      0,          0x3c00,     0x3c000000, 0xffff0000, 0xffffffff,
                                      0,          0x44004000, 0x7fff0000, 0x3f43};
  EXPECT_EQ(h.download<uint32_t>(out, 19), want);
  const uint64_t cnt = h.upload(std::vector<uint32_t>(1));
  r = h.run(m, "count_not", {1, 1, 1}, {40, 1, 1}, Args().add(cnt));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(h.download<uint32_t>(cnt, 1)[0], 35u);
}

TEST(Fp16Forms, UnmodelledFormsAreRefusedByName) {
  const std::string head =
      ".version 8.0\n.target sm_90\n.address_size 64\n"
      ".visible .entry k(.param .u64 p)\n{\n.reg .b16 %h<4>;\n.reg .b32 %r<4>;\n"
      ".reg .b64 %rd<3>;\n.reg .pred %p<3>;\n";
  for (const char* line : {
           "min.xorsign.abs.f16 %h1, %h2, %h3;",
           "max.relu.f16 %h1, %h2, %h3;",
           "fma.rn.sat.relu.f16 %h1, %h2, %h3, %h1;",
           "atom.global.exch.b16 %h1, [%rd1], %h2;",
           "atom.global.max.f16 %h1, [%rd1], %h2;",
           "atom.global.add.f16 %h1, [%rd1], %h2;",
           "cvt.rn.relu.f16.f32 %h1, %r1;",
           "setp.eq.f16x2 %p1, %r1, %r2;",
           "set.eq.f64.f32 %rd1, %r1, %r2;",
           "sin.approx.f16 %h1, %h2;",
       }) {
    auto m = load_ptx(head + line + "\nret;\n}\n");
    ASSERT_FALSE(m.ok()) << line;
    const std::string op = std::string(line).substr(0, std::string(line).find(' '));
    EXPECT_NE(m.error().message.find(op), std::string::npos) << m.error().message;
  }
}

std::vector<std::string> variants() {
  std::vector<std::string> out;
  for (const char* arch : {"75", "80", "90"})
    for (const char* fast : {"", ".fast"})
      out.push_back(std::string("variants/fp16api.") + arch + fast + ".ptx");
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, Fp16Api, ::testing::ValuesIn(variants()), [](const auto& info) {
  std::string s = info.param.substr(17);
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
});

}  // namespace
}  // namespace gpulease::sim::testing
