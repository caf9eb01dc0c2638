#include "reply_budget.hpp"

#include <vector>

namespace gpulease::server {

void ReplyBudget::Tenant::add(uint64_t n) {
  const uint64_t now = held_.fetch_add(n) + n;
  uint64_t p = peak_.load();
  while (now > p && !peak_.compare_exchange_weak(p, now)) {
  }
}

bool ReplyBudget::Tenant::try_add(uint64_t n) {
  uint64_t h = held_.load();
  for (;;) {
    if (h != 0 && (n > cap_ || h > cap_ - n)) return false;
    if (held_.compare_exchange_weak(h, h + n)) break;
  }
  uint64_t p = peak_.load();
  while (h + n > p && !peak_.compare_exchange_weak(p, h + n)) {
  }
  return true;
}

void ReplyBudget::Tenant::sub(uint64_t n) {
  held_.fetch_sub(n);
  if (!has_waiters_.load()) return;
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lk(mu_);
    wake.reserve(waiters_.size());
    for (const auto& [id, fn] : waiters_) wake.push_back(fn);
  }
  for (auto& fn : wake) fn();
}

uint64_t ReplyBudget::Tenant::add_waiter(std::function<void()> wake) {
  std::lock_guard lk(mu_);
  const uint64_t id = next_waiter_++;
  waiters_.emplace(id, std::move(wake));
  has_waiters_ = true;
  return id;
}

void ReplyBudget::Tenant::remove_waiter(uint64_t id) {
  std::lock_guard lk(mu_);
  waiters_.erase(id);
  has_waiters_ = !waiters_.empty();
}

std::shared_ptr<ReplyBudget::Tenant> ReplyBudget::tenant(std::string_view name) {
  std::lock_guard lk(mu_);
  auto it = tenants_.find(name);
  if (it != tenants_.end()) {
    if (auto t = it->second.lock()) return t;
  }
  // Drop states no one holds any more, so the map stays as large as the
  // set of tenants with live connections.
  std::erase_if(tenants_, [](const auto& e) { return e.second.expired(); });
  std::shared_ptr<Tenant> t(new Tenant(per_tenant_));
  tenants_.insert_or_assign(std::string(name), t);
  return t;
}

uint64_t ReplyBudget::held(std::string_view name) const {
  std::lock_guard lk(mu_);
  auto it = tenants_.find(name);
  if (it == tenants_.end()) return 0;
  auto t = it->second.lock();
  return t ? t->held() : 0;
}

uint64_t ReplyBudget::peak(std::string_view name) const {
  std::lock_guard lk(mu_);
  auto it = tenants_.find(name);
  if (it == tenants_.end()) return 0;
  auto t = it->second.lock();
  return t ? t->peak_.load() : 0;
}

}  // namespace gpulease::server
