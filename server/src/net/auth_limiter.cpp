#include "auth_limiter.hpp"

#include <asio/ip/address.hpp>

#include <algorithm>

namespace gpulease::server {

AuthLimiter::AuthLimiter(uint32_t per_second, uint32_t burst, size_t max_addresses)
    : per_second_(per_second),
      burst_(std::max<uint32_t>(burst, 1)),
      max_addresses_(std::max<size_t>(max_addresses, 1)) {}

std::string AuthLimiter::key_of(std::string_view address) {
  asio::error_code ec;
  auto a = asio::ip::make_address(std::string(address), ec);
  if (ec) return std::string(address);
  if (a.is_v4()) return a.to_v4().to_string();
  auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string();
  // One host usually holds a whole /64: key by the prefix.
  auto bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return asio::ip::address_v6(bytes).to_string() + "/64";
}

void AuthLimiter::refill(Bucket& b, Clock::time_point now) const {
  if (now <= b.at) return;
  const double dt = std::chrono::duration<double>(now - b.at).count();
  b.tokens = std::min(burst_, b.tokens + dt * per_second_);
  b.at = now;
}

bool AuthLimiter::allows(const std::string& key, Clock::time_point now) {
  // The per-frame path of every tokened frame: no lock while no address has
  // failures on record.
  if (!enabled() || tracked_.load(std::memory_order_acquire) == 0) return true;
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) return true;  // no failure remembered: a full bucket
  refill(it->second, now);
  if (it->second.tokens >= burst_) {
    // Full again: the same as not being tracked.
    lru_.erase(it->second.lru);
    buckets_.erase(it);
    tracked_.store(buckets_.size(), std::memory_order_release);
    return true;
  }
  return it->second.tokens >= 1.0;
}

void AuthLimiter::failed(const std::string& key, Clock::time_point now) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_addresses_) {
      buckets_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = buckets_.emplace(key, Bucket{burst_, now, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    refill(it->second, now);
  }
  it->second.tokens = std::max(-burst_, it->second.tokens - 1.0);
  tracked_.store(buckets_.size(), std::memory_order_release);
}

size_t AuthLimiter::tracked() const {
  return tracked_.load(std::memory_order_acquire);
}

}  // namespace gpulease::server
