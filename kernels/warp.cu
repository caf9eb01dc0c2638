// Warp-level kernels: they are right only if the lanes of a warp run in
// lockstep (or synchronise where CUDA says they must).
//
// reduce_volatile: out[blockIdx.x] = sum of in[] over the block (blockDim.x
//           = 256, power of two), with the classic final-warp reduction on
//           volatile shared memory and no __syncwarp (warp-synchronous).
// reduce_shfl: out[blockIdx.x] = sum of the block's elements by
//           __shfl_down_sync within each warp, then warp sums through shared.
// votes:    for each element: bits[i] = __ballot_sync(~0, x[i] > 0) (the
//           warp's ballot), all[i] = __all_sync(~0, x[i] > 0), any[i] =
//           __any_sync(~0, x[i] > 0), uni[i] = __activemask() after an
//           odd/even branch (the lanes of the executing branch).
// scan_shfl: inclusive prefix sum of each warp's 32 elements with
//           __shfl_up_sync; out[i] = sum of in[warp start .. i].
// xor_butterfly: out[i] = max over the warp of in[] via __shfl_xor_sync, and
//           src[i] = __shfl_sync(~0, in[i], 31 - lane) (lane reversal).
// spin_lock: every thread takes one global lock (atomicCAS spin) and adds
//           its index to *total inside the critical section; *count counts
//           the entries. Threads of one warp contend for the lock.
// match_any: out[i] = __match_any_sync(~0, key[i]) (lanes with the same key).
// divergent_sum: lanes take data-dependent paths and loops of different
//           lengths, then reconverge for a __shfl_xor_sync butterfly sum.
extern "C" __global__ void reduce_volatile(const int* in, int* out, int n) {
  __shared__ int sh[256];
  unsigned t = threadIdx.x;
  int i = blockIdx.x * blockDim.x + t;
  sh[t] = i < n ? in[i] : 0;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 32; s >>= 1) {
    if (t < s) sh[t] += sh[t + s];
    __syncthreads();
  }
  if (t < 32) {
    volatile int* v = sh;
    v[t] += v[t + 32];
    v[t] += v[t + 16];
    v[t] += v[t + 8];
    v[t] += v[t + 4];
    v[t] += v[t + 2];
    v[t] += v[t + 1];
  }
  if (t == 0) out[blockIdx.x] = sh[0];
}

extern "C" __global__ void reduce_shfl(const float* in, float* out, int n) {
  __shared__ float warp_sums[32];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? in[i] : 0.0f;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    unsigned nwarps = (blockDim.x + 31) / 32;
    v = lane < nwarps ? warp_sums[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

extern "C" __global__ void votes(const int* x, unsigned* bits, int* all, int* any, unsigned* uni,
                                 int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int v = i < n ? x[i] : 0;
  unsigned b = __ballot_sync(0xffffffffu, v > 0);
  int a = __all_sync(0xffffffffu, v > 0);
  int y = __any_sync(0xffffffffu, v > 0);
  unsigned m;
  if (threadIdx.x & 1)
    m = __activemask();
  else
    m = __activemask() | 0x80000000u;
  if (i < n) {
    bits[i] = b;
    all[i] = a;
    any[i] = y;
    uni[i] = m;
  }
}

extern "C" __global__ void scan_shfl(const int* in, int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned lane = threadIdx.x % 32;
  int v = i < n ? in[i] : 0;
  for (int off = 1; off < 32; off <<= 1) {
    int u = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= (unsigned)off) v += u;
  }
  if (i < n) out[i] = v;
}

extern "C" __global__ void xor_butterfly(const int* in, int* out, int* src, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned lane = threadIdx.x % 32;
  int v = i < n ? in[i] : -2147483647 - 1;
  int orig = v;
  for (int m = 16; m > 0; m >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, m));
  int r = __shfl_sync(0xffffffffu, orig, 31 - lane);
  if (i < n) {
    out[i] = v;
    src[i] = r;
  }
}

extern "C" __global__ void spin_lock(int* lock, unsigned long long* total, int* count) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  bool done = false;
  while (!done) {
    if (atomicCAS(lock, 0, 1) == 0) {
      *total += i;  // plain read-modify-write inside the critical section
      *count += 1;
      __threadfence();
      atomicExch(lock, 0);
      done = true;
    }
  }
}

extern "C" __global__ void match_any(const int* key, unsigned* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int k = i < n ? key[i] : -1;
  unsigned m = __match_any_sync(0xffffffffu, k);
  if (i < n) out[i] = m;
}

extern "C" __global__ void divergent_sum(const int* in, int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  int v = i < n ? in[i] : 0;
  int acc = 0;
  if (v & 1) {
    for (int k = 0; k < (v & 7); ++k) acc += v >> k;
  } else {
    acc = v * 3;
    if (v & 2) acc -= 5;
  }
  for (int m = 16; m > 0; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
  if (i < n) out[i] = acc;
}
