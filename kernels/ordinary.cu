// Ordinary CUDA kernels of the kinds users write, for the sim's conformance
// tests (tests/ptx_ordinary_test.cpp checks each against a CPU reference).
//
// transpose:     out[c * rows + r] = in[r * cols + c], 32x32 tiles with a padded
//                shared array (block (32, 8)).
// softmax_rows:  one block per row (blockDim.x = 128): out = exp(x - max) / sum.
// layernorm_rows: one block per row (128 threads): (x - mean) / sqrt(var + eps) * g + b.
// gelu:          y = 0.5 x (1 + tanh(0.79788456 (x + 0.044715 x^3))) and the erf form.
// hist_shared:   256-bin histogram of bytes with shared-memory atomics.
// block_scan:    inclusive prefix sum of each 256-element block (Hillis-Steele).
// float_max_cas: *out = max over x[] with an atomicCAS loop on the float's bits.
// stencil_d:     out[i] = 0.25 in[i-1] + 0.5 in[i] + 0.25 in[i+1] (double, ends copied).
// grid3d:        out[linear index] = x + 1000 y + 1000000 z over a 3-D grid of 3-D blocks.
// by_value:      y[i] = p.a * x[i] + p.b + (float)p.c with a struct passed by value.
// local_sort:    each thread sorts 8 values in a local array (insertion sort).
// poly_const:    y = sum c[k] x^k with the coefficients in __constant__ memory.
// mad128:        (hi, lo) = a * b + c in 128-bit arithmetic.
// bits:          __popc, __clz, __ffs, __brev, __byte_perm, __funnelshift_l, __funnelshift_r.
// scale_t<T>:    a template instantiated for int and float.
// chained_sum:   blocks publish running totals in order (block i waits for i - 1).
#include <cstdint>

extern "C" __global__ void transpose(const float* in, float* out, int rows, int cols) {
  __shared__ float tile[32][33];
  int c = blockIdx.x * 32 + threadIdx.x;
  int r0 = blockIdx.y * 32;
  for (int j = threadIdx.y; j < 32; j += 8) {
    int r = r0 + j;
    if (r < rows && c < cols) tile[j][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  int oc = r0 + threadIdx.x;  // column of out = row of in
  for (int j = threadIdx.y; j < 32; j += 8) {
    int orow = blockIdx.x * 32 + j;  // row of out = column of in
    if (orow < cols && oc < rows) out[orow * rows + oc] = tile[threadIdx.x][j];
  }
}

__device__ float block_reduce_max(float v) {
  __shared__ float sh[33];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? sh[threadIdx.x] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[32] = v;
  }
  __syncthreads();
  v = sh[32];
  __syncthreads();
  return v;
}

__device__ float block_reduce_sum(float v) {
  __shared__ float sh[33];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? sh[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[32] = v;
  }
  __syncthreads();
  v = sh[32];
  __syncthreads();
  return v;
}

extern "C" __global__ void softmax_rows(const float* x, float* y, int cols) {
  const float* row = x + blockIdx.x * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
  m = block_reduce_max(m);
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
  s = block_reduce_sum(s);
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    y[blockIdx.x * cols + c] = expf(row[c] - m) / s;
}

extern "C" __global__ void layernorm_rows(const float* x, const float* g, const float* b, float* y,
                                          int cols, float eps) {
  const float* row = x + blockIdx.x * cols;
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += row[c];
  const float mean = block_reduce_sum(s) / cols;
  float q = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) q += (row[c] - mean) * (row[c] - mean);
  const float var = block_reduce_sum(q) / cols;
  const float inv = rsqrtf(var + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    y[blockIdx.x * cols + c] = (row[c] - mean) * inv * g[c] + b[c];
}

extern "C" __global__ void gelu(const float* x, float* y_tanh, float* y_erf, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float v = x[i];
    y_tanh[i] = 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
    y_erf[i] = 0.5f * v * (1.0f + erff(v * 0.70710678f));
  }
}

extern "C" __global__ void hist_shared(const unsigned char* data, unsigned* bins, int n) {
  __shared__ unsigned local[256];
  for (int b = threadIdx.x; b < 256; b += blockDim.x) local[b] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    atomicAdd(&local[data[i]], 1u);
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += blockDim.x) atomicAdd(&bins[b], local[b]);
}

