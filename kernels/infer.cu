// Recipes 5 and 53: one dense layer with a ReLU, the unit of a small model.
//
// infer: y[o] = max(0, b[o] + sum_{k < in_dim} W[o * in_dim + k] * x[k])
//        for o < out_dim. W is row-major out_dim x in_dim. The dot product is
//        accumulated in float, k ascending, each step an fma (acc = fma(w, x, acc))
//        starting from acc = 0; the bias is added last.
// One thread per output; launch with grid = ceil(out_dim / block).
extern "C" __global__ void infer(const float* W, const float* x, const float* b, float* y,
                                 int in_dim, int out_dim) {
  int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out_dim) return;
  const float* row = W + (long long)o * in_dim;
  float acc = 0.0f;
  for (int k = 0; k < in_dim; ++k) acc = __fmaf_rn(row[k], x[k], acc);
  acc += b[o];
  y[o] = acc > 0.0f ? acc : 0.0f;
}
