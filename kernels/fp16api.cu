// The cuda_fp16.h / cuda_bf16.h API as ordinary code calls it, one function
// per `op` (a switch), for tests/ptx_fp16api_test.cpp: every result is
// compared with a CPU reference, bit for bit where the function is exact.
// What nvcc emits for them includes set.*.f16 / .f16x2 / .bf16 / .bf16x2
// (comparisons with an integer or half mask result, and the special-case
// fixups of hexp, hsin, h2exp, ...), add/sub/mul/fma .sat, fma.rn.relu,
// min/max .NaN, atom/red .add.noftz on f16/bf16 and atom.cas.b16.
//
// Values travel as raw bits: unsigned short for __half / __nv_bfloat16,
// unsigned for __half2 / __nv_bfloat162 (low half = .x).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

// bf16 fma (__hfma, __hfma_sat, __hfma_relu, __hcmadd) needs compute_80+:
// below that the bf16 kernels answer 0xdead for those ops.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
constexpr bool kBf16Fma = false;
#else
constexpr bool kBf16Fma = true;
#endif

template <typename H>
__device__ H hbits(unsigned short u);
template <>
__device__ __half hbits<__half>(unsigned short u) {
  return __ushort_as_half(u);
}
template <>
__device__ __nv_bfloat16 hbits<__nv_bfloat16>(unsigned short u) {
  return __ushort_as_bfloat16(u);
}
__device__ unsigned short ubits(__half h) {
  return __half_as_ushort(h);
}
__device__ unsigned short ubits(__nv_bfloat16 h) {
  return __bfloat16_as_ushort(h);
}

template <typename H2, typename H>
__device__ H2 h2bits(unsigned u) {
  H2 r;
  r.x = hbits<H>(static_cast<unsigned short>(u & 0xffff));
  r.y = hbits<H>(static_cast<unsigned short>(u >> 16));
  return r;
}
template <typename H2>
__device__ unsigned u2bits(H2 h) {
  return ubits(h.x) | static_cast<unsigned>(ubits(h.y)) << 16;
}

// Scalar: out[i] = op(a[i], b[i], c[i]) as bits (comparisons give 0 or 1).
template <typename H>
__device__ unsigned scalar_op(int op, H a, H b, H c) {
  switch (op) {
    case 0:
      return ubits(__hadd(a, b));
    case 1:
      return ubits(__hsub(a, b));
    case 2:
      return ubits(__hmul(a, b));
    case 3:
      if constexpr (std::is_same_v<H, __half> || kBf16Fma)
        return ubits(__hfma(a, b, c));
      else
        return 0xdead;
    case 4:
      return ubits(__hadd_sat(a, b));
    case 5:
      return ubits(__hsub_sat(a, b));
    case 6:
      return ubits(__hmul_sat(a, b));
    case 7:
      if constexpr (std::is_same_v<H, __half> || kBf16Fma)
        return ubits(__hfma_sat(a, b, c));
      else
        return 0xdead;
    case 8:
      if constexpr (std::is_same_v<H, __half> || kBf16Fma)
        return ubits(__hfma_relu(a, b, c));
      else
        return 0xdead;
    case 9:
      return ubits(__hmax(a, b));
    case 10:
      return ubits(__hmin(a, b));
    case 11:
      return ubits(__hmax_nan(a, b));
    case 12:
      return ubits(__hmin_nan(a, b));
    case 13:
      return ubits(__hneg(a));
    case 14:
      return ubits(__habs(a));
    case 15:
      return ubits(__hadd_rn(a, b));
    case 16:
      return ubits(__hsub_rn(a, b));
    case 17:
      return ubits(__hmul_rn(a, b));
    case 20:
      return __heq(a, b);
    case 21:
      return __hne(a, b);
    case 22:
      return __hlt(a, b);
    case 23:
      return __hle(a, b);
    case 24:
      return __hgt(a, b);
    case 25:
      return __hge(a, b);
    case 26:
      return __hequ(a, b);
    case 27:
      return __hneu(a, b);
    case 28:
      return __hltu(a, b);
    case 29:
      return __hleu(a, b);
    case 30:
      return __hgtu(a, b);
    case 31:
      return __hgeu(a, b);
    case 32:
      return __hisnan(a);
    case 33:
      return __hisinf(a);
    case 40:
      return ubits(hceil(a));
    case 41:
      return ubits(hfloor(a));
    case 42:
      return ubits(htrunc(a));
    case 43:
      return ubits(hrint(a));
    case 44:
      return ubits(hsqrt(a));
    case 45:
      return ubits(hrsqrt(a));
    case 46:
      return ubits(hrcp(a));
    case 47:
      return ubits(hexp(a));
    case 48:
      return ubits(hexp2(a));
    case 49:
      return ubits(hexp10(a));
    case 50:
      return ubits(hlog(a));
    case 51:
      return ubits(hlog2(a));
    case 52:
      return ubits(hlog10(a));
    case 53:
      return ubits(hsin(a));
    case 54:
      return ubits(hcos(a));
    case 55:
      return ubits(htanh(a));
    case 56:
      return ubits(htanh_approx(a));
    case 57:
      return ubits(__hdiv(a, b));
    default:
      return 0xdead;
  }
}

