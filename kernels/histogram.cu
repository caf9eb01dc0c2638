// Global atomics.
//
// histogram:  bins[data[i] % nbins] += 1 for i < n (atomicAdd on u32 bins).
//             REQUIRES: nbins >= 1.
// minmax:     stats[0] = min, stats[1] = max of the int values (atomicMin /
//             atomicMax); stats[2] = the number of i with values[i] == 0
//             (atomicAdd); stats[3] = an index of one zero value, or
//             unchanged if there is none (atomicExch: which zero's index wins
//             is unspecified); stats[4] = the smallest index whose value is
//             negative, starting from INT_MAX set by the caller (a CAS loop
//             on atomicCAS). The caller initialises stats to
//             {INT_MAX, INT_MIN, 0, -1, INT_MAX}.
extern "C" __global__ void histogram(const unsigned* data, unsigned* bins, int n, unsigned nbins) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(&bins[data[i] % nbins], 1u);
}

extern "C" __global__ void minmax(const int* values, int* stats, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int v = values[i];
  atomicMin(&stats[0], v);
  atomicMax(&stats[1], v);
  if (v == 0) {
    atomicAdd(&stats[2], 1);
    atomicExch(&stats[3], i);
  }
  if (v < 0) {
    int old = stats[4];
    while (i < old) {
      int seen = atomicCAS(&stats[4], old, i);
      if (seen == old) break;
      old = seen;
    }
  }
}
