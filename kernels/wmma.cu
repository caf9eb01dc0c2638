// Warp matrix multiply-accumulate (nvcuda::wmma, m16n16k16, f16 inputs) as
// ordinary code writes it, for tests/ptx_wmma_test.cpp. One warp computes
// one 16 x 16 tile of the output.
//
// wmma_gemm_f32:  C = 2 * (A * B) (A m x k row-major, B k x n column-major,
//                 f32 accumulators; the scale is an element-wise loop over
//                 the accumulator fragment), stored row-major.
// wmma_gemm_f16:  D = A * B + C (A column-major, B row-major, f16
//                 accumulators loaded from C column-major, D stored
//                 column-major), staging each A tile through shared memory.
// wmma_m32n8k16, wmma_m8n32k16, wmma_bf16, wmma_bf16_m32n8k16: one tile of
//                 the other shapes, and bf16 inputs (compute_80+ only).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

using namespace nvcuda;

extern "C" __global__ void wmma_gemm_f32(const __half* a, const __half* b, float* c, int m, int n,
                                         int k) {
  const int tile_m = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int tile_n = blockIdx.y;
  const int row = tile_m * 16, col = tile_n * 16;
  if (row >= m || col >= n) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  for (int i = 0; i < k; i += 16) {
    wmma::load_matrix_sync(fa, a + row * k + i, k);
    wmma::load_matrix_sync(fb, b + col * k + i, k);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  for (int t = 0; t < acc.num_elements; ++t) acc.x[t] = acc.x[t] * 2.0f;
  wmma::store_matrix_sync(c + row * n + col, acc, n, wmma::mem_row_major);
}

extern "C" __global__ void wmma_gemm_f16(const __half* a, const __half* b, const __half* c,
                                         __half* d, int m, int n, int k) {
  __shared__ __half stage[4][16 * 16];  // one A tile per warp (blockDim.x == 128)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tile_m = blockIdx.x * 4 + warp;
  const int row = tile_m * 16, col = blockIdx.y * 16;
  if (row >= m || col >= n) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, __half> acc;
  wmma::load_matrix_sync(acc, c + col * m + row, m, wmma::mem_col_major);
  for (int i = 0; i < k; i += 16) {
    // A (column-major, m x k): the tile's 16 columns of 16 rows into shared.
    for (int e = lane; e < 256; e += 32) stage[warp][e] = a[(i + e / 16) * m + row + e % 16];
    __syncwarp();
    wmma::load_matrix_sync(fa, stage[warp], 16);
    wmma::load_matrix_sync(fb, b + i * n + col, n);
    wmma::mma_sync(acc, fa, fb, acc);
    __syncwarp();
  }
  wmma::store_matrix_sync(d + col * m + row, acc, m, wmma::mem_col_major);
}

// The other shapes and bf16 (compute_80+): one tile, D = A * B + C with A
// row-major, B column-major and C, D row-major, dense (no stride argument
// where the matrix is dense: wmma's default).
template <int M, int N, int K, typename T, typename Acc>
__device__ void tile(const T* a, const T* b, const Acc* c, Acc* d) {
  wmma::fragment<wmma::matrix_a, M, N, K, T, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, M, N, K, T, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, M, N, K, Acc> acc;
  wmma::load_matrix_sync(fa, a, K);
  wmma::load_matrix_sync(fb, b, K);
  wmma::load_matrix_sync(acc, c, N, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, N, wmma::mem_row_major);
}

extern "C" __global__ void wmma_m32n8k16(const __half* a, const __half* b, const float* c,
                                         float* d) {
  tile<32, 8, 16>(a, b, c, d);
}
extern "C" __global__ void wmma_m8n32k16(const __half* a, const __half* b, const __half* c,
                                         __half* d) {
  tile<8, 32, 16>(a, b, c, d);
}
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
extern "C" __global__ void wmma_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c,
                                     float* d) {
  tile<16, 16, 16>(a, b, c, d);
}
extern "C" __global__ void wmma_bf16_m32n8k16(const __nv_bfloat16* a, const __nv_bfloat16* b,
                                              const float* c, float* d) {
  tile<32, 8, 16>(a, b, c, d);
}
#endif