// Paired: every function on both halves at once.
template <typename H2>
__device__ unsigned pair_op(int op, H2 a, H2 b, H2 c) {
  switch (op) {
    case 0:
      return u2bits(__hadd2(a, b));
    case 1:
      return u2bits(__hsub2(a, b));
    case 2:
      return u2bits(__hmul2(a, b));
    case 3:
      if constexpr (std::is_same_v<H2, __half2> || kBf16Fma)
        return u2bits(__hfma2(a, b, c));
      else
        return 0xdead;
    case 4:
      return u2bits(__hadd2_sat(a, b));
    case 5:
      return u2bits(__hsub2_sat(a, b));
    case 6:
      return u2bits(__hmul2_sat(a, b));
    case 7:
      if constexpr (std::is_same_v<H2, __half2> || kBf16Fma)
        return u2bits(__hfma2_sat(a, b, c));
      else
        return 0xdead;
    case 8:
      if constexpr (std::is_same_v<H2, __half2> || kBf16Fma)
        return u2bits(__hfma2_relu(a, b, c));
      else
        return 0xdead;
    case 9:
      return u2bits(__hmax2(a, b));
    case 10:
      return u2bits(__hmin2(a, b));
    case 11:
      return u2bits(__hmax2_nan(a, b));
    case 12:
      return u2bits(__hmin2_nan(a, b));
    case 13:
      return u2bits(__hneg2(a));
    case 14:
      return u2bits(__habs2(a));
    case 15:
      return u2bits(__hadd2_rn(a, b));
    case 16:
      return u2bits(__hsub2_rn(a, b));
    case 17:
      return u2bits(__hmul2_rn(a, b));
    case 18:
      if constexpr (std::is_same_v<H2, __half2> || kBf16Fma)
        return u2bits(__hcmadd(a, b, c));
      else
        return 0xdead;
    case 20:
      return u2bits(__heq2(a, b));
    case 21:
      return u2bits(__hne2(a, b));
    case 22:
      return u2bits(__hlt2(a, b));
    case 23:
      return u2bits(__hle2(a, b));
    case 24:
      return u2bits(__hgt2(a, b));
    case 25:
      return u2bits(__hge2(a, b));
    case 26:
      return u2bits(__hequ2(a, b));
    case 27:
      return u2bits(__hneu2(a, b));
    case 28:
      return u2bits(__hltu2(a, b));
    case 29:
      return u2bits(__hleu2(a, b));
    case 30:
      return u2bits(__hgtu2(a, b));
    case 31:
      return u2bits(__hgeu2(a, b));
    case 32:
      return u2bits(__hisnan2(a));
    case 33:
      return __heq2_mask(a, b);
    case 34:
      return __hne2_mask(a, b);
    case 35:
      return __hlt2_mask(a, b);
    case 36:
      return __hle2_mask(a, b);
    case 37:
      return __hgt2_mask(a, b);
    case 38:
      return __hge2_mask(a, b);
    case 39:
      return __hequ2_mask(a, b);
    case 60:
      return __hneu2_mask(a, b);
    case 61:
      return __hltu2_mask(a, b);
    case 62:
      return __hleu2_mask(a, b);
    case 63:
      return __hgtu2_mask(a, b);
    case 64:
      return __hgeu2_mask(a, b);
    case 65:
      return __hbeq2(a, b);
    case 66:
      return __hbne2(a, b);
    case 67:
      return __hblt2(a, b);
    case 68:
      return __hble2(a, b);
    case 69:
      return __hbgt2(a, b);
    case 70:
      return __hbge2(a, b);
    case 71:
      return __hbequ2(a, b);
    case 72:
      return __hbneu2(a, b);
    case 73:
      return __hbltu2(a, b);
    case 74:
      return __hbleu2(a, b);
    case 75:
      return __hbgtu2(a, b);
    case 76:
      return __hbgeu2(a, b);
    case 40:
      return u2bits(h2ceil(a));
    case 41:
      return u2bits(h2floor(a));
    case 42:
      return u2bits(h2trunc(a));
    case 43:
      return u2bits(h2rint(a));
    case 44:
      return u2bits(h2sqrt(a));
    case 45:
      return u2bits(h2rsqrt(a));
    case 46:
      return u2bits(h2rcp(a));
    case 47:
      return u2bits(h2exp(a));
    case 48:
      return u2bits(h2exp2(a));
    case 49:
      return u2bits(h2exp10(a));
    case 50:
      return u2bits(h2log(a));
    case 51:
      return u2bits(h2log2(a));
    case 52:
      return u2bits(h2log10(a));
    case 53:
      return u2bits(h2sin(a));
    case 54:
      return u2bits(h2cos(a));
    case 55:
      return u2bits(h2tanh(a));
    case 56:
      return u2bits(h2tanh_approx(a));
    case 57:
      return u2bits(__h2div(a, b));
    default:
      return 0xdeadbeef;
  }
}

