// Node registration in the fleet directory (issue 16): real gpuleased
// processes against a real etcd (one member or three) on loopback, etcd lease
// TTL 2 s. Waits are bounded polls; nothing asserts on a duration.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "config.hpp"
#include "etcd_cluster.hpp"
#include "fleet/registrar.hpp"
#include "fleet_node_util.hpp"
#include "gpulease/client/client.hpp"

using namespace gpulease;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kFleet = "ftest";

uint64_t unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The directory's records: node id -> JSON (and the etcd lease of each).
struct Directory {
  std::map<std::string, json> records;
  std::map<std::string, int64_t> leases;
};

Directory read_directory(etcd::Client& c, const std::string& fleet = kFleet) {
  Directory d;
  auto r = c.range_prefix(server::fleet_nodes_prefix(fleet));
  if (!r) return d;
  for (const auto& kv : r->kvs) {
    const std::string id = kv.key.substr(server::fleet_nodes_prefix(fleet).size());
    d.records[id] = json::parse(kv.value, nullptr, false);
    d.leases[id] = kv.lease;
  }
  return d;
}

// Polls (every 50 ms, at most `limit`) until `pred(directory)` holds.
template <typename Pred>
bool wait_directory(etcd::Client& c, Pred pred, std::chrono::milliseconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred(read_directory(c))) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred(read_directory(c));
}

client::Connection connect_to(const test::FleetNodeProcess& n, wire::Bytes token) {
  client::ConnectOptions o;
  o.node = client::NodeAddress{"127.0.0.1", n.port()};
  o.token = std::move(token);
  o.request_timeout = 30s;
  o.reconnect_attempts = 0;
  auto c = client::Connection::connect(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : client::describe(c.error()));
  if (!c) std::abort();
  return std::move(c).value();
}

class FleetNode : public ::testing::Test {
 protected:
  void SetUp() override { GPULEASE_SKIP_WITHOUT_ETCD(); }

  std::unique_ptr<test::FleetNodeProcess> node(const std::string& id, uint64_t bytes = 1ull << 30,
                                               uint32_t devices = 1,
                                               std::vector<std::string> extra = {},
                                               uint32_t ttl_s = 2) {
    test::FleetNodeOptions o;
    o.node_id = id;
    o.registry = etcd_.registry_url();
    o.fleet = kFleet;
    o.registry_ttl_s = ttl_s;
    o.authority_pub = auth_.pub_path();
    o.sim_devices = devices;
    o.sim_device_bytes = bytes;
    o.extra = std::move(extra);
    return std::make_unique<test::FleetNodeProcess>(std::move(o));
  }

  test::EtcdCluster etcd_;
  test::FleetAuthority auth_;
};

}  // namespace

TEST(FleetRecord, KeyAndJsonFollowTheDecision) {
  server::RegistrarConfig cfg;
  cfg.fleet = "prod";
  cfg.node_id = "gpu-7";
  cfg.address = "10.0.0.7:7070";
  cfg.backend = "cuda";
  std::vector<server::DeviceRecord> devs = {{0, "H200", 9, 0, 141ull << 30, 100ull << 30},
                                            {1, "bad \xff name", 8, 9, 24ull << 30, 0}};
  EXPECT_EQ(server::fleet_node_key("prod", "gpu-7"), "/gpulease/prod/nodes/gpu-7");
  const json j = json::parse(server::node_record_json(cfg, devs, 1234));
  EXPECT_EQ(j["node_id"], "gpu-7");
  EXPECT_EQ(j["fleet"], "prod");
  EXPECT_EQ(j["address"], "10.0.0.7:7070");
  EXPECT_EQ(j["backend"], "cuda");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["updated_ms"], 1234);
  ASSERT_EQ(j["devices"].size(), 2u);
  EXPECT_EQ(j["devices"][0]["index"], 0);
  EXPECT_EQ(j["devices"][0]["name"], "H200");
  EXPECT_EQ(j["devices"][0]["compute_capability"], json::array({9, 0}));
  EXPECT_EQ(j["devices"][0]["total_vram"], 141ull << 30);
  EXPECT_EQ(j["devices"][0]["free_vram"], 100ull << 30);
  EXPECT_EQ(j["devices"][1]["compute_capability"], json::array({8, 9}));
  EXPECT_TRUE(j["devices"][1]["name"].is_string());  // a bad byte is replaced, not fatal
}

