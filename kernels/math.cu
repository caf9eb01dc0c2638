// The CUDA math API, one kernel per function (k_<name>), for the sim's
// accuracy tests (tests/ptx_math_test.cpp): each runs y[i] = f(x[i]) (or
// f(x[i], z[i])) for i < n. What nvcc emits for these is most of what it
// emits for ordinary float code: directed rounding, module-scope tables
// (__cudart_i2opi_f), device functions (the slow paths of sin/cos/pow),
// copysign, carry chains, bit-field ops. k_<name><order> runs
// y[i] = f(order, x[i]) for the integer-order Bessel functions.
#define F1(name)                                                         \
  extern "C" __global__ void k_##name(const float* x, float* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                       \
    if (i < n) y[i] = name(x[i]);                                        \
  }
#define D1(name)                                                           \
  extern "C" __global__ void k_##name(const double* x, double* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                         \
    if (i < n) y[i] = name(x[i]);                                          \
  }
#define F2(name)                                                                         \
  extern "C" __global__ void k_##name(const float* x, const float* z, float* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                       \
    if (i < n) y[i] = name(x[i], z[i]);                                                  \
  }
#define D2(name)                                                                            \
  extern "C" __global__ void k_##name(const double* x, const double* z, double* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                          \
    if (i < n) y[i] = name(x[i], z[i]);                                                     \
  }
#define FN(name, order)                                                         \
  extern "C" __global__ void k_##name##order(const float* x, float* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                              \
    if (i < n) y[i] = name(order, x[i]);                                        \
  }
#define DN(name, order)                                                           \
  extern "C" __global__ void k_##name##order(const double* x, double* y, int n) { \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                \
    if (i < n) y[i] = name(order, x[i]);                                          \
  }
// One line per group, as a table (clang-format off to the end of the file).
// clang-format off
F1(expf) F1(exp2f) F1(exp10f) F1(expm1f) F1(logf) F1(log2f) F1(log10f) F1(log1pf) F1(sinf) F1(cosf) F1(tanf) F1(asinf) F1(acosf) F1(atanf)
F1(sinhf) F1(coshf) F1(tanhf) F1(asinhf) F1(acoshf) F1(atanhf) F1(sqrtf) F1(rsqrtf) F1(cbrtf) F1(rcbrtf) F1(erff) F1(erfcf) F1(erfinvf) F1(erfcinvf)
F1(lgammaf) F1(tgammaf) F1(truncf) F1(roundf) F1(rintf) F1(floorf) F1(ceilf) F1(fabsf) F1(logbf) F1(j0f) F1(j1f) F1(y0f) F1(y1f) F1(normcdff) F1(normcdfinvf) F1(sinpif) F1(cospif)
F2(powf) F2(atan2f) F2(fmodf) F2(remainderf) F2(hypotf) F2(fminf) F2(fmaxf) F2(fdimf) F2(copysignf) F2(nextafterf)
D1(exp) D1(exp2) D1(exp10) D1(expm1) D1(log) D1(log2) D1(log10) D1(log1p) D1(sin) D1(cos) D1(tan) D1(asin) D1(acos) D1(atan)
D1(sinh) D1(cosh) D1(tanh) D1(asinh) D1(acosh) D1(atanh) D1(sqrt) D1(rsqrt) D1(cbrt) D1(rcbrt) D1(erf) D1(erfc) D1(erfinv) D1(erfcinv)
D1(lgamma) D1(tgamma) D1(trunc) D1(round) D1(rint) D1(floor) D1(ceil) D1(fabs) D1(logb) D1(normcdf) D1(normcdfinv) D1(sinpi) D1(cospi)
D2(pow) D2(atan2) D2(fmod) D2(remainder) D2(hypot) D2(fmin) D2(fmax) D2(fdim) D2(copysign) D2(nextafter)
D1(j0) D1(j1) D1(y0) D1(y1) FN(jnf, 5) FN(ynf, 5) DN(jn, 5) DN(yn, 5)