extern "C" __global__ void f16_ops(int op, const unsigned short* a, const unsigned short* b,
                                   const unsigned short* c, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = scalar_op(op, hbits<__half>(a[i]), hbits<__half>(b[i]), hbits<__half>(c[i]));
}
extern "C" __global__ void bf16_ops(int op, const unsigned short* a, const unsigned short* b,
                                    const unsigned short* c, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = scalar_op(op, hbits<__nv_bfloat16>(a[i]), hbits<__nv_bfloat16>(b[i]),
                       hbits<__nv_bfloat16>(c[i]));
}
extern "C" __global__ void f16x2_ops(int op, const unsigned* a, const unsigned* b,
                                     const unsigned* c, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = pair_op(op, h2bits<__half2, __half>(a[i]), h2bits<__half2, __half>(b[i]),
                     h2bits<__half2, __half>(c[i]));
}
extern "C" __global__ void bf16x2_ops(int op, const unsigned* a, const unsigned* b,
                                      const unsigned* c, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = pair_op(op, h2bits<__nv_bfloat162, __nv_bfloat16>(a[i]),
                     h2bits<__nv_bfloat162, __nv_bfloat16>(b[i]),
                     h2bits<__nv_bfloat162, __nv_bfloat16>(c[i]));
}

// atomicAdd on half types: every thread adds v[i] into sums[i % bins] (with
// the return value used, atom; without, red). Kept exact by the test's
// inputs (small integers), so the order of the additions does not matter.
extern "C" __global__ void half_atomics(__half* hs, __half2* h2s, __nv_bfloat16* bs,
                                        __nv_bfloat162* b2s, unsigned short* olds,
                                        const unsigned short* v, int bins, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int k = i % bins;
  const unsigned short u = v[i];
  __half old = atomicAdd(&hs[k], __ushort_as_half(u));
  olds[i] = __half_as_ushort(old) == 0xffff ? 1 : 0;  // never: keeps the atom form
  atomicAdd(&h2s[k], __halves2half2(__ushort_as_half(u), __float2half(1.0f)));
  atomicAdd(&bs[k], __float2bfloat16(__half2float(__ushort_as_half(u))));
  atomicAdd(&b2s[k], __floats2bfloat162_rn(1.0f, __half2float(__ushort_as_half(u))));
}

// 16-bit atomicCAS (compute_70+): a spin-free 16-bit atomic maximum and a
// counter, both built on atomicCAS(unsigned short*), as code does where no
// 16-bit atomic exists.
extern "C" __global__ void cas16(unsigned short* maxv, unsigned short* counts,
                                 const unsigned short* v, int bins, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int k = i % bins;
  unsigned short cur = maxv[k];
  for (int tries = 0; tries < 100000 && cur < v[i]; ++tries) {
    unsigned short seen = atomicCAS(&maxv[k], cur, v[i]);
    if (seen == cur) break;
    cur = seen;
  }
  unsigned short c = counts[k];
  for (int tries = 0; tries < 100000; ++tries) {
    unsigned short seen = atomicCAS(&counts[k], c, static_cast<unsigned short>(c + 1));
    if (seen == c) break;
    c = seen;
  }
}