TEST(FleetRecord, NamesThatCannotBeKeysAreRefused) {
  EXPECT_TRUE(server::check_fleet_name("prod-eu.1_a").ok());
  for (const std::string& bad :
       std::vector<std::string>{"", "a/b", "..", "sp ace", std::string(59, 'x'), "é"}) {
    auto r = server::check_fleet_name(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("fleet name"), std::string::npos);
  }
  EXPECT_FALSE(server::check_registry_node_id("a/b").ok());
  server::RegistrarConfig cfg;
  cfg.endpoints = {{"127.0.0.1", 1}};
  cfg.node_id = "n";
  cfg.address = "127.0.0.1";  // no port
  auto r = server::Registrar::create(cfg, [] { return std::vector<server::DeviceRecord>{}; });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("advertise"), std::string::npos);
  cfg.address = "127.0.0.1:7070";
  cfg.ttl_s = 0;
  EXPECT_FALSE(server::Registrar::create(cfg, [] { return std::vector<server::DeviceRecord>{}; }));
}

namespace {

server::NodeConfig parse_ok(std::vector<std::string> args, bool* ok, std::string* err) {
  args.insert(args.begin(), "gpuleased");
  std::vector<char*> ptrs;
  for (auto& a : args) ptrs.push_back(a.data());
  server::NodeConfig cfg;
  bool help = false;
  auto r = server::parse_node_config(static_cast<int>(ptrs.size()), ptrs.data(), cfg, help);
  *ok = r.ok();
  if (!r) *err = r.error().message;
  return cfg;
}

}  // namespace

TEST(FleetConfig, FlagsEnvAndFile) {
  bool ok = false;
  std::string err;
  auto c = parse_ok({"--registry", "etcd://127.0.0.1:2379,127.0.0.1:2380", "--fleet", "blue",
                     "--advertise", "gpu-1.example:7070", "--registry-ttl-s", "5",
                     "--accept-fleet-audience", "--node-id", "gpu-1"},
                    &ok, &err);
  ASSERT_TRUE(ok) << err;
  EXPECT_EQ(c.registry, "etcd://127.0.0.1:2379,127.0.0.1:2380");
  EXPECT_EQ(c.fleet, "blue");
  EXPECT_EQ(c.advertise, "gpu-1.example:7070");
  EXPECT_EQ(c.registry_ttl_s, 5u);
  EXPECT_TRUE(c.accept_fleet_audience);

  auto d = parse_ok({}, &ok, &err);
  ASSERT_TRUE(ok) << err;
  EXPECT_TRUE(d.registry.empty());
  EXPECT_EQ(d.fleet, "default");
  EXPECT_EQ(d.registry_ttl_s, 10u);
  EXPECT_FALSE(d.accept_fleet_audience);

  ::setenv("GPULEASE_REGISTRY", "etcd://127.0.0.1:2379", 1);
  ::setenv("GPULEASE_FLEET", "green", 1);
  auto e = parse_ok({}, &ok, &err);
  auto e2 = parse_ok({"--fleet", "red"}, &ok, &err);
  ::unsetenv("GPULEASE_REGISTRY");
  ::unsetenv("GPULEASE_FLEET");
  EXPECT_EQ(e.registry, "etcd://127.0.0.1:2379");
  EXPECT_EQ(e.fleet, "green");
  EXPECT_EQ(e2.fleet, "red");  // the flag wins over the environment

  const auto path = std::filesystem::temp_directory_path() /
                    ("gpulease-fleet-config-" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream f(path);
    f << "registry = \"etcd://10.0.0.1:2379\"\nfleet = \"prod\"\nadvertise = \"10.0.0.9:7070\"\n"
         "registry_ttl_s = 7\naccept_fleet_audience = true\n";
  }
  auto t = parse_ok({"--config", path.string()}, &ok, &err);
  std::filesystem::remove(path);
  ASSERT_TRUE(ok) << err;
  EXPECT_EQ(t.registry, "etcd://10.0.0.1:2379");
  EXPECT_EQ(t.fleet, "prod");
  EXPECT_EQ(t.advertise, "10.0.0.9:7070");
  EXPECT_EQ(t.registry_ttl_s, 7u);
  EXPECT_TRUE(t.accept_fleet_audience);
}

TEST(FleetConfig, BadValuesAreRefusedWithTheReason) {
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{"--registry", "http://127.0.0.1:2379"}, "etcd://HOST:PORT"},
      {{"--registry", "etcd://127.0.0.1"}, "etcd://HOST:PORT"},
      {{"--registry", "etcd://"}, "no endpoint"},
      {{"--fleet", "a/b"}, "fleet name"},
      {{"--fleet", std::string(59, 'f')}, "fleet name"},
      {{"--registry", "etcd://127.0.0.1:2379", "--node-id", "rack 1/gpu"}, "node id"},
      {{"--advertise", "no-port"}, "advertise"},
      {{"--registry-ttl-s", "0"}, "registry_ttl_s"},
  };
  for (const auto& k : cases) {
    bool ok = true;
    std::string err;
    (void)parse_ok(k.args, &ok, &err);
    EXPECT_FALSE(ok) << k.args[1];
    EXPECT_NE(err.find(k.says), std::string::npos) << k.args[1] << ": " << err;
  }
}

