// fleet_scale_bench: how far the fleet directory scales (issue 16,
// docs/FLEET.md "Scaling"). Simulates many registered nodes against a real
// etcd (started here on loopback, like the tests, or --registry URL):
//
//   A. baseline: plain puts of a node-record-sized value (no lease);
//   B. registration: lease grant + record put per simulated node (what a
//      node's registrar does at start), ratio against A;
//   C. keep-alive capacity: keep-alives per second over all those leases,
//      against what N nodes need at the default TTL (N / (10 s / 3));
//   D. a client's full read of the directory (range over the prefix) and
//      parsing every record + a best-fit pick on free VRAM;
//   E. watch fan-out: W client watches on the prefix, U record updates one at
//      a time; latency from before the put to each watcher's callback.
//
// Usage: fleet_scale_bench [--nodes N] [--threads T] [--watchers W]
//                          [--updates U] [--members M] [--registry etcd://...]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "etcd_cluster.hpp"
#include "fleet/registrar.hpp"
#include "gpulease/etcd/client.hpp"

using namespace gpulease;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[i];
}

std::string record(int i, uint64_t free_vram) {
  server::RegistrarConfig cfg;
  cfg.fleet = "bench";
  cfg.node_id = "sim-node-" + std::to_string(i);
  cfg.address = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":7070";
  cfg.backend = "cuda";
  std::vector<server::DeviceRecord> devs;
  for (uint16_t d = 0; d < 8; ++d) {
    devs.push_back({d, "NVIDIA H200", 9, 0, 141ull << 30, free_vram});
  }
  return server::node_record_json(cfg, devs, 1700000000000ull);
}

// Runs `count` jobs over `threads` threads; returns seconds.
template <typename F>
double parallel(int count, int threads, F&& job) {
  std::atomic<int> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = next++; i < count; i = next++) job(i);
    });
  }
  for (auto& t : ts) t.join();
  return ms_since(t0) / 1000.0;
}

