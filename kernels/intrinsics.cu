// Cases an independent corpus of ordinary kernels found refused or wrong on
// the sim (issue 12, second round), as nvcc emits them; tests/ptx_intrinsics_test.cpp
// checks each against a CPU reference for compute_75/80/90, with and without
// --use_fast_math.
//   __fns                                   -> fns.b32
//   __syncthreads_count / _and / _or        -> bar.red.popc.u32 / .and.pred / .or.pred
//   clock(), clock64(), __nanosleep         -> %clock, %clock64, nanosleep.u32
//   __float22half2_rn, __floats2bfloat162_rn -> cvt.rn.f16x2.f32, cvt.rn.bf16x2.f32
//   __half2float (cuda_fp16.hpp asm)        -> ".reg.b32 f;" and ".reg .f16 low,high;"
//   normf / rnormf                          -> mov.pred %p, -1
#include <cuda_bf16.h>
#include <cuda_fp16.h>

extern "C" __global__ void find_nth_set(unsigned* out, const unsigned* mask, const unsigned* base,
                                        const int* offset, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    out[2 * i] = __fns(mask[i], base[i] & 31, offset[i]);
    out[2 * i + 1] = __fns(mask[i], 0, 1);
  }
}

extern "C" __global__ void block_votes(int* out, const int* v, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int x = i < n ? v[i] : 0;
  int c = __syncthreads_count(x > 0);
  int a = __syncthreads_and(x > -50);
  int o = __syncthreads_or(x > 90);
  if (i < n) out[i] = c + 1000 * a + 10000 * o;
}

extern "C" __global__ void clocks_advance(long long* out, int spins) {
  long long start = clock64();
  unsigned c0 = clock();
  for (int k = 0; k < spins; ++k) __nanosleep(100);
  long long end = clock64();
  out[threadIdx.x] = (end >= start) + ((unsigned)clock() - c0 < 0x80000000u);
}

extern "C" __global__ void half2_pack(__half2* out, float* back, const float2* f, const float* g,
                                      int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    __half2 h = __float22half2_rn(f[i]);
    out[i] = __hadd2(h, __float2half2_rn(g[i]));
    back[i] = __half2float(__low2half(h)) - __half2float(__high2half(h));
  }
}

extern "C" __global__ void bf16_pack(__nv_bfloat162* out, const float* a, const float* b, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __floats2bfloat162_rn(a[i], b[i]);
}

extern "C" __global__ void norms(float* out, const float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float v[3] = {x[i], x[i] * 0.5f - 1.0f, 3.0f - x[i]};
    out[2 * i] = normf(3, v);
    out[2 * i + 1] = rnormf(3, v);
  }
}
