// Launches per second through the client library against an in-process node
// (sim backend) on loopback: the same loop of small launches sent
//  - pipelined: every LAUNCH written at once, replies collected afterwards;
//  - waiting:   each LAUNCH's reply awaited before the next is sent
// in the same iteration, so the ratio compares like with like on a noisy
// machine. The kernel is `scale` on one element (one thread), so the node's
// per-frame work (token check, strand hop, queueing) and the round trip
// dominate, not the kernel. Kernels are synced outside the timed region.
#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>

#include "backend_factory.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/client/client.hpp"
#include "net.hpp"
#include "node.hpp"

namespace {

using namespace gpulease;
namespace gl = gpulease::client;
using Clock = std::chrono::steady_clock;

constexpr int kBatch = 256;

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
    gl::ConnectOptions o;
    o.node = {"127.0.0.1", srv->port()};
    o.token = authority.mint(c).value();
    conn.emplace(gl::Connection::connect(o).value());
  }
  ~Fixture() {
    conn.reset();
    srv->drain_and_stop();
    srv->wait();
  }
  capability::Authority authority;
  std::unique_ptr<server::Node> node;
  std::unique_ptr<server::Server> srv;
  std::optional<gl::Connection> conn;
};

std::string read_ptx(const std::string& name) {
  std::ifstream f(std::string(GPULEASE_PTX_DIR) + "/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void BM_ClientLaunchesPipelinedVsWaiting(benchmark::State& state) {
  Fixture fx;
  auto lease = gl::LeaseBuilder(*fx.conn).min_vram(1 << 20).lease_secs(600).acquire();
  if (!lease) {
    state.SkipWithError(gl::describe(lease.error()).c_str());
    return;
  }
  gl::Session s(*lease);
  auto buf = s.mem_alloc(4).value();
  const std::string ptx = read_ptx("transform.ptx");
  auto mod = s.module_load(wire::as_bytes(ptx)).value();
  const auto args = gl::KernelArgs().push_buffer(buf).push_i32(1).push_f32(1.0f);
  double pipelined_s = 0, waiting_s = 0;
  int64_t launches = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i)
      (void)s.launch_with_args(mod, "scale", {1, 1, 1}, {1, 1, 1}, args);
    if (!s.flush()) state.SkipWithError("pipelined launch failed");
    auto t1 = Clock::now();
    (void)s.sync();
    auto t2 = Clock::now();
    for (int i = 0; i < kBatch; ++i) {
      (void)s.launch_with_args(mod, "scale", {1, 1, 1}, {1, 1, 1}, args);
      if (!s.flush()) state.SkipWithError("launch failed");
    }
    auto t3 = Clock::now();
    (void)s.sync();
    const double p = std::chrono::duration<double>(t1 - t0).count();
    const double w = std::chrono::duration<double>(t3 - t2).count();
    pipelined_s += p;
    waiting_s += w;
    launches += kBatch;
    state.SetIterationTime(p + w);
  }
  state.counters["pipelined_launches_per_s"] = static_cast<double>(launches) / pipelined_s;
  state.counters["waiting_launches_per_s"] = static_cast<double>(launches) / waiting_s;
  state.counters["pipelined_vs_waiting"] = waiting_s / pipelined_s;
  state.SetItemsProcessed(2 * launches);
}
BENCHMARK(BM_ClientLaunchesPipelinedVsWaiting)->UseManualTime()->Unit(benchmark::kMillisecond);

// PING round trip through the library, for reference against bench_node's
// raw-frame figures.
void BM_ClientPingRoundTrip(benchmark::State& state) {
  Fixture fx;
  for (auto _ : state) {
    auto r = fx.conn->ping();
    if (!r) state.SkipWithError("ping failed");
  }
}
BENCHMARK(BM_ClientPingRoundTrip)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
