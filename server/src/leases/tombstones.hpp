// Ended leases the node still remembers, so a late op on one is answered
// LEASE_EXPIRED ("was released" / "has ended") rather than LEASE_NOT_FOUND.
//
// Bounded per tenant and in total, and fair between tenants: each tenant
// keeps its most recent `per_tenant` tombstones (its own oldest goes first),
// and when all tenants together hold `total`, the oldest tombstone of the
// tenant holding the most goes. So a tenant that ends leases in a loop
// pushes out only its own: another tenant's tombstones are kept while it
// holds no more than min(per_tenant, total / tenants remembered) of them.
//
// THREAD SAFETY: none; the node guards it with its lease-table mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "metrics.hpp"

namespace gpulease::server {

class Tombstones {
 public:
  // REQUIRES: 1 <= per_tenant <= total.
  Tombstones(size_t per_tenant, size_t total);

  // Lease `id` of `tenant` ended for `reason`. REQUIRES: id not remembered.
  void add(uint64_t id, const std::string& tenant, DropReason reason);
  // Why lease `id` of `tenant` ended, if it is remembered for that tenant
  // (another tenant's tombstone is not found).
  [[nodiscard]] std::optional<DropReason> find(uint64_t id, const std::string& tenant) const;
  // An id remembered for any tenant (lease ids are not reused while remembered).
  [[nodiscard]] bool contains(uint64_t id) const { return by_id_.count(id) != 0; }

  [[nodiscard]] size_t size() const noexcept { return by_id_.size(); }
  [[nodiscard]] size_t held_by(const std::string& tenant) const;

 private:
  struct Entry {
    std::string tenant;
    DropReason reason;
  };
  // Forgets the oldest tombstone of `tenant`. REQUIRES: it holds one.
  void evict_oldest(const std::string& tenant);

  const size_t per_tenant_;
  const size_t total_;
  std::unordered_map<uint64_t, Entry> by_id_;
  std::unordered_map<std::string, std::deque<uint64_t>> by_tenant_;  // oldest first
  std::set<std::pair<size_t, std::string>> by_count_;  // (held, tenant): the largest last
};

}  // namespace gpulease::server
