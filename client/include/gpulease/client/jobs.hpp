// JobCoordinator (recipe 34): run N inputs over M leases, on one or several
// nodes, in parallel; retry a chunk on a fresh lease when its lease is lost;
// collect the outputs in input order.
//
//   JobCoordinator::Options o;
//   o.nodes = {conn};                 // leases are spread over these, round robin
//   o.workers = 4;                    // M: leases held at once
//   o.lease.min_vram = 16 << 20;
//   JobCoordinator jobs(o);
//   auto outputs = jobs.run(inputs, [&](ChunkContext& c) -> Result<wire::Bytes> {
//     auto mod = c.module("pipeline", ptx);          // loaded once per lease
//     ... c.session() ... c.input() ...
//   });
//
// Each worker thread holds one lease (and one Session on it) and takes chunks
// from a shared queue. When a chunk fails:
//  - lease lost (the node said LEASE_EXPIRED, LEASE_FAULTED or
//    LEASE_NOT_FOUND), connection lost or timed out (Error::is_connection_lost,
//    is_timeout: the attempt's outcome is unknown): the worker drops its
//    lease, waits the policy's backoff, acquires a fresh one and the chunk is
//    run again;
//  - the node said BUSY or CAPACITY_EXCEEDED: retried after the backoff (same
//    lease);
//  - anything else: the job fails with that error (it would fail again).
// A worker that cannot get a lease while another worker holds one stops
// (the node may have room for fewer leases than workers); acquiring fails the
// job only when no worker holds a lease. An exception thrown by the work
// function or a callback fails the job with INTERNAL. After a failed attempt
// the worker starts a fresh Session, so nothing the attempt left pending
// reaches the next chunk.
// A chunk is attempted at most 1 + max_retries times. Leases are renewed by
// an internal RenewalManager while they are held, and released when their
// worker finishes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gpulease/client/connection.hpp"
#include "gpulease/client/lease.hpp"
#include "gpulease/client/session.hpp"

namespace gpulease::client {

struct RetryPolicy {
  unsigned max_retries = 3;
  std::chrono::milliseconds initial_backoff{50};
  double multiplier = 2.0;
  std::chrono::milliseconds max_backoff{2000};

  // Delay before retry number `retry` (1-based): initial * multiplier^(retry-1),
  // capped at max_backoff.
  [[nodiscard]] std::chrono::milliseconds backoff(unsigned retry) const noexcept;
  // Whether a chunk that failed with `e` may be retried, and whether on a
  // fresh lease.
  [[nodiscard]] static bool retryable(const Error& e) noexcept;
  [[nodiscard]] static bool needs_fresh_lease(const Error& e) noexcept;
};

// What a work function sees for one attempt at one chunk.
class ChunkContext {
 public:
  [[nodiscard]] size_t index() const noexcept { return index_; }
  [[nodiscard]] unsigned attempt() const noexcept { return attempt_; }  // 0 = first
  [[nodiscard]] wire::ByteSpan input() const noexcept { return input_; }
  [[nodiscard]] Session& session() noexcept { return *session_; }
  [[nodiscard]] const Lease& lease() const noexcept { return *lease_; }
  // The module `name` on this lease, loaded from `image` on first use.
  [[nodiscard]] Result<Module> module(const std::string& name, wire::ByteSpan image);

 private:
  friend class JobCoordinator;
  size_t index_ = 0;
  unsigned attempt_ = 0;
  wire::ByteSpan input_;
  Session* session_ = nullptr;
  const Lease* lease_ = nullptr;
  std::map<std::string, Module>* modules_ = nullptr;
};

class JobCoordinator {
 public:
  using WorkFn = std::function<Result<wire::Bytes>(ChunkContext&)>;

  struct LeaseSpec {
    uint64_t min_vram = 64u << 20;
    uint32_t ttl_s = 60;
    Exclusivity exclusivity = Exclusivity::kShared;
  };
  struct Options {
    std::vector<Connection> nodes;  // at least one
    unsigned workers = 4;           // leases held at once (M)
    LeaseSpec lease;
    RetryPolicy retry;
    bool renew_leases = true;
    // Called on the worker's thread after a chunk succeeded (progress, tests).
    std::function<void(size_t index, uint64_t lease_id)> on_chunk_done;
    // Called on the worker's thread when a chunk will be retried.
    std::function<void(size_t index, const Error& error)> on_retry;
  };
  struct Stats {
    uint64_t chunks_done = 0;
    uint64_t retries = 0;  // chunk attempts after the first
    uint64_t leases_acquired = 0;
    uint64_t leases_lost = 0;  // leases dropped after a lease/connection failure
  };

  explicit JobCoordinator(Options options);

  // Runs work over every input; outputs[i] is the output of inputs[i].
  // Fails with the first chunk error that is not retryable, or with the last
  // error of a chunk that ran out of retries (its message names the chunk).
  [[nodiscard]] Result<std::vector<wire::Bytes>> run(const std::vector<wire::Bytes>& inputs,
                                                     const WorkFn& work);

  [[nodiscard]] Stats stats() const;

 private:
  Options opts_;
  mutable std::mutex mu_;
  Stats stats_;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::client
