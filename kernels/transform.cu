// Recipe 30: two element-wise kernels run one after the other on one buffer.
//
// scale: data[i] *= factor for i < n.
// bias:  data[i] += b      for i < n.
// One thread per element; launch with grid = ceil(n / block).
extern "C" __global__ void scale(float* data, int n, float factor) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] *= factor;
}

extern "C" __global__ void bias(float* data, int n, float b) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] += b;
}