// The registrar in-process (so the sanitizer builds see its threads): it
// registers, follows a changing snapshot with re-puts, and deregisters.
TEST_F(FleetNode, RegistrarFollowsItsSnapshotAndDeregisters) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  std::atomic<uint64_t> free_vram{1000};
  server::RegistrarConfig cfg;
  cfg.endpoints = {etcd::Endpoint{"127.0.0.1", etcd_.client_port(0)}};
  cfg.fleet = kFleet;
  cfg.node_id = "inproc";
  cfg.address = "127.0.0.1:7070";
  cfg.backend = "sim";
  cfg.ttl_s = 2;
  cfg.debounce = 50ms;
  server::Metrics metrics;
  EXPECT_EQ(metrics.render().find("gpulease_fleet_registered"), std::string::npos);
  cfg.metrics = &metrics;
  auto r = server::Registrar::create(cfg, [&] {
    return std::vector<server::DeviceRecord>{{0, "sim", 8, 0, 4096, free_vram.load()}};
  });
  ASSERT_TRUE(r) << r.error().message;
  (*r)->start();
  auto free_is = [&](uint64_t v) {
    return [v](const Directory& d) {
      auto it = d.records.find("inproc");
      return it != d.records.end() && it->second.is_object() &&
             it->second["devices"][0]["free_vram"] == v;
    };
  };
  ASSERT_TRUE(wait_directory(*c, free_is(1000)));
  for (int i = 0; i < 200 && !(*r)->stats().registered; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE((*r)->stats().registered);
  EXPECT_EQ((*r)->stats().registrations, 1u);
  EXPECT_NE(metrics.render().find("gpulease_fleet_registered 1"), std::string::npos);
  EXPECT_EQ(metrics.fleet_registrations.load(), 1u);
  free_vram = 600;
  ASSERT_TRUE(wait_directory(*c, free_is(600)));
  free_vram = 200;
  ASSERT_TRUE(wait_directory(*c, free_is(200)));
  // The registrar counts an update once its put has returned, which can be
  // just after the directory already shows it: wait for the count, bounded.
  for (int i = 0; i < 200 && (*r)->stats().updates < 2; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GE((*r)->stats().updates, 2u);
  (*r)->deregister();
  (*r)->stop();
  const auto st = (*r)->stats();
  EXPECT_TRUE(st.deregistered);
  EXPECT_FALSE(st.registered);
  EXPECT_EQ(read_directory(*c).records.count("inproc"), 0u);
  EXPECT_NE(metrics.render().find("gpulease_fleet_registered 0"), std::string::npos);
}

TEST_F(FleetNode, ThreeNodesRegisterInAThreeMemberClusterWithCorrectRecords) {
  ASSERT_TRUE(etcd_.start(3)) << etcd_.last_error();
  auto c = etcd_.client();
  auto a = node("node-a", 1ull << 30);
  auto b = node("node-b", 2ull << 30, 2);
  auto d = node("node-c", 512ull << 20);
  const uint64_t before = unix_ms();
  ASSERT_TRUE(a->start()) << a->log();
  ASSERT_TRUE(b->start()) << b->log();
  ASSERT_TRUE(d->start()) << d->log();
  ASSERT_TRUE(wait_directory(*c, [](const Directory& dir) { return dir.records.size() == 3; }))
      << a->log();
  const Directory dir = read_directory(*c);
  const std::map<std::string, std::pair<const test::FleetNodeProcess*, uint64_t>> want = {
      {"node-a", {a.get(), 1ull << 30}},
      {"node-b", {b.get(), 2ull << 30}},
      {"node-c", {d.get(), 512ull << 20}}};
  for (const auto& [id, w] : want) {
    ASSERT_TRUE(dir.records.count(id)) << id;
    const json& j = dir.records.at(id);
    ASSERT_TRUE(j.is_object()) << id;
    EXPECT_EQ(j["node_id"], id);
    EXPECT_EQ(j["fleet"], kFleet);
    EXPECT_EQ(j["address"], w.first->address());
    EXPECT_EQ(j["backend"], "sim");
    EXPECT_EQ(j["version"], 1);
    EXPECT_GE(j["updated_ms"].get<uint64_t>(), before - 1000);
    EXPECT_NE(dir.leases.at(id), 0) << "the record must hang on an etcd lease";
    ASSERT_EQ(j["devices"].size(), id == "node-b" ? 2u : 1u);
    for (size_t i = 0; i < j["devices"].size(); ++i) {
      const json& dev = j["devices"][i];
      EXPECT_EQ(dev["index"], i);
      EXPECT_EQ(dev["total_vram"], w.second);
      EXPECT_GT(dev["free_vram"].get<uint64_t>(), 0u);
      EXPECT_LE(dev["free_vram"].get<uint64_t>(), w.second);
      ASSERT_EQ(dev["compute_capability"].size(), 2u);
      EXPECT_TRUE(dev["name"].is_string());
    }
  }
}

TEST_F(FleetNode, VramChangesArePublishedAndDrainDeregistersAtOnce) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  // TTL 60 s: a record gone right after the exit was deleted, not expired.
  auto n = node("node-v", 1ull << 30, 1, {}, /*ttl_s=*/60);
  ASSERT_TRUE(n->start()) << n->log();
  auto free_of = [](const Directory& dir) -> uint64_t {
    auto it = dir.records.find("node-v");
    if (it == dir.records.end() || !it->second.is_object()) return 0;
    return it->second["devices"][0]["free_vram"].get<uint64_t>();
  };
  ASSERT_TRUE(wait_directory(*c, [&](const Directory& d) { return free_of(d) > 0; })) << n->log();
  const uint64_t free0 = free_of(read_directory(*c));

  auto conn = connect_to(*n, auth_.token("node-v"));
  auto lease = client::LeaseBuilder(conn).min_vram(256ull << 20).lease_secs(60).acquire();
  ASSERT_TRUE(lease) << client::describe(lease.error());
  ASSERT_TRUE(wait_directory(
      *c,
      [&](const Directory& d) { return free_of(d) != 0 && free_of(d) <= free0 - (256ull << 20); }))
      << "free_vram stays " << free_of(read_directory(*c));
  ASSERT_TRUE(lease->release());
  ASSERT_TRUE(wait_directory(*c, [&](const Directory& d) { return free_of(d) == free0; }));

  EXPECT_EQ(n->terminate(), 0);
  const Directory after = read_directory(*c);
  EXPECT_EQ(after.records.count("node-v"), 0u) << "drain must delete the record before exit";
  EXPECT_NE(n->log().find("deregistered from the fleet directory"), std::string::npos) << n->log();
}

