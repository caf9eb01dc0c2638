// RenewalManager: a background thread that renews registered leases before
// they expire (recipe 34's RenewalManager).
//
//   RenewalManager renewals;                 // starts its thread
//   renewals.add(lease);                      // renews at half the TTL left
//   ...                                       // ~RenewalManager stops it
//
// A lease is renewed when its remaining time falls below
// policy.renew_when_remaining of its TTL (default one half), for the same
// TTL. Leases are held weakly: a lease that is released or destroyed drops
// out by itself. A renewal that fails with a lease-lost status (expired,
// released, faulted) unregisters it; other failures are retried at
// policy.retry_interval up to policy.max_failures times. on_failure is
// called (on the manager's thread) for each given-up lease.
// THREAD SAFETY: every member may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "gpulease/client/lease.hpp"

namespace gpulease::client {

struct RenewalPolicy {
  double renew_when_remaining = 0.5;  // fraction of the TTL
  uint32_t ttl_s = 0;                 // 0 = the lease's own TTL
  std::chrono::milliseconds retry_interval{500};
  unsigned max_failures = 5;
  // Longest one LEASE_RENEW may take (0 = the connection's request_timeout):
  // the manager renews every lease from one thread, so a node that stops
  // answering delays the others' renewals by at most this much.
  std::chrono::milliseconds request_timeout{5000};
};

class RenewalManager {
 public:
  using FailureFn = std::function<void(uint64_t lease_id, const Error& error)>;

  explicit RenewalManager(FailureFn on_failure = {});
  ~RenewalManager();
  RenewalManager(const RenewalManager&) = delete;
  RenewalManager& operator=(const RenewalManager&) = delete;

  // REQUIRES: lease.valid().
  void add(const Lease& lease, RenewalPolicy policy = {});
  void remove(uint64_t lease_id);
  [[nodiscard]] size_t size() const;

  [[nodiscard]] uint64_t renewals() const;  // successful renewals
  [[nodiscard]] uint64_t failures() const;  // failed attempts

 private:
  struct Entry {
    std::weak_ptr<detail::LeaseState> lease;
    RenewalPolicy policy;
    unsigned failures = 0;
    std::chrono::steady_clock::time_point retry_after{};
  };
  void loop();

  FailureFn on_failure_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Entry> entries_;  // GUARDED_BY(mu_)
  bool stop_ = false;                  // GUARDED_BY(mu_)
  uint64_t renewals_ = 0;              // GUARDED_BY(mu_)
  uint64_t failures_ = 0;              // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace gpulease::client
