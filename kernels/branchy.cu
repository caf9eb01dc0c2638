// A loop with data-dependent trip counts and divergent branches.
//
// collatz: steps[i] = the number of Collatz steps (n -> n/2 if even,
//          3n+1 if odd) to reach 1 from start[i], capped at max_steps;
//          start[i] == 0 gives 0. Arithmetic is u32 (wraps on overflow).
// classify: out[i] = 1 if x[i] < lo, 2 if x[i] > hi, 3 if it is NaN,
//          else 0 when i is even and 4 when i is odd (float compares).
extern "C" __global__ void collatz(const unsigned* start, unsigned* steps, int n,
                                   unsigned max_steps) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned v = start[i];
  unsigned s = 0;
  if (v != 0) {
    while (v != 1 && s < max_steps) {
      if (v & 1u)
        v = 3u * v + 1u;
      else
        v >>= 1;
      ++s;
    }
  }
  steps[i] = s;
}

extern "C" __global__ void classify(const float* x, int* out, int n, float lo, float hi) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = x[i];
  int c;
  if (v != v)
    c = 3;
  else if (v < lo)
    c = 1;
  else if (v > hi)
    c = 2;
  else if (i & 1)
    c = 4;
  else
    c = 0;
  out[i] = c;
}
