#include "tombstones.hpp"

#include <algorithm>

namespace gpulease::server {

Tombstones::Tombstones(size_t per_tenant, size_t total)
    : per_tenant_(std::max<size_t>(per_tenant, 1)),
      total_(std::max(total, std::max<size_t>(per_tenant, 1))) {}

void Tombstones::evict_oldest(const std::string& tenant) {
  auto it = by_tenant_.find(tenant);
  if (it == by_tenant_.end() || it->second.empty()) return;
  std::deque<uint64_t>& ids = it->second;
  by_count_.erase({ids.size(), tenant});
  by_id_.erase(ids.front());
  ids.pop_front();
  if (ids.empty()) {
    by_tenant_.erase(it);
  } else {
    by_count_.emplace(ids.size(), tenant);
  }
}

void Tombstones::add(uint64_t id, const std::string& tenant, DropReason reason) {
  if (by_id_.count(id) != 0) return;
  if (held_by(tenant) >= per_tenant_) {
    evict_oldest(tenant);
  } else if (by_id_.size() >= total_ && !by_count_.empty()) {
    // Copied: evict_oldest erases the set entry the name lives in.
    const std::string largest = by_count_.rbegin()->second;
    evict_oldest(largest);
  }
  std::deque<uint64_t>& ids = by_tenant_[tenant];
  if (!ids.empty()) by_count_.erase({ids.size(), tenant});
  ids.push_back(id);
  by_count_.emplace(ids.size(), tenant);
  by_id_.emplace(id, Entry{tenant, reason});
}

std::optional<DropReason> Tombstones::find(uint64_t id, const std::string& tenant) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.tenant != tenant) return std::nullopt;
  return it->second.reason;
}

size_t Tombstones::held_by(const std::string& tenant) const {
  auto it = by_tenant_.find(tenant);
  return it == by_tenant_.end() ? 0 : it->second.size();
}

}  // namespace gpulease::server
