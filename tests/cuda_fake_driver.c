/* A fake libcuda.so.1 for the cuda backend's loader tests on hosts without
 * a GPU. Built three ways (FAKE_MODE):
 *   1  no device:   every entry point resolves; cuInit fails NO_DEVICE.
 *   2  too old:     cuGetProcAddress resolves nothing newer than CUDA 9
 *                   (cuLaunchHostFunc is missing).
 *   3  pre-11.3:    no cuGetProcAddress at all.
 */
#include <cuda.h>
#include <string.h>

#if FAKE_MODE != 3

static CUresult fake_init(unsigned int flags) {
  (void)flags;
  return CUDA_ERROR_NO_DEVICE;
}

static CUresult fake_error_name(CUresult e, const char** s) {
  if (e == CUDA_ERROR_NO_DEVICE) {
    *s = "CUDA_ERROR_NO_DEVICE";
    return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

static CUresult fake_error_string(CUresult e, const char** s) {
  if (e == CUDA_ERROR_NO_DEVICE) {
    *s = "no CUDA-capable device is detected";
    return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

/* Never called: the loader stops at cuInit. */
static CUresult fake_unused(void) { return CUDA_ERROR_NOT_INITIALIZED; }

CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                             CUdriverProcAddressQueryResult* found) {
  (void)flags;
  *pfn = NULL;
  if (found) *found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
#if FAKE_MODE == 2
  if (version > 9020 || strcmp(symbol, "cuLaunchHostFunc") == 0) return CUDA_ERROR_NOT_FOUND;
#else
  (void)version;
#endif
  if (strcmp(symbol, "cuInit") == 0) {
    *pfn = (void*)&fake_init;
  } else if (strcmp(symbol, "cuGetErrorName") == 0) {
    *pfn = (void*)&fake_error_name;
  } else if (strcmp(symbol, "cuGetErrorString") == 0) {
    *pfn = (void*)&fake_error_string;
  } else if (strncmp(symbol, "cuGreen", 7) == 0 || strcmp(symbol, "cuFuncGetParamInfo") == 0) {
    return CUDA_ERROR_NOT_FOUND; /* optional ones: absent */
  } else {
    *pfn = (void*)&fake_unused;
  }
  if (found) *found = CU_GET_PROC_ADDRESS_SUCCESS;
  return CUDA_SUCCESS;
}

#else

/* A symbol so the library is not empty. */
CUresult cuInit(unsigned int flags) {
  (void)flags;
  return CUDA_ERROR_NO_DEVICE;
}

#endif
