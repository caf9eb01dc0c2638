// Element-wise vector kernels, one thread per element, grid = ceil(n / block).
//
// vector_add: c[i] = a[i] + b[i].
// saxpy:      y[i] = a * x[i] + y[i], as one fused multiply-add (fmaf).
extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

extern "C" __global__ void saxpy(int n, float a, const float* x, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __fmaf_rn(a, x[i], y[i]);
}
