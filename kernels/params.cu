// Every scalar parameter width and structs passed by value, echoed back as
// 64-bit words so a test can check the exact bits a launch delivered
// (`gpulease run --arg i8:... --arg f16:... --arg bytes:...`).
//
// echo_params: o[k] = the k-th parameter, sign- or zero-extended (integers)
//              or as its raw bits (floats); struct members one word each.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

struct Pair {  // 16 bytes, aligned to 8: 4 bytes of padding after a
  int a;
  double b;
};
struct Tri {  // 8 bytes, aligned to 4: 1 byte of padding after c
  signed char c;
  short s;
  float f;
};

extern "C" __global__ void echo_params(signed char i8, unsigned char u8, short i16,
                                       unsigned short u16, int i32, unsigned int u32, long long i64,
                                       unsigned long long u64, __half h, __nv_bfloat16 bf, float f,
                                       double d, Pair p, Tri t, unsigned long long* o) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  o[0] = static_cast<unsigned long long>(static_cast<long long>(i8));
  o[1] = u8;
  o[2] = static_cast<unsigned long long>(static_cast<long long>(i16));
  o[3] = u16;
  o[4] = static_cast<unsigned long long>(static_cast<long long>(i32));
  o[5] = u32;
  o[6] = static_cast<unsigned long long>(i64);
  o[7] = u64;
  o[8] = __half_as_ushort(h);
  o[9] = __bfloat16_as_ushort(bf);
  o[10] = __float_as_uint(f);
  o[11] = static_cast<unsigned long long>(__double_as_longlong(d));
  o[12] = static_cast<unsigned long long>(static_cast<long long>(p.a));
  o[13] = static_cast<unsigned long long>(__double_as_longlong(p.b));
  o[14] = static_cast<unsigned long long>(static_cast<long long>(t.c));
  o[15] = static_cast<unsigned long long>(static_cast<long long>(t.s));
  o[16] = __float_as_uint(t.f);
}
