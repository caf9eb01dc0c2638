// Failed token verifications, rate-limited per client address.
//
// A peer without a valid token can still make the node run an Ed25519 check
// per frame (a token section whose signature does not verify). The network
// layer asks this limiter before it verifies a token and tells it of each
// failure: every address has a token bucket of `burst` failures refilled at
// `per_second`; a failure spends one; while an address's bucket is empty, its
// frames whose token signature is not already verified (in the signature
// cache) are refused without the check (BUSY, connection closed).
//
// What counts as a failure: UNAUTHENTICATED (TOKENS.md steps 1-3: malformed,
// unknown key, bad signature). Later refusals (expired, audience, permission,
// revoked) come from a token whose signature verified, which an attacker
// cannot forge, and cost no new check once it is cached. Successful
// verifications never spend or need a token.
//
// Addresses: an IPv4 address (or an IPv4-mapped IPv6 one) is its own key; an
// IPv6 address is keyed by its /64 prefix (one host usually holds the whole
// /64). Only addresses whose bucket is not full are tracked, at most
// `max_addresses` of them; past that the one that failed least recently is
// forgotten, so the table cannot be grown without bound by a peer with many
// addresses. While none is tracked, allows() takes no lock.
//
// THREAD SAFETY: all methods may be called from any thread (one mutex).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gpulease::server {

class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kDefaultMaxAddresses = 4096;

  // per_second == 0 disables the limiter (allows() is always true).
  AuthLimiter(uint32_t per_second, uint32_t burst, size_t max_addresses = kDefaultMaxAddresses);

  // The limiter's key of a peer address as Asio prints it ("1.2.3.4",
  // "2001:db8::1", "::ffff:1.2.3.4"); an unparsable one is its own key.
  [[nodiscard]] static std::string key_of(std::string_view address);

  // False while `key` has no failure left to spend.
  [[nodiscard]] bool allows(const std::string& key, Clock::time_point now = Clock::now());
  // A verification from `key` failed: spends one (the bucket may go into
  // debt down to -burst, so failures that were already being checked when
  // it emptied are paid for).
  void failed(const std::string& key, Clock::time_point now = Clock::now());

  [[nodiscard]] size_t tracked() const;
  [[nodiscard]] bool enabled() const noexcept { return per_second_ != 0; }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point at{};
    std::list<std::string>::iterator lru;  // position in lru_ (front: most recent failure)
  };
  // Refills `b` up to `now`. REQUIRES: mu_ held.
  void refill(Bucket& b, Clock::time_point now) const;

  const double per_second_;
  const double burst_;
  const size_t max_addresses_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // GUARDED_BY(mu_)
  std::list<std::string> lru_;                       // GUARDED_BY(mu_)
  std::atomic<size_t> tracked_{0};                   // buckets_.size(), written under mu_
};

}  // namespace gpulease::server
