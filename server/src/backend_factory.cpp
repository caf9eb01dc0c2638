#include "backend_factory.hpp"

#include <algorithm>

#include "gpulease/sim/sim_backend.hpp"
#include "log.hpp"
#ifdef GPULEASE_HAVE_CUDA_BACKEND
#include "gpulease/cuda/cuda_backend.hpp"
#endif

namespace gpulease::server {

namespace {

std::unique_ptr<DeviceBackend> sim(const NodeConfig& cfg) {
  sim::SimConfig sc;
  sc.devices.clear();
  for (uint32_t i = 0; i < std::max(1u, cfg.sim_devices); ++i) {
    sim::SimDeviceConfig d;
    d.total_bytes = cfg.sim_device_bytes;
    sc.devices.push_back(d);
  }
  sc.worker_threads = cfg.device_threads;
  sc.worker_nice = static_cast<int>(cfg.sim_worker_nice);
  if (cfg.instruction_budget != 0) sc.default_instruction_budget = cfg.instruction_budget;
  return sim::make_sim_backend(sc);
}

}  // namespace

Result<std::unique_ptr<DeviceBackend>> make_backend(const NodeConfig& cfg) {
  if (cfg.backend == "sim") return sim(cfg);
#ifdef GPULEASE_HAVE_CUDA_BACKEND
  auto cuda = cuda::make_cuda_backend();
  if (cfg.backend == "cuda") return cuda;
  if (cuda) return std::move(cuda).value();
  log_info("no usable CUDA device: falling back to the sim backend",
           {{"reason", cuda.error().message}});
  return sim(cfg);
#else
  if (cfg.backend == "cuda") {
    return make_error(Status::kUnsupported,
                      "this gpuleased was built without the cuda backend (no CUDA toolkit headers "
                      "at build time)");
  }
  log_info("built without the cuda backend: using the sim backend");
  return sim(cfg);
#endif
}

}  // namespace gpulease::server