TEST_F(FleetNode, AKilledNodeLeavesTheDirectoryWithinItsTtl) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  auto a = node("node-a");
  auto b = node("node-b");
  ASSERT_TRUE(a->start());
  ASSERT_TRUE(b->start());
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.size() == 2; }));
  const int64_t lease_b = read_directory(*c).leases.at("node-b");
  a->kill9();
  // Gone when its etcd lease (2 s) runs out; the bound leaves room for a slow box.
  ASSERT_TRUE(wait_directory(
      *c, [](const Directory& d) { return d.records.count("node-a") == 0; }, 10s));
  // The living node stays, on the same etcd lease (kept alive, never re-made).
  const Directory d = read_directory(*c);
  ASSERT_EQ(d.records.count("node-b"), 1u);
  EXPECT_EQ(d.leases.at("node-b"), lease_b);
}

TEST_F(FleetNode, EtcdDownAtStartTheNodeServesAndRegistersWhenItReturns) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  etcd_.kill(0);  // the registry's address is known, nothing answers there
  auto n = node("node-late");
  ASSERT_TRUE(n->start()) << n->log();
  // Serving meanwhile: a lease is acquired and used.
  auto conn = connect_to(*n, auth_.token("node-late"));
  auto lease = client::LeaseBuilder(conn).min_vram(64ull << 20).lease_secs(60).acquire();
  ASSERT_TRUE(lease) << client::describe(lease.error());
  // The registrar's first attempt runs on its own thread (slow to start
  // under TSan): wait for its log line, bounded.
  for (int i = 0; i < 200 && n->log().find("fleet registry unreachable") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_NE(n->log().find("fleet registry unreachable"), std::string::npos) << n->log();

  ASSERT_TRUE(etcd_.restart(0)) << etcd_.last_error();
  auto c = etcd_.client();
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-late"); }))
      << n->log();
  // Published with the lease it held all along.
  const json j = read_directory(*c).records.at("node-late");
  EXPECT_LE(j["devices"][0]["free_vram"].get<uint64_t>(), (1ull << 30) - (64ull << 20));
  auto q = lease->query();
  EXPECT_TRUE(q) << client::describe(q.error());
}

