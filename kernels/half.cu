// Half precision (cuda_fp16.h, cuda_bf16.h), for tests/ptx_half_test.cpp.
//
// relu_half:    x[i] = x[i] > 0 ? x[i] : 0 on __half.
// axpy_half2:   y[i] = fma(a, x[i], y[i]) on __half2 (both halves).
// half_math:    h = half(x[i]); out = {h, h * 1.5 + (h - 0.25), h / 3, -|h|} as floats.
// bf16_convert: b = bf16(x[i]); raw[i] = b; out = {b, b * 2 + b} as floats.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
extern "C" __global__ void relu_half(__half* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = __hgt(x[i], __float2half(0.0f)) ? x[i] : __float2half(0.0f);
}
extern "C" __global__ void axpy_half2(__half2 a, const __half2* x, __half2* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __hfma2(a, x[i], y[i]);
}
extern "C" __global__ void half_math(const float* x, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  __half h = __float2half_rn(x[i]);
  __half g = __hmul(h, __float2half(1.5f));
  g = __hadd(g, __hsub(h, __float2half(0.25f)));
  out[4 * i] = __half2float(h);
  out[4 * i + 1] = __half2float(g);
  out[4 * i + 2] = __half2float(__hdiv(h, __float2half(3.0f)));
  out[4 * i + 3] = __half2float(__hneg(__habs(h)));
}
extern "C" __global__ void bf16_convert(const float* x, float* out, __nv_bfloat16* raw, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  __nv_bfloat16 b = __float2bfloat16(x[i]);
  raw[i] = b;
  __nv_bfloat16 c = __hmul(b, __float2bfloat16(2.0f));
  c = __hadd(c, b);
  out[2 * i] = __bfloat162float(b);
  out[2 * i + 1] = __bfloat162float(c);
}
