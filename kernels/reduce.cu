// Block reductions in shared memory with __syncthreads.
//
// reduce_sum: out[blockIdx.x] = sum of in[blockIdx.x * blockDim.x + t] over
//             the block's threads t (elements at or past n count as 0).
//             Tree order: stride s = blockDim.x / 2, /2, ... down to 1, with
//             sh[t] += sh[t + s] for t < s. REQUIRES: blockDim.x is a power
//             of two, at most 1024 (static shared array of 1024 floats).
// reduce_max_dyn: the same tree on int with max, in dynamic (extern) shared
//             memory: launch with blockDim.x * 4 bytes of shared memory;
//             elements past n count as INT_MIN.
extern "C" __global__ void reduce_sum(const float* in, float* out, int n) {
  __shared__ float sh[1024];
  unsigned t = threadIdx.x;
  int i = blockIdx.x * blockDim.x + t;
  sh[t] = i < n ? in[i] : 0.0f;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] += sh[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = sh[0];
}

extern "C" __global__ void reduce_max_dyn(const int* in, int* out, int n) {
  extern __shared__ int dsh[];
  unsigned t = threadIdx.x;
  int i = blockIdx.x * blockDim.x + t;
  dsh[t] = i < n ? in[i] : (int)0x80000000;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) dsh[t] = max(dsh[t], dsh[t + s]);
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = dsh[0];
}
