// Kernels that misbehave on purpose, for the sim backend's safety tests.
//
// oob_read: out[i] = in[i + offset] for i < n. With an offset past the end
//           of `in` (for example n + 1 << 20) the load leaves the allocation:
//           an illegal address on a GPU, a fault in the sim backend.
// spin:     loops while *flag == 0 (a volatile load each time). With flag
//           pointing at 0 it never ends: the sim stops it with its
//           instruction budget (a GPU needs a watchdog).
extern "C" __global__ void oob_read(const float* in, float* out, int n, int offset) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i + offset];
}

extern "C" __global__ void spin(const int* flag) {
  while (*(volatile const int*)flag == 0) {
  }
}
