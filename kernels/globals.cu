// Module-scope variables that the host sets and reads through MODULE_GLOBAL
// (cuModuleGetGlobal on a GPU), then MEM_WRITE / MEM_READ on the handle.
//
// poly_table: y[i] = sum_{k < kTerms} kTable[k] * x[i]^k, with the
//             coefficients and their count in __constant__ memory (set by
//             the host); counts the elements it wrote in the __device__
//             variable gCount and its launches in gCalls (initialised to 7).
// bump:       *counter += by, through a pointer argument: the host passes a
//             variable's handle as the pointer.
__constant__ float kTable[16];
__constant__ int kTerms;
__device__ unsigned int gCount;
__device__ unsigned int gCalls = 7;

extern "C" __global__ void poly_table(const float* x, float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i == 0) atomicAdd(&gCalls, 1u);
  if (i >= n) return;
  const int terms = kTerms < 16 ? kTerms : 16;
  float acc = 0.0f;
  float p = 1.0f;
  for (int k = 0; k < terms; ++k) {
    acc = fmaf(kTable[k], p, acc);
    p = __fmul_rn(p, x[i]);
  }
  y[i] = acc;
  atomicAdd(&gCount, 1u);
}

extern "C" __global__ void bump(unsigned int* counter, unsigned int by) {
  atomicAdd(counter, by);
}
