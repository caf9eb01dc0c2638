// The `cuda` device backend: one private CUDA context per lease, through the
// CUDA Driver API loaded at run time (docs/CUDA_BACKEND.md).
//
//   auto b = gpulease::server::cuda::make_cuda_backend();
//   if (!b) { /* no driver or no device: b.error().message says which */ }
//   auto ctx = b.value()->create_context(0, {.quota_bytes = 1 << 30}).value();
//
// libcuda.so.1 is dlopen'ed by make_cuda_backend() and every entry point is
// resolved with cuGetProcAddress at the ABI version this code was written
// against, so a binary built with CUDA 13 headers runs on 12.x and 13.x
// drivers alike (optional features -- cuFuncGetParamInfo, green contexts --
// are used where the driver has them).
//
// THREAD SAFETY: as DeviceBackend / DeviceContext. The backend owns one
// monitor thread (sync completion, fault detection, watchdog) shared by all
// contexts, and one teardown thread that destroys contexts the watchdog
// gave up on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::server::cuda {

struct CudaBackendOptions {
  // dlopen name or path of the driver library.
  std::string driver_path = "libcuda.so.1";
  // Set CUDA_MODULE_LOADING=LAZY before cuInit unless the operator set it.
  bool lazy_loading = true;
  // Per-context limits that keep a context's own VRAM small (bytes).
  uint64_t stack_bytes_per_thread = 1024;
  uint64_t printf_fifo_bytes = 64 * 1024;
  uint64_t malloc_heap_bytes = 1024 * 1024;
  // Pinned staging: two buffers of this size per context (allocated on the
  // first transfer), so copy of chunk i overlaps the memcpy of chunk i+1.
  uint64_t staging_chunk_bytes = 4u << 20;
  // Monitor tick while any context has work in flight: bounds how late a
  // fault or a watchdog expiry is seen (a host function wakes the monitor
  // at once for ordinary sync completion).
  uint32_t monitor_tick_us = 1000;
  // Launches one context may have in flight; launch() waits (interruptibly)
  // beyond that so the driver's launch queue never blocks a thread.
  uint32_t max_inflight_launches = 512;
  // SessionExclusive leases get a green context of this many SMs; 0 = a
  // quarter of the device (rounded to the driver's partition granularity).
  uint32_t exclusive_sm_count = 0;
  // SessionExclusive through green contexts. Off by default: a green
  // context is the device's primary context with an SM partition, so all
  // green-context leases on a device share ONE address space and ONE fault
  // domain (docs/CUDA_BACKEND.md). Off -> SessionExclusive is UNSUPPORTED.
  bool green_contexts = false;
};

// Loads the driver, initialises it, takes the inventory and measures the
// per-context overhead on each device (it creates two contexts per device
// for that). Errors: UNSUPPORTED "libcuda.so.1 not found: ..." without a
// driver, UNSUPPORTED "no CUDA device: ..." without a device, INTERNAL for a
// driver that fails otherwise.
[[nodiscard]] Result<std::unique_ptr<DeviceBackend>> make_cuda_backend(
    const CudaBackendOptions& options = {});

}  // namespace gpulease::server::cuda
