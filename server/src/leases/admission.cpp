#include "leases/admission.hpp"

#include <cassert>

namespace gpulease::server {

using wire::Status;

Reservation& Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = o.owner_;
    tenant_ = std::move(o.tenant_);
    device_ = o.device_;
    quota_ = o.quota_;
    overhead_ = o.overhead_;
    exclusive_ = o.exclusive_;
    o.owner_ = nullptr;
  }
  return *this;
}

void Reservation::release() {
  if (owner_ == nullptr) return;
  owner_->give_back(*this);
  owner_ = nullptr;
}

Admission::Admission(const std::vector<DeviceInfo>& devices, const DeviceBackend& backend,
                     AdmissionLimits limits)
    : backend_(backend), limits_(limits) {
  for (const DeviceInfo& d : devices) {
    DeviceSlot slot;
    slot.info = d;
    slot.capacity = d.free_bytes;
    devices_.push_back(slot);
  }
}

Result<Reservation> Admission::reserve(const Request& req) {
  std::lock_guard lock(mu_);
  auto tit = tenants_.find(req.tenant);
  const TenantUsage tu = tit == tenants_.end() ? TenantUsage{} : tit->second;
  if (tu.leases >= limits_.tenant_max_leases) {
    return make_error(Status::kCapacityExceeded,
                      "tenant holds " + std::to_string(tu.leases) + " leases (limit " +
                          std::to_string(limits_.tenant_max_leases) + ")");
  }
  if (limits_.tenant_max_bytes != 0 &&
      req.bytes > limits_.tenant_max_bytes - std::min(limits_.tenant_max_bytes, tu.bytes)) {
    return make_error(Status::kCapacityExceeded, "tenant byte limit reached");
  }
  // Best fit: the device with the least room that still fits quota + overhead.
  DeviceSlot* best = nullptr;
  for (auto& d : devices_) {
    if (req.device != wire::kAnyDevice && d.info.index != req.device) continue;
    if (d.exclusive_held) continue;
    if (req.exclusivity == wire::Exclusivity::kDeviceExclusive && d.leases != 0) continue;
    uint64_t oh = backend_.context_overhead_bytes(d.info.index);
    if (req.bytes > UINT64_MAX - oh) continue;
    uint64_t want = req.bytes + oh;
    uint64_t room = d.capacity - d.committed;
    if (want > room) continue;
    if (best == nullptr || room < best->capacity - best->committed) best = &d;
  }
  if (best == nullptr) {
    return make_error(Status::kCapacityExceeded,
                      req.device != wire::kAnyDevice && req.device >= devices_.size()
                          ? "no device " + std::to_string(req.device)
                          : "no device has " + std::to_string(req.bytes) + " bytes free");
  }
  Reservation r;
  r.owner_ = this;
  r.tenant_ = req.tenant;
  r.device_ = best->info.index;
  r.quota_ = req.bytes;
  r.overhead_ = backend_.context_overhead_bytes(best->info.index);
  r.exclusive_ = req.exclusivity == wire::Exclusivity::kDeviceExclusive;
  best->committed += r.quota_ + r.overhead_;
  best->leases += 1;
  if (r.exclusive_) best->exclusive_held = true;
  TenantUsage& t = tenants_[req.tenant];
  t.leases += 1;
  t.bytes += req.bytes;
  return r;
}

void Admission::give_back(const Reservation& r) {
  std::lock_guard lock(mu_);
  for (auto& d : devices_) {
    if (d.info.index != r.device_) continue;
    d.committed -= r.quota_ + r.overhead_;
    d.leases -= 1;
    if (r.exclusive_) d.exclusive_held = false;
  }
  auto it = tenants_.find(r.tenant_);
  if (it == tenants_.end()) return;
  it->second.leases -= 1;
  it->second.bytes -= r.quota_;
  if (it->second.leases == 0) tenants_.erase(it);  // no empty entries left behind
}

std::vector<std::pair<DeviceInfo, uint64_t>> Admission::device_room() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<DeviceInfo, uint64_t>> out;
  for (const auto& d : devices_)
    out.emplace_back(d.info, d.exclusive_held ? 0 : d.capacity - d.committed);
  return out;
}

const DeviceInfo& Admission::device_info(uint16_t index) const {
  // No lock: `info` is fixed at construction.
  for (const auto& d : devices_) {
    if (d.info.index == index) return d.info;
  }
  assert(false && "lease on a device the node does not have");
  return devices_.front().info;
}

}  // namespace gpulease::server
