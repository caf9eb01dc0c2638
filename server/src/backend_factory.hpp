// Picks the device backend named by --backend.
#pragma once

#include <memory>

#include "config.hpp"
#include "gpulease/server/device_backend.hpp"

namespace gpulease::server {

// "sim": the PTX interpreter. "cuda": the CUDA driver (fails clearly where
// none is loadable or no device answers). "auto": cuda where a device
// answers, else sim; the reason is logged.
[[nodiscard]] Result<std::unique_ptr<DeviceBackend>> make_backend(const NodeConfig& cfg);

}  // namespace gpulease::server
