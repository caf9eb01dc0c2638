// What placing a lease on a fleet costs the client, against acquiring on a
// named node, measured in the same run and the same iteration (a ratio, so
// the noisy machine cancels out), on loopback, against an in-process node
// (sim backend):
//  - BM_FleetAcquireVsDirect/N: LeaseBuilder(fleet).acquire() + release with
//    a directory of N nodes (the real node plus N-1 records that do not fit,
//    8 devices each, so ranking scans all of them) vs
//    LeaseBuilder(conn).acquire() + release on the same node.
//    Counter fleet_vs_direct = fleet time / direct time.
//  - BM_RankCandidates/N: rank_candidates over N nodes of 8 devices, every
//    device fitting (the sort's worst case); counter us_per_rank, and
//    rank_vs_direct = one ranking / one direct acquire+release measured in
//    the same iteration.
// docs/BENCHMARKS.md ("Fleet placement") has the figures.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <optional>

#include "backend_factory.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/client/client.hpp"
#include "net.hpp"
#include "node.hpp"

namespace {

using namespace gpulease;
namespace gl = gpulease::client;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kMiB = 1ull << 20;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

struct Fixture {
  Fixture() : authority(capability::SecretKey::generate()) {
    server::NodeConfig cfg;
    cfg.node_id = "bench-node";
    cfg.listen_host = "127.0.0.1";
    cfg.listen_port = 0;
    cfg.backend = "sim";
    cfg.sim_device_bytes = 256u << 20;
    cfg.log_level = server::LogLevel::kWarn;
    server::set_log_level(cfg.log_level);
    node = std::make_unique<server::Node>(cfg, server::make_backend(cfg).value(),
                                          capability::SecretKey::generate());
    node->key_ring().add(authority.public_key());
    (void)node->start();
    srv = std::make_unique<server::Server>(*node, node->config());
    (void)srv->start();
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    capability::Claims c;
    c.tenant = "bench";
    c.audience = "bench-node";
    c.perms = capability::kAllPermissions;
    c.not_before = static_cast<uint64_t>(now - 5);
    c.expires_at = static_cast<uint64_t>(now + 3600);
    c.token_id = capability::random_token_id();
    token = authority.mint(c).value();
    gl::ConnectOptions o;
    o.node = {"127.0.0.1", srv->port()};
    o.token = token;
    conn.emplace(gl::Connection::connect(o).value());
  }
  ~Fixture() {
    conn.reset();
    srv->drain_and_stop();
    srv->wait();
  }
  // The real node's record and n-1 simulated ones of 8 devices, each with
  // `other_free` bytes free plus a little (0: none can take a 16 MiB lease).
  std::vector<gl::FleetNode> directory(size_t n, uint64_t other_free) const {
    std::vector<gl::FleetNode> v;
    gl::FleetNode real;
    real.node_id = "bench-node";
    real.fleet = "default";
    real.address = "127.0.0.1:" + std::to_string(srv->port());
    real.backend = "sim";
    real.devices = {gl::FleetDevice{0, "sim", 8, 0, 256 * kMiB, 256 * kMiB}};
    v.push_back(real);
    for (size_t i = 1; i < n; ++i) {
      gl::FleetNode f = real;
      f.node_id = "sim-" + std::to_string(i);
      f.address = "127.0.0.1:1";
      f.devices.clear();
      for (uint16_t d = 0; d < 8; ++d)
        f.devices.push_back({d, "sim", 8, 0, 80ull << 30, other_free + i * 1024 + d});
      v.push_back(f);
    }
    return v;
  }
  capability::Authority authority;
  wire::Bytes token;
  std::unique_ptr<server::Node> node;
  std::unique_ptr<server::Server> srv;
  std::optional<gl::Connection> conn;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void acquire_release(gl::LeaseBuilder b) {
  auto l = b.min_vram(16 * kMiB).lease_secs(30).acquire();
  if (!l) throw std::runtime_error(gl::describe(l.error()));
  if (auto r = l->release(); !r) throw std::runtime_error(gl::describe(r.error()));
}

void BM_FleetAcquireVsDirect(benchmark::State& state) {
  Fixture& f = fixture();
  gl::FleetOptions o;
  o.token = f.token;
  gl::Fleet fleet = gl::Fleet::from_nodes(f.directory(static_cast<size_t>(state.range(0)), 0), o);
  acquire_release(gl::LeaseBuilder(fleet));  // the fleet's connection, made once
  double fleet_s = 0, direct_s = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    acquire_release(gl::LeaseBuilder(fleet));
    auto t1 = Clock::now();
    acquire_release(gl::LeaseBuilder(*f.conn));
    auto t2 = Clock::now();
    fleet_s += seconds(t1 - t0);
    direct_s += seconds(t2 - t1);
  }
  state.counters["fleet_vs_direct"] = fleet_s / direct_s;
  state.counters["fleet_us"] = fleet_s * 1e6 / static_cast<double>(state.iterations());
  state.counters["direct_us"] = direct_s * 1e6 / static_cast<double>(state.iterations());
}
BENCHMARK(BM_FleetAcquireVsDirect)->Arg(1)->Arg(100)->Arg(1000)->UseRealTime();

void BM_RankCandidates(benchmark::State& state) {
  Fixture& f = fixture();
  const auto nodes = f.directory(static_cast<size_t>(state.range(0)), 64 * kMiB);
  gl::PlacementConstraints c;
  c.min_vram = 16 * kMiB;
  double rank_s = 0, direct_s = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto r = gl::rank_candidates(nodes, c);
    benchmark::DoNotOptimize(r);
    auto t1 = Clock::now();
    acquire_release(gl::LeaseBuilder(*f.conn));
    auto t2 = Clock::now();
    rank_s += seconds(t1 - t0);
    direct_s += seconds(t2 - t1);
  }
  state.counters["us_per_rank"] = rank_s * 1e6 / static_cast<double>(state.iterations());
  state.counters["rank_vs_direct"] = rank_s / direct_s;
}
BENCHMARK(BM_RankCandidates)->Arg(100)->Arg(1000)->Arg(5000)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