extern "C" __global__ void block_scan(const int* in, int* out, int n) {
  __shared__ int buf[2][256];
  int t = threadIdx.x, i = blockIdx.x * 256 + t;
  int cur = 0;
  buf[0][t] = i < n ? in[i] : 0;
  __syncthreads();
  for (int off = 1; off < 256; off <<= 1) {
    int v = buf[cur][t];
    if (t >= off) v += buf[cur][t - off];
    buf[1 - cur][t] = v;
    cur = 1 - cur;
    __syncthreads();
  }
  if (i < n) out[i] = buf[cur][t];
}

extern "C" __global__ void float_max_cas(const float* x, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = x[i];
  int* addr = (int*)out;
  int old = *addr, assumed;
  do {
    assumed = old;
    if (__int_as_float(assumed) >= v) break;
    old = atomicCAS(addr, assumed, __float_as_int(v));
  } while (assumed != old);
}

extern "C" __global__ void stencil_d(const double* in, double* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (i == 0 || i == n - 1)
    out[i] = in[i];
  else
    out[i] = 0.25 * in[i - 1] + 0.5 * in[i] + 0.25 * in[i + 1];
}

extern "C" __global__ void grid3d(int* out, int nx, int ny, int nz) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  int z = blockIdx.z * blockDim.z + threadIdx.z;
  if (x < nx && y < ny && z < nz) out[(z * ny + y) * nx + x] = x + 1000 * y + 1000000 * z;
}

struct Params {
  float a;
  int b;
  double c;
};

extern "C" __global__ void by_value(Params p, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = p.a * x[i] + p.b + (float)p.c;
}

extern "C" __global__ void local_sort(const int* in, int* out, int n) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t * 8 >= n) return;
  int v[8];
  for (int k = 0; k < 8; ++k) v[k] = in[t * 8 + k];
  for (int k = 1; k < 8; ++k) {
    int key = v[k], j = k - 1;
    while (j >= 0 && v[j] > key) {
      v[j + 1] = v[j];
      --j;
    }
    v[j + 1] = key;
  }
  for (int k = 0; k < 8; ++k) out[t * 8 + k] = v[k];
}

__constant__ float kCoeffs[8] = {1.0f,    -0.5f,    0.25f,      -0.125f,
                                 0.0625f, 0.03125f, -0.015625f, 0.0078125f};

extern "C" __global__ void poly_const(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float acc = 0.0f;
  for (int k = 7; k >= 0; --k) acc = acc * x[i] + kCoeffs[k];
  y[i] = acc;
}

extern "C" __global__ void mad128(const unsigned long long* a, const unsigned long long* b,
                                  const unsigned long long* c, unsigned long long* lo,
                                  unsigned long long* hi, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long l = a[i] * b[i];
  unsigned long long h = __umul64hi(a[i], b[i]);
  unsigned long long s = l + c[i];
  h += s < l;
  lo[i] = s;
  hi[i] = h;
}

extern "C" __global__ void bits(const unsigned* x, const unsigned* y, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned v = x[i], w = y[i];
  out[8 * i + 0] = __popc(v);
  out[8 * i + 1] = __clz(v);
  out[8 * i + 2] = __ffs(v);
  out[8 * i + 3] = __brev(v);
  out[8 * i + 4] = __byte_perm(v, w, 0x5140);
  out[8 * i + 5] = __funnelshift_l(v, w, w & 31);
  out[8 * i + 6] = __funnelshift_r(v, w, w & 31);
  out[8 * i + 7] = __popcll(((unsigned long long)v << 32) | w) + __clzll((unsigned long long)w);
}

template <typename T>
__global__ void scale_t(T* data, T factor, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] = data[i] * factor + T(1);
}
template __global__ void scale_t<int>(int*, int, int);
template __global__ void scale_t<float>(float*, float, int);

extern "C" __global__ void chained_sum(const int* in, int* totals, volatile int* flags, int n) {
  __shared__ int block_total;
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int v = i < n ? in[i] : 0;
  if (threadIdx.x == 0) block_total = 0;
  __syncthreads();
  atomicAdd(&block_total, v);
  __syncthreads();
  if (threadIdx.x == 0) {
    int prev = 0;
    if (blockIdx.x > 0) {
      while (flags[blockIdx.x - 1] == 0) {
      }
      prev = totals[blockIdx.x - 1];
    }
    totals[blockIdx.x] = prev + block_total;
    __threadfence();
    flags[blockIdx.x] = 1;
  }
}

// print_ids: printf from a kernel (the sim discards the output and printf
// returns 0), then out[i] = 2 i.
#include <cstdio>
extern "C" __global__ void print_ids(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int r = printf("thread %d of %d\n", i, n);
  out[i] = 2 * i + (r > 1000 ? 1 : 0);
}
