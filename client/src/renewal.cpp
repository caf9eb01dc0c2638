#include "gpulease/client/renewal.hpp"

#include <algorithm>
#include <vector>

namespace gpulease::client {

namespace {
uint64_t unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
constexpr auto kMaxSleep = std::chrono::milliseconds(1000);
}  // namespace

RenewalManager::RenewalManager(FailureFn on_failure) : on_failure_(std::move(on_failure)) {
  thread_ = std::thread([this] { loop(); });
}

RenewalManager::~RenewalManager() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RenewalManager::add(const Lease& lease, RenewalPolicy policy) {
  {
    std::lock_guard lock(mu_);
    entries_[lease.lease_id()] = Entry{lease.state(), policy, 0, {}};
  }
  cv_.notify_all();
}

void RenewalManager::remove(uint64_t lease_id) {
  std::lock_guard lock(mu_);
  entries_.erase(lease_id);
}

size_t RenewalManager::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

uint64_t RenewalManager::renewals() const {
  std::lock_guard lock(mu_);
  return renewals_;
}

uint64_t RenewalManager::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

void RenewalManager::loop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    const uint64_t now_ms = unix_ms();
    auto wake = now + kMaxSleep;
    std::vector<std::pair<uint64_t, std::shared_ptr<detail::LeaseState>>> due;
    for (auto it = entries_.begin(); it != entries_.end();) {
      auto s = it->second.lease.lock();
      if (!s || s->ended.load()) {
        it = entries_.erase(it);
        continue;
      }
      const Entry& e = it->second;
      const uint64_t ttl_ms = uint64_t{e.policy.ttl_s != 0 ? e.policy.ttl_s : s->ttl_s} * 1000;
      const auto threshold =
          static_cast<uint64_t>(static_cast<double>(ttl_ms) * e.policy.renew_when_remaining);
      const uint64_t exp = s->expires_at_ms.load();
      const uint64_t remaining = exp > now_ms ? exp - now_ms : 0;
      if (remaining <= threshold || exp == 0) {
        if (now >= e.retry_after) {
          due.emplace_back(it->first, std::move(s));
        } else {
          wake = std::min(wake, e.retry_after);
        }
      } else {
        wake = std::min(wake, now + std::chrono::milliseconds(remaining - threshold));
      }
      ++it;
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& [id, s] : due) {
        uint32_t ttl;
        std::chrono::milliseconds timeout;
        {
          std::lock_guard g(mu_);
          auto it = entries_.find(id);
          if (it == entries_.end()) continue;
          ttl = it->second.policy.ttl_s;
          timeout = it->second.policy.request_timeout;
        }
        auto r = detail::renew_lease(*s, ttl, timeout);
        bool give_up = false;
        {
          std::lock_guard g(mu_);
          auto it = entries_.find(id);
          if (r) {
            renewals_++;
            if (it != entries_.end()) it->second.failures = 0;
          } else {
            failures_++;
            if (it != entries_.end()) {
              Entry& e = it->second;
              e.failures++;
              e.retry_after = Clock::now() + e.policy.retry_interval;
              give_up = is_lease_lost(r.error()) || e.failures >= e.policy.max_failures;
              if (give_up) entries_.erase(it);
            }
          }
        }
        if (give_up && on_failure_) on_failure_(id, r.error());
      }
      lock.lock();
      continue;  // recompute deadlines with the new expiries
    }
    cv_.wait_until(lock, wake);
  }
}

}  // namespace gpulease::client
