// 64-bit integer math.
//
// mix64: out[i] = splitmix64(in[i] + seed) ^ ((in[i] * 0x9E3779B97F4A7C15) >> 7)
//        + (in[i] / 7) - (in[i] % 13) + mulhi(in[i], seed), all u64
//        wrapping, where splitmix64(z) = z ^= z >> 30, z *= 0xBF58476D1CE4E5B9,
//        z ^= z >> 27, z *= 0x94D049BB133111EB, z ^= z >> 31 and mulhi is the
//        high 64 bits of the 128-bit product. Also
//        sdiv[i] = (s64)in[i] / -3 and smax[i] = max((s64)in[i], (s64)seed)
//        so signed 64-bit division and compare are exercised.
extern "C" __global__ void mix64(const unsigned long long* in, unsigned long long* out,
                                 long long* sdiv, long long* smax, int n, unsigned long long seed) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long x = in[i];
  unsigned long long z = x + seed;
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  z ^= z >> 31;
  out[i] = (z ^ ((x * 0x9E3779B97F4A7C15ull) >> 7)) + x / 7 - x % 13 + __umul64hi(x, seed);
  long long sx = (long long)x;
  sdiv[i] = sx / -3;
  smax[i] = sx > (long long)seed ? sx : (long long)seed;
}
