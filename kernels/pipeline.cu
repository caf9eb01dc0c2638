// Recipe 34: a three-stage pipeline over one segment of n samples, with the
// intermediate buffers kept in device memory between the stages.
//
// decode:  raw u8 -> float in [0, 1]:      decoded[i] = raw[i] / 255.0f
//          (IEEE division, rounded to nearest).
// denoise: float -> float, 3-tap smoothing followed by a noise gate:
//          s = (data[i-1] + data[i] + data[i+1]) / 3, where a missing
//          neighbour at either end of the segment is replaced by data[i]
//          (clamp to edge); output[i] = s > threshold ? s : 0.0f.
//          The sum is left to right in float; the division is IEEE.
// encode:  float -> u8: output[i] = (u8)fma(clamp(input[i], 0, 1), 255, 0.5)
//          i.e. clamp to [0, 1] (NaN -> 0), scale and round half up in one
//          fused multiply-add, then a truncating conversion.
// One thread per sample; launch with grid = ceil(n / block).
extern "C" __global__ void decode(const unsigned char* raw, float* decoded, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) decoded[i] = (float)raw[i] / 255.0f;
}

extern "C" __global__ void denoise(const float* data, float* output, int n, float threshold) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float c = data[i];
    float l = i > 0 ? data[i - 1] : c;
    float r = i + 1 < n ? data[i + 1] : c;
    float s = (l + c + r) / 3.0f;
    output[i] = s > threshold ? s : 0.0f;
  }
}

extern "C" __global__ void encode(const float* input, unsigned char* output, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float v = fminf(fmaxf(input[i], 0.0f), 1.0f);
    output[i] = (unsigned char)__fmaf_rn(v, 255.0f, 0.5f);
  }
}
