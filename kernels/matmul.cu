// Tiled matrix multiply with shared memory: C = A * B, A is m x k, B is k x n,
// C is m x n, all row-major float. 16 x 16 tiles; launch with block (16, 16)
// and grid (ceil(n / 16), ceil(m / 16)). Any m, n, k >= 1 (partial tiles are
// padded with zeros). Each C element is accumulated in float, k ascending,
// one fma per step, starting from 0.
#define TILE 16
extern "C" __global__ void matmul_tiled(const float* A, const float* B, float* C, int m, int n,
                                        int k) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y;
  int col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int t0 = 0; t0 < k; t0 += TILE) {
    int ac = t0 + threadIdx.x;
    int br = t0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = (row < m && ac < k) ? A[row * k + ac] : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = (br < k && col < n) ? B[br * n + col] : 0.0f;
    __syncthreads();
    for (int j = 0; j < TILE; ++j) acc = __fmaf_rn(As[threadIdx.y][j], Bs[j][threadIdx.x], acc);
    __syncthreads();
  }
  if (row < m && col < n) C[row * n + col] = acc;
}
