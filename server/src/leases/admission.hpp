// Admission: which device a new lease goes to, and the bytes it holds there.
//
// reserve() picks a device (best fit) and takes the lease's quota plus its
// context overhead from it, and the lease from the tenant's share, in one
// step under one lock. It returns a move-only Reservation that gives
// everything back in its destructor, so a refused or abandoned acquire and
// an ended lease return their bytes the same way, once.
//
// THREAD SAFETY: every method may be called from any thread. The lock is
// never held across a call out.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::server {

class Admission;

// Bytes and a lease slot held on one device for one tenant. Empty after a
// move or release(); the destructor releases what it holds.
class Reservation {
 public:
  Reservation() = default;
  ~Reservation() { release(); }
  Reservation(Reservation&& o) noexcept { *this = std::move(o); }
  Reservation& operator=(Reservation&& o) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  // Gives the bytes back now. Idempotent.
  void release();

  [[nodiscard]] bool held() const noexcept { return owner_ != nullptr; }
  [[nodiscard]] uint16_t device() const noexcept { return device_; }
  [[nodiscard]] uint64_t quota() const noexcept { return quota_; }
  [[nodiscard]] uint64_t overhead() const noexcept { return overhead_; }

 private:
  friend class Admission;
  Admission* owner_ = nullptr;
  std::string tenant_;
  uint16_t device_ = 0;
  uint64_t quota_ = 0;
  uint64_t overhead_ = 0;
  bool exclusive_ = false;
};

struct AdmissionLimits {
  uint32_t tenant_max_leases = 64;
  uint64_t tenant_max_bytes = 0;  // 0 = no limit
};

class Admission {
 public:
  // `overhead(device)` is the backend's per-context cost, counted with each
  // lease. The backend must outlive the Admission.
  Admission(const std::vector<DeviceInfo>& devices, const DeviceBackend& backend,
            AdmissionLimits limits);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  struct Request {
    std::string tenant;
    uint64_t bytes = 0;
    uint16_t device = wire::kAnyDevice;
    wire::Exclusivity exclusivity = wire::Exclusivity::kShared;
  };
  // CAPACITY_EXCEEDED naming what is missing (tenant leases, tenant bytes,
  // no device with room).
  [[nodiscard]] Result<Reservation> reserve(const Request& r);

  // What HELLO reports: free bytes per device (0 while held exclusively).
  [[nodiscard]] std::vector<std::pair<DeviceInfo, uint64_t>> device_room() const;
  // A device's fixed inventory. REQUIRES: index names a device of this node.
  [[nodiscard]] const DeviceInfo& device_info(uint16_t index) const;

 private:
  friend class Reservation;
  void give_back(const Reservation& r);

  struct DeviceSlot {
    DeviceInfo info;              // fixed at construction
    uint64_t capacity = 0;        // bytes leases may take (quota + overhead)
    uint64_t committed = 0;       // GUARDED_BY(mu_)
    uint32_t leases = 0;          // GUARDED_BY(mu_)
    bool exclusive_held = false;  // GUARDED_BY(mu_)
  };
  struct TenantUsage {
    uint32_t leases = 0;
    uint64_t bytes = 0;
  };

  const DeviceBackend& backend_;
  const AdmissionLimits limits_;
  mutable std::mutex mu_;
  std::vector<DeviceSlot> devices_;
  std::map<std::string, TenantUsage, std::less<>> tenants_;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::server