TEST_F(FleetNode, EtcdLostLaterTheNodeServesOnAndRegistersAgain) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  auto n = node("node-x");
  ASSERT_TRUE(n->start());
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-x"); }));
  etcd_.kill(0);
  // Longer than the TTL without etcd; the node keeps serving.
  auto conn = connect_to(*n, auth_.token("node-x"));
  for (int i = 0; i < 6; ++i) {
    auto lease = client::LeaseBuilder(conn).min_vram(16ull << 20).lease_secs(10).acquire();
    ASSERT_TRUE(lease) << client::describe(lease.error());
    ASSERT_TRUE(lease->release());
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(etcd_.restart(0));
  // Back in the directory (etcd may have kept the lease alive across its
  // restart, or the node registered anew); either way the record is there and
  // its lease is kept alive beyond one TTL.
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-x"); }))
      << n->log();
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(read_directory(*c).records.count("node-x"), 1u) << n->log();
}

// A hung etcd (it answers nothing) stretches a drain by at most its etcd
// calls' deadlines (TTL 3 s: 1 s each; the call in flight, then the revoke,
// which starts with the drain): the node still exits soon after a short
// drain bound (docs/FLEET.md).
TEST_F(FleetNode, AHungEtcdDelaysTheExitByAtMostItsDeadlines) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  auto n = node("node-h", 1ull << 30, 1, {"--drain-timeout-ms=500"}, /*ttl_s=*/3);
  ASSERT_TRUE(n->start()) << n->log();
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-h"); }));
  etcd_.pause(0);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(n->terminate(), 0) << n->log();
  const auto took = std::chrono::steady_clock::now() - t0;
  etcd_.resume(0);
  // The revoke and the call in flight (1 s each) overlap the 0.5 s drain;
  // the rest is room for a loaded machine.
  EXPECT_LT(took, 2500ms) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                          << " ms\n"
                          << n->log();
}

TEST_F(FleetNode, TheEtcdLeaderKilledTheRegistrationSurvives) {
  ASSERT_TRUE(etcd_.start(3)) << etcd_.last_error();
  auto c = etcd_.client();
  auto n = node("node-l");
  ASSERT_TRUE(n->start());
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-l"); }));
  const int64_t lease0 = read_directory(*c).leases.at("node-l");
  // Watch for a deletion of the record from here on.
  std::atomic<int> deletes{0};
  etcd::WatchOptions wo;
  wo.key = server::fleet_node_key(kFleet, "node-l");
  auto w = c->watch(wo, [&](const etcd::WatchResponse& r) {
    for (const auto& e : r.events) {
      if (e.type == etcd::WatchEvent::Type::kDelete) ++deletes;
    }
  });
  ASSERT_TRUE(w);
  const int leader = etcd_.leader_index();
  ASSERT_GE(leader, 0);
  etcd_.kill(static_cast<size_t>(leader));
  ASSERT_GE(etcd_.leader_index(), 0) << "the two left elect a leader";
  // Two TTLs later the record is still there, on its first etcd lease.
  std::this_thread::sleep_for(4s);
  const Directory d = read_directory(*c);
  ASSERT_EQ(d.records.count("node-l"), 1u) << n->log();
  EXPECT_EQ(d.leases.at("node-l"), lease0) << n->log();
  EXPECT_EQ(deletes.load(), 0) << n->log();
}

TEST_F(FleetNode, AWildcardListenNeedsAdvertise) {
  ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
  auto c = etcd_.client();
  // --listen 0.0.0.0 without --advertise: refused at start, with the reason.
  test::FleetNodeOptions wo;
  wo.node_id = "node-w";
  wo.registry = etcd_.registry_url();
  wo.fleet = kFleet;
  wo.listen = "0.0.0.0:0";
  auto bad = std::make_unique<test::FleetNodeProcess>(wo);
  EXPECT_FALSE(bad->start());
  EXPECT_NE(bad->log().find("--advertise"), std::string::npos) << bad->log();
  // With --advertise, that address is what the directory says.
  auto good = node("node-adv", 1ull << 30, 1, {"--advertise=gpu-7.example:7070"});
  ASSERT_TRUE(good->start()) << good->log();
  ASSERT_TRUE(wait_directory(*c, [](const Directory& d) { return d.records.count("node-adv"); }));
  EXPECT_EQ(read_directory(*c).records.at("node-adv")["address"], "gpu-7.example:7070");
}
