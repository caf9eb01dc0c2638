#include "gpulease/client/jobs.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

#include "gpulease/client/renewal.hpp"

namespace gpulease::client {

using wire::Bytes;
using wire::Status;

std::chrono::milliseconds RetryPolicy::backoff(unsigned retry) const noexcept {
  if (retry == 0) return std::chrono::milliseconds(0);
  double ms = static_cast<double>(initial_backoff.count()) *
              std::pow(multiplier, static_cast<double>(retry - 1));
  const double cap = static_cast<double>(max_backoff.count());
  if (!(ms < cap)) ms = cap;  // also catches overflow to inf
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

bool RetryPolicy::needs_fresh_lease(const Error& e) noexcept {
  return e.is_lease_lost() || e.is_connection_lost() || e.is_timeout();
}

bool RetryPolicy::retryable(const Error& e) noexcept {
  return needs_fresh_lease(e) || e.is_node_status(Status::kBusy) ||
         e.is_node_status(Status::kCapacityExceeded);
}

Result<Module> ChunkContext::module(const std::string& name, wire::ByteSpan image) {
  auto it = modules_->find(name);
  if (it != modules_->end()) return it->second;
  auto m = session_->module_load(image);
  if (!m) return m;
  modules_->emplace(name, *m);
  return m;
}

JobCoordinator::JobCoordinator(Options options) : opts_(std::move(options)) {}

JobCoordinator::Stats JobCoordinator::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Result<std::vector<Bytes>> JobCoordinator::run(const std::vector<Bytes>& inputs,
                                               const WorkFn& work) {
  if (opts_.nodes.empty() && !opts_.fleet)
    return make_error(Status::kInvalidArgument, "JobCoordinator: no nodes and no fleet");
  const size_t n = inputs.size();
  std::vector<Bytes> outputs(n);
  if (n == 0) return outputs;

  std::mutex qmu;
  std::deque<size_t> queue;  // GUARDED_BY(qmu)
  for (size_t i = 0; i < n; ++i) queue.push_back(i);
  std::vector<unsigned> attempts(n, 0);  // GUARDED_BY(qmu)
  std::optional<Error> fatal;            // GUARDED_BY(qmu)

  std::optional<RenewalManager> renewals;
  if (opts_.renew_leases) renewals.emplace();

  std::condition_variable qcv;
  auto set_fatal = [&](Error e) {
    std::lock_guard lock(qmu);
    if (!fatal) fatal = std::move(e);
    qcv.notify_all();
  };
  size_t holding = 0;    // GUARDED_BY(qmu): workers holding a lease now
  size_t acquiring = 0;  // GUARDED_BY(qmu): workers waiting for LEASE_ACQUIRE
  size_t in_hand = 0;    // GUARDED_BY(qmu): chunks taken off the queue, not yet done
  // Fleet: this job's leases per node id, and nodes it lost a connection to.
  std::map<std::string, unsigned> load;  // GUARDED_BY(qmu)
  std::set<std::string> lost_nodes;      // GUARDED_BY(qmu)

  // Fleet: one placement at a time, each seeing the leases placed before it
  // (workers start together; without this they would all see an empty load).
  std::mutex place_mu;
  // A fresh lease for a worker: on its node, or placed on the fleet.
  auto acquire = [&](size_t node) -> Result<Lease> {
    if (!opts_.fleet) {
      return LeaseBuilder(opts_.nodes[node])
          .min_vram(opts_.lease.min_vram)
          .lease_secs(opts_.lease.ttl_s)
          .exclusivity(opts_.lease.exclusivity)
          .acquire();
    }
    std::lock_guard place(place_mu);
    std::map<std::string, unsigned> spread;
    std::set<std::string> avoid;
    {
      std::lock_guard lock(qmu);
      spread = load;
      avoid = lost_nodes;
    }
    LeaseBuilder b(*opts_.fleet);
    b.min_vram(opts_.lease.min_vram)
        .lease_secs(opts_.lease.ttl_s)
        .exclusivity(opts_.lease.exclusivity)
        .backend(opts_.lease.backend);
    if (opts_.lease.min_compute_capability)
      b.min_compute_capability(opts_.lease.min_compute_capability->first,
                               opts_.lease.min_compute_capability->second);
    // A node this job lost counts as fully loaded: tried last, not never (it
    // may have come back, and the directory still lists it).
    for (const auto& id : avoid) spread[id] = UINT32_MAX / 2;
    b.spread(std::move(spread));
    auto l = b.acquire();
    if (l) {
      std::lock_guard lock(qmu);
      load[l->connection().node_info().node_id]++;  // before the next placement
    }
    return l;
  };
  auto node_of = [](const Lease& l) { return l.connection().node_info().node_id; };

  auto worker = [&](size_t w) {
    size_t node = opts_.nodes.empty() ? 0 : w % opts_.nodes.size();
    std::optional<Lease> lease;
    std::string lease_node;  // fleet: the node id the lease is on
    std::optional<Session> session;
    std::map<std::string, Module> modules;
    unsigned acquire_failures = 0;
    auto drop_lease = [&] {
      session.reset();
      if (lease) {
        lease.reset();  // releases; a lost lease just answers with an error
        std::lock_guard lock(qmu);
        holding--;
        if (opts_.fleet) {
          if (auto it = load.find(lease_node); it != load.end() && --it->second == 0)
            load.erase(it);
        }
      }
      modules.clear();
    };
    std::optional<size_t> taken;  // a chunk this worker took off the queue
    auto requeue = [&] {
      if (!taken) return;
      std::lock_guard lock(qmu);
      queue.push_front(*taken);
      taken.reset();
      in_hand--;
      qcv.notify_all();
    };
    try {
      for (;;) {
        size_t idx;
        {
          // An empty queue is not the end while another worker holds a chunk
          // it may put back.
          std::unique_lock lock(qmu);
          qcv.wait(lock, [&] { return fatal || !queue.empty() || in_hand == 0; });
          if (fatal || queue.empty()) break;
          idx = queue.front();
          queue.pop_front();
          taken = idx;
          in_hand++;
        }
        if (!lease) {
          {
            std::lock_guard lock(qmu);
            acquiring++;
          }
          auto l = acquire(node);
          if (!l) {
            Error e = std::move(l).error();
            requeue();
            bool others_hold;
            {
              std::lock_guard lock(qmu);
              acquiring--;
              // A worker whose acquire is still in flight counts: its lease
              // may be the one that filled the node.
              others_hold = holding > 0 || acquiring > 0;
            }
            // Another worker holds a lease (or is getting one) and will work
            // the queue: this one bows out (the node may have room for fewer
            // leases than workers). The last worker never bows out.
            if (others_hold) break;
            if (!RetryPolicy::retryable(e) || ++acquire_failures > opts_.retry.max_retries) {
              set_fatal(with_context(std::move(e), "JobCoordinator: acquiring a lease for chunk " +
                                                       std::to_string(idx)));
              break;
            }
            if (is_connection_lost(e) && !opts_.fleet) node = (node + 1) % opts_.nodes.size();
            std::this_thread::sleep_for(opts_.retry.backoff(acquire_failures));
            continue;
          }
          acquire_failures = 0;
          lease.emplace(std::move(l).value());
          {
            std::lock_guard lock(qmu);
            acquiring--;
            holding++;
            if (opts_.fleet) lease_node = node_of(*lease);  // counted in `load` by acquire
          }
          session.emplace(*lease);
          if (renewals) renewals->add(*lease);
          std::lock_guard lock(mu_);
          stats_.leases_acquired++;
        }
        ChunkContext ctx;
        ctx.index_ = idx;
        {
          std::lock_guard lock(qmu);
          ctx.attempt_ = attempts[idx];
        }
        ctx.input_ = inputs[idx];
        ctx.session_ = &*session;
        ctx.lease_ = &*lease;
        ctx.modules_ = &modules;
        auto r = work(ctx);
        if (r) {
          outputs[idx] = std::move(r).value();
          {
            std::lock_guard lock(qmu);
            taken.reset();
            in_hand--;
            qcv.notify_all();
          }
          {
            std::lock_guard lock(mu_);
            stats_.chunks_done++;
            if (opts_.fleet) stats_.chunks_by_node[lease_node]++;
          }
          if (opts_.on_chunk_done) opts_.on_chunk_done(idx, lease->lease_id());
          continue;
        }
        Error e = std::move(r).error();
        // What the failed attempt left pending (pipelined ops, a deferred
        // error) must not surface in the next chunk: start a fresh Session.
        session.reset();
        session.emplace(*lease);
        if (!RetryPolicy::retryable(e)) {
          set_fatal(with_context(std::move(e), "chunk " + std::to_string(idx)));
          break;
        }
        unsigned attempt;
        {
          std::lock_guard lock(qmu);
          attempt = ++attempts[idx];
        }
        if (attempt > opts_.retry.max_retries) {
          set_fatal(with_context(std::move(e), "chunk " + std::to_string(idx) + " failed " +
                                                   std::to_string(attempt) + " times; last error"));
          break;
        }
        {
          std::lock_guard lock(mu_);
          stats_.retries++;
          if (RetryPolicy::needs_fresh_lease(e)) stats_.leases_lost++;
        }
        if (opts_.on_retry) opts_.on_retry(idx, e);
        if (RetryPolicy::needs_fresh_lease(e)) {
          if (is_connection_lost(e)) {
            if (opts_.fleet) {
              std::lock_guard lock(qmu);
              lost_nodes.insert(lease_node);
            } else {
              node = (node + 1) % opts_.nodes.size();
            }
          }
          drop_lease();
        }
        std::this_thread::sleep_for(opts_.retry.backoff(attempt));
        requeue();
      }
    } catch (const std::exception& ex) {
      // An exception must not leave a std::thread (terminate): it fails the job.
      set_fatal(make_error(
          Status::kInternal,
          "JobCoordinator: " + (taken ? "chunk " + std::to_string(*taken) + ": " : std::string()) +
              "exception: " + ex.what()));
    } catch (...) {
      set_fatal(make_error(Status::kInternal, "JobCoordinator: unknown exception"));
    }
    requeue();
    try {
      drop_lease();
    } catch (...) {  // NOLINT(bugprone-empty-catch): bad_alloc while releasing; the lease expires
    }
  };

  const size_t m = std::max<size_t>(1, std::min<size_t>(opts_.workers, n));
  std::vector<std::thread> threads;
  threads.reserve(m);
  for (size_t w = 0; w < m; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();

  if (fatal) return std::move(*fatal);
  {
    std::lock_guard lock(qmu);
    if (!queue.empty())
      return make_error(Status::kInternal, "JobCoordinator: chunks left unprocessed");
  }
  return outputs;
}

}  // namespace gpulease::client
