// Asynchronous global -> shared copies (sm_80 cp.async), as ordinary code
// writes them, for tests/ptx_async_test.cpp. On compute_75 the same source
// compiles to plain loads and stores (the primitives fall back), so every
// variant gives the same results.
//
// matmul_async:   C = A * B (n x n floats, n a multiple of 16), 16 x 16 tiles,
//                 double-buffered with __pipeline_memcpy_async /
//                 __pipeline_commit / __pipeline_wait_prior (cp.async.ca/cg,
//                 cp.async.commit_group, cp.async.wait_group).
// copy_zfill:     out = in where in bounds, zeros past n: __pipeline_memcpy_async
//                 with a zero-fill tail (the src-size form of cp.async), then
//                 __pipeline_wait_prior(0).
// memcpy_async_sum: cooperative_groups::memcpy_async of a block's slice into
//                 shared memory, cg::wait, then a block sum (cp.async.wait_all
//                 or a plain copy, as the library chooses).
#include <cooperative_groups.h>
#include <cooperative_groups/memcpy_async.h>
#include <cuda_pipeline.h>

namespace cg = cooperative_groups;

constexpr int kTile = 16;

extern "C" __global__ void matmul_async(const float* a, const float* b, float* c, int n) {
  __shared__ float as[2][kTile][kTile];
  __shared__ float bs[2][kTile][kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kTile + ty, col = blockIdx.x * kTile + tx;
  const int tiles = n / kTile;
  // Stage 0.
  __pipeline_memcpy_async(&as[0][ty][tx], &a[row * n + tx], sizeof(float));
  __pipeline_memcpy_async(&bs[0][ty][tx], &b[ty * n + col], sizeof(float));
  __pipeline_commit();
  float acc = 0.0f;
  for (int t = 0; t < tiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < tiles) {
      const int k0 = (t + 1) * kTile;
      __pipeline_memcpy_async(&as[cur ^ 1][ty][tx], &a[row * n + k0 + tx], sizeof(float));
      __pipeline_memcpy_async(&bs[cur ^ 1][ty][tx], &b[(k0 + ty) * n + col], sizeof(float));
    }
    __pipeline_commit();
    __pipeline_wait_prior(1);  // the current tile's group is complete
    __syncthreads();
    for (int k = 0; k < kTile; ++k) acc += as[cur][ty][k] * bs[cur][k][tx];
    __syncthreads();
  }
  c[row * n + col] = acc;
}

// Each thread copies 16 bytes (4 ints) of its block's slice; the last
// thread's copy may run past n and is zero-filled there.
extern "C" __global__ void copy_zfill(const int* in, int* out, int n) {
  __shared__ __align__(16) int buf[256 * 4];
  const int base = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
  int* dst = &buf[threadIdx.x * 4];
  if (base < n) {
    const int have = n - base < 4 ? n - base : 4;
    // 16 bytes requested; bytes past `have` ints are filled with zeros.
    __pipeline_memcpy_async(dst, &in[base], 16, 16 - have * 4);
  } else {
    for (int k = 0; k < 4; ++k) dst[k] = -1;
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  for (int k = 0; k < 4; ++k)
    if (base + k < ((n + 3) / 4) * 4) out[base + k] = buf[threadIdx.x * 4 + k];
}

extern "C" __global__ void memcpy_async_sum(const float* in, float* out, int per_block) {
  extern __shared__ float slice[];
  cg::thread_block block = cg::this_thread_block();
  cg::memcpy_async(block, slice, in + blockIdx.x * per_block, sizeof(float) * per_block);
  cg::wait(block);
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int i = 0; i < per_block; ++i) s += slice[i];
    out[blockIdx.x] = s;
  }
}