int arg_int(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const int nodes = arg_int(argc, argv, "--nodes", 1000);
  const int threads = arg_int(argc, argv, "--threads", 16);
  const int watchers = arg_int(argc, argv, "--watchers", 50);
  const int updates = arg_int(argc, argv, "--updates", 200);
  const int members = arg_int(argc, argv, "--members", 1);
  std::string registry;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--registry") == 0) registry = argv[i + 1];
  }
  if (nodes < 1 || threads < 1 || watchers < 0 || updates < 1 || members < 1 || members > 9) {
    std::fprintf(stderr, "fleet_scale_bench: bad arguments\n");
    return 2;
  }

  test::EtcdCluster cluster;
  if (registry.empty()) {
    if (!test::EtcdCluster::available()) {
      std::fprintf(stderr, "fleet_scale_bench: %s\n", test::kNoEtcdReason);
      return 3;
    }
    if (!cluster.start(static_cast<size_t>(members))) {
      std::fprintf(stderr, "fleet_scale_bench: %s\n", cluster.last_error().c_str());
      return 1;
    }
    registry = cluster.registry_url();
  }
  auto eps = etcd::parse_registry_url(registry);
  if (!eps) {
    std::fprintf(stderr, "fleet_scale_bench: %s\n", eps.error().message.c_str());
    return 2;
  }
  etcd::ClientOptions co;
  co.endpoints = *eps;
  co.max_idle_handles = static_cast<size_t>(threads) + 2;
  auto client = etcd::Client::create(co);
  if (!client) return 1;
  etcd::Client& c = **client;
  const std::string prefix = server::fleet_nodes_prefix("bench");
  (void)c.del_prefix("/bench-baseline/");
  (void)c.del_prefix(prefix);
  std::atomic<int> errors{0};
  const size_t rec_bytes = record(0, 100ull << 30).size();

  std::printf(
      "fleet_scale_bench: %d simulated nodes (8 devices each, %zu-byte records), "
      "%d client threads, etcd %s (%d member%s, loopback)\n",
      nodes, rec_bytes, threads, registry.c_str(), members, members > 1 ? "s" : "");

  // A. baseline puts.
  const double a_s = parallel(nodes, threads, [&](int i) {
    if (!c.put("/bench-baseline/" + std::to_string(i), record(i, 100ull << 30))) ++errors;
  });
  const double put_rate = nodes / a_s;

  // B. registration: grant + put with the lease.
  std::vector<int64_t> leases(static_cast<size_t>(nodes));
  const double b_s = parallel(nodes, threads, [&](int i) {
    auto g = c.lease_grant(30);
    if (!g) {
      ++errors;
      return;
    }
    leases[static_cast<size_t>(i)] = g->id;
    if (!c.put(prefix + "sim-node-" + std::to_string(i), record(i, 100ull << 30), g->id)) ++errors;
  });
  const double reg_rate = nodes / b_s;

  // C. keep-alive capacity (each lease once per round, 3 rounds).
  const int ka_total = nodes * 3;
  const double c_s = parallel(ka_total, threads, [&](int i) {
    if (!c.lease_keepalive(leases[static_cast<size_t>(i % nodes)])) ++errors;
  });
  const double ka_rate = ka_total / c_s;
  const double ka_needed = nodes / (10.0 / 3.0);

  // D. full directory read + parse + best fit.
  std::vector<double> range_ms, place_ms;
  size_t range_bytes = 0;
  for (int r = 0; r < 30; ++r) {
    const auto t0 = Clock::now();
    auto rr = c.range_prefix(prefix);
    range_ms.push_back(ms_since(t0));
    if (!rr || rr->kvs.size() != static_cast<size_t>(nodes)) {
      ++errors;
      continue;
    }
    range_bytes = 0;
    const auto t1 = Clock::now();
    uint64_t best = UINT64_MAX;
    std::string best_node;
    const uint64_t want = 40ull << 30;
    for (const auto& kv : rr->kvs) {
      range_bytes += kv.key.size() + kv.value.size();
      auto j = nlohmann::json::parse(kv.value, nullptr, false);
      if (j.is_discarded()) continue;
      for (const auto& d : j["devices"]) {
        const uint64_t f = d["free_vram"].get<uint64_t>();
        if (f >= want && f - want < best) {
          best = f - want;
          best_node = j["node_id"].get<std::string>();
        }
      }
    }
    place_ms.push_back(ms_since(t1));
    if (best_node.empty()) ++errors;
  }

  // E. watch fan-out.
  std::mutex mu;
  std::condition_variable cv;
  std::map<int64_t, Clock::time_point> sent;  // revision -> before the put
  std::vector<double> lat_ms;
  std::map<int64_t, int> got;
  std::vector<std::unique_ptr<etcd::Watch>> ws;
  for (int w = 0; w < watchers; ++w) {
    etcd::WatchOptions wo;
    wo.key = prefix;
    wo.range_end = etcd::prefix_end(prefix);
    auto watch = c.watch(wo, [&](const etcd::WatchResponse& r) {
      const auto now = Clock::now();
      std::lock_guard lk(mu);
      for (const auto& e : r.events) {
        auto it = sent.find(e.kv.mod_revision);
        if (it == sent.end()) continue;
        lat_ms.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
        ++got[e.kv.mod_revision];
      }
      cv.notify_all();
    });
    if (!watch) {
      ++errors;
      continue;
    }
    ws.push_back(std::move(watch).value());
  }
  for (int i = 0;
       i < 200 && std::any_of(ws.begin(), ws.end(), [](auto& w) { return !w->connected(); }); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<double> fan_ms;  // before the put -> the last watcher has it
  for (int u = 0; u < updates; ++u) {
    const int i = u % nodes;
    const auto t0 = Clock::now();
    // The revision is known only after the put: hold the lock so a fast
    // callback waits for the entry.
    std::unique_lock lk(mu);
    auto p = c.put(prefix + "sim-node-" + std::to_string(i), record(i, (100ull << 30) - u),
                   leases[static_cast<size_t>(i)]);
    if (!p) {
      ++errors;
      continue;
    }
    sent[p->revision] = t0;
    const bool all = cv.wait_for(lk, std::chrono::seconds(10),
                                 [&] { return got[p->revision] >= static_cast<int>(ws.size()); });
    if (!all) ++errors;
    fan_ms.push_back(ms_since(t0));
  }
  // Callbacks that came while the lock was held are counted: the events
  // arrive after `sent` is filled, since the lock covers the put.
  for (auto& w : ws) w->stop();

  // Clean up the leases (and with them the records).
  parallel(nodes, threads, [&](int i) { (void)c.lease_revoke(leases[static_cast<size_t>(i)]); });
  (void)c.del_prefix("/bench-baseline/");

  std::printf("\n%-44s %12s\n", "measure", "value");
  std::printf("%-44s %10.0f/s\n", "A. plain put (baseline)", put_rate);
  std::printf("%-44s %10.0f/s   (%.2fx the put rate)\n", "B. registration (grant + put)", reg_rate,
              reg_rate / put_rate);
  std::printf("%-44s %10.0f/s   (%.1fx what %d nodes need at TTL 10 s: %.0f/s)\n",
              "C. keep-alive capacity", ka_rate, ka_rate / ka_needed, nodes, ka_needed);
  std::printf("%-44s %7.2f ms p50  %7.2f ms p99  (%zu KiB)\n", "D. range of the whole directory",
              pct(range_ms, 50), pct(range_ms, 99), range_bytes / 1024);
  std::printf("%-44s %7.2f ms p50  %7.2f ms p99\n", "D. parse all records + best fit",
              pct(place_ms, 50), pct(place_ms, 99));
  std::printf("%-44s %7.2f ms p50  %7.2f ms p99  (%zu deliveries)\n",
              ("E. watch delivery, " + std::to_string(ws.size()) + " watchers").c_str(),
              pct(lat_ms, 50), pct(lat_ms, 99), lat_ms.size());
  std::printf("%-44s %7.2f ms p50  %7.2f ms p99\n", "E. put -> last watcher has it",
              pct(fan_ms, 50), pct(fan_ms, 99));
  std::printf("%-44s %12d\n", "errors", errors.load());
  return errors.load() == 0 ? 0 : 1;
}
