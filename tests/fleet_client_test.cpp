// The client's fleet against a real etcd (tests/etcd_cluster.hpp) and real
// gpuleased processes on loopback: the directory view and its watch (also
// across an etcd leader's death), `gpulease nodes`, the replicated
// idempotency store and two recipe-53 gateways racing on one request id.
// Skipped without an etcd binary.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include "client_process_util.hpp"
#include "etcd_cluster.hpp"
#include "fleet_node_util.hpp"
#include "gpulease/client/client.hpp"

namespace gpulease::testing {
namespace {

using namespace std::chrono_literals;
using client::Fleet;
using client::FleetNode;
using client::IdempotencyRecord;
using wire::Status;

constexpr uint64_t kMiB = 1ull << 20;

FleetNode record(const std::string& id, uint64_t free_mib, const std::string& address,
                 const std::string& fleet = "default") {
  FleetNode n;
  n.node_id = id;
  n.fleet = fleet;
  n.address = address;
  n.backend = "sim";
  n.devices = {client::FleetDevice{0, "gpulease sim", 8, 0, 1024 * kMiB, free_mib * kMiB}};
  n.updated_ms = 1;
  return n;
}

// Registers `n` the way a node does: its record under an etcd lease of
// `ttl_s` (0: no lease). Returns the lease id.
int64_t register_node(etcd::Client& c, const FleetNode& n, int64_t ttl_s = 0) {
  int64_t lease = 0;
  if (ttl_s > 0) {
    auto g = c.lease_grant(ttl_s);
    EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message);
    if (g) lease = g->id;
  }
  auto p =
      c.put(client::fleet_nodes_prefix(n.fleet) + n.node_id, client::node_record_json(n), lease);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return lease;
}

bool has_nodes(const Fleet& f, std::vector<std::string> want, std::chrono::milliseconds t = 10s) {
  std::sort(want.begin(), want.end());
  return f.wait_until(
      [&](const std::vector<FleetNode>& nodes) {
        std::vector<std::string> ids;
        for (const auto& n : nodes) ids.push_back(n.node_id);
        return ids == want;
      },
      t);
}

client::FleetOptions options(const test::EtcdCluster& etcd) {
  client::FleetOptions o;
  o.registry = etcd.registry_url();
  o.fleet = "default";
  return o;
}

// ---- The directory -----------------------------------------------------------------------

TEST(FleetDirectory, AFleetSeesNodesRegisterChangeAndGo) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  auto c = etcd.client();
  ASSERT_TRUE(c);
  register_node(*c, record("node-a", 100, "127.0.0.1:7001"));
  register_node(*c, record("node-b", 200, "127.0.0.1:7002"));
  // Another fleet's node is not ours.
  register_node(*c, record("node-x", 300, "127.0.0.1:7009", "other"));

  auto fleet = Fleet::open(options(etcd));
  ASSERT_TRUE(fleet.ok()) << fleet.error().message();
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-b"}, 0ms));
  EXPECT_GT(fleet->revision(), 0);

  register_node(*c, record("node-c", 300, "127.0.0.1:7003"));
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-b", "node-c"}));
  // A VRAM change re-puts the record: the view follows.
  register_node(*c, record("node-a", 50, "127.0.0.1:7001"));
  EXPECT_TRUE(fleet->wait_until(
      [](const std::vector<FleetNode>& nodes) {
        return !nodes.empty() && nodes[0].node_id == "node-a" && nodes[0].free_vram() == 50 * kMiB;
      },
      10s));
  ASSERT_TRUE(c->del(client::fleet_nodes_prefix("default") + "node-b").ok());
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-c"}));

  // A record that lies about its key, or is not a record, is left out.
  auto liar = record("node-d", 10, "127.0.0.1:7004");
  ASSERT_TRUE(
      c->put(client::fleet_nodes_prefix("default") + "node-e", client::node_record_json(liar))
          .ok());
  ASSERT_TRUE(c->put(client::fleet_nodes_prefix("default") + "node-f", "{not json").ok());
  register_node(*c, record("node-g", 10, "127.0.0.1:7007"));  // after them: seen once they are
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-c", "node-g"}));
  EXPECT_EQ(fleet->view()->bad_records(), 2u);
}

TEST(FleetDirectory, ANodeWhoseEtcdLeaseLapsesLeavesTheView) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  auto c = etcd.client();
  ASSERT_TRUE(c);
  register_node(*c, record("node-a", 100, "127.0.0.1:7001"));
  register_node(*c, record("node-dies", 100, "127.0.0.1:7002"), /*ttl_s=*/1);  // no keep-alive
  auto fleet = Fleet::open(options(etcd));
  ASSERT_TRUE(fleet.ok()) << fleet.error().message();
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-dies"}, 0ms));
  // Gone within its TTL (etcd expires leases within about a second of it).
  EXPECT_TRUE(has_nodes(*fleet, {"node-a"}, 15s));
}

TEST(FleetDirectory, TheViewKeepsUpWhenTheEtcdLeaderIsKilled) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(3)) << etcd.last_error();
  auto c = etcd.client();
  ASSERT_TRUE(c);
  register_node(*c, record("node-a", 100, "127.0.0.1:7001"));
  auto fleet = Fleet::open(options(etcd));
  ASSERT_TRUE(fleet.ok()) << fleet.error().message();
  EXPECT_TRUE(has_nodes(*fleet, {"node-a"}, 0ms));
  const int leader = etcd.leader_index();
  ASSERT_GE(leader, 0);
  etcd.kill(static_cast<size_t>(leader));
  ASSERT_GE(etcd.leader_index(), 0) << "the two others elect a leader";
  // Writes through the survivors reach the view (the watch moved over).
  for (int i = 0; i < 50; ++i) {  // the first put may land while the election settles
    if (c->put(client::fleet_nodes_prefix("default") + "node-b",
               client::node_record_json(record("node-b", 100, "127.0.0.1:7002")))
            .ok())
      break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(has_nodes(*fleet, {"node-a", "node-b"}, 20s));
}

TEST(FleetDirectory, AnUnreachableRegistryIsAClearError) {
  client::FleetOptions o;
  o.registry = "etcd://127.0.0.1:1";
  o.registry_timeout = 500ms;
  auto f = Fleet::open(o);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(f.error().is_connection_lost() || f.error().is_timeout()) << f.error().to_string();
  EXPECT_NE(f.error().message().find("registry"), std::string::npos) << f.error().message();
  o.registry = "http://127.0.0.1:2379";
  EXPECT_EQ(Fleet::open(o).status(), client::ClientStatus::local(Status::kInvalidArgument));
  o.registry = "etcd://127.0.0.1:2379";
  o.fleet = "a/b";
  EXPECT_EQ(Fleet::open(o).status(), client::ClientStatus::local(Status::kInvalidArgument));
}

// ---- gpulease nodes ----------------------------------------------------------------------

ProcessResult run_cli(const std::string& args) {
  static int n = 0;
  const auto dir = std::filesystem::temp_directory_path();
  const auto out =
      dir / ("gpulease-fleet-cli-" + std::to_string(::getpid()) + "-" + std::to_string(n) + ".out");
  const auto err = dir / ("gpulease-fleet-cli-" + std::to_string(::getpid()) + "-" +
                          std::to_string(n++) + ".err");
  const std::string cmd = "env -u GPULEASE_NODE -u GPULEASE_REGISTRY timeout 60 " +
                          bin("gpulease") + " " + args + " > " + out.string() + " 2> " +
                          err.string();
  const int st = std::system(cmd.c_str());
  ProcessResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

TEST(FleetCli, NodesListsTheRegisteredNodesWithTheirFreeVram) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  auto c = etcd.client();
  ASSERT_TRUE(c);
  register_node(*c, record("node-a", 100, "127.0.0.1:7001"));
  register_node(*c, record("node-b", 768, "127.0.0.1:7002"));

  auto j = run_cli("nodes --registry " + etcd.registry_url() + " --json");
  ASSERT_EQ(j.status, 0) << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["fleet"], "default");
  ASSERT_EQ(doc["nodes"].size(), 2u);
  EXPECT_EQ(doc["nodes"][0]["node_id"], "node-a");
  EXPECT_EQ(doc["nodes"][0]["address"], "127.0.0.1:7001");
  EXPECT_EQ(doc["nodes"][0]["backend"], "sim");
  EXPECT_EQ(doc["nodes"][0]["free_vram"], 100 * kMiB);
  EXPECT_EQ(doc["nodes"][1]["free_vram"], 768 * kMiB);
  EXPECT_EQ(doc["nodes"][1]["devices"][0]["compute_capability"], "8.0");

  auto text = run_cli("nodes --registry " + etcd.registry_url());
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("node-b"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("768.0 MiB"), std::string::npos) << text.out;

  // The global option may come first, and another fleet is empty.
  auto other = run_cli("--registry " + etcd.registry_url() + " --fleet other nodes");
  ASSERT_EQ(other.status, 0) << other.err;
  EXPECT_NE(other.out.find("no nodes registered in fleet 'other'"), std::string::npos) << other.out;

  auto both = run_cli("nodes --node 127.0.0.1:7001");
  EXPECT_EQ(both.status, 1);
  EXPECT_NE(both.err.find("--registry"), std::string::npos) << both.err;
  auto none = run_cli("nodes");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("no registry"), std::string::npos) << none.err;
  auto down = run_cli("nodes --registry etcd://127.0.0.1:1");
  EXPECT_EQ(down.status, 3) << "exit status 3: unreachable";
  EXPECT_NE(down.err.find("CONNECTION_LOST"), std::string::npos) << down.err;
}

// ---- The replicated idempotency store ------------------------------------------------------

client::EtcdIdempotencyOptions store_options(const test::EtcdCluster& etcd, std::string owner) {
  client::EtcdIdempotencyOptions o;
  o.registry = etcd.registry_url();
  o.owner = std::move(owner);
  o.reservation_ttl = std::chrono::seconds(30);
  return o;
}

TEST(FleetIdempotency, OneOwnerReservesCompletesAndEveryoneReadsTheAnswer) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  auto a = client::EtcdIdempotencyStore::open(store_options(etcd, "gateway-a"));
  ASSERT_TRUE(a.ok()) << a.error().message();
  auto b = client::EtcdIdempotencyStore::open(store_options(etcd, "gateway-b"));
  ASSERT_TRUE(b.ok()) << b.error().message();

  auto ra = (*a)->reserve("inference:r1");
  ASSERT_TRUE(ra.ok()) << ra.error().message();
  EXPECT_EQ(ra->state, IdempotencyRecord::State::kReservedByUs);
  auto rb = (*b)->reserve("inference:r1");
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->state, IdempotencyRecord::State::kInProgress);
  EXPECT_EQ(rb->owner, "gateway-a");
  // b cannot complete or give back what a holds.
  EXPECT_EQ((*b)->complete("inference:r1", rb->fence + 1, {}).status(),
            client::ClientStatus::local(Status::kIdempotencyConflict));

  const wire::Bytes answer = {std::byte{1}, std::byte{2}, std::byte{0}, std::byte{255}};
  ASSERT_TRUE((*a)->complete("inference:r1", ra->fence, answer).ok());
  auto read = (*b)->read("inference:r1");
  ASSERT_TRUE(read.ok());
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->state, IdempotencyRecord::State::kCompleted);
  EXPECT_EQ((*read)->result, answer);
  auto again = (*b)->reserve("inference:r1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state, IdempotencyRecord::State::kCompleted);
  EXPECT_EQ(again->result, answer);
  // A completed record is final: its fence is spent.
  EXPECT_EQ((*a)->complete("inference:r1", ra->fence, answer).status(),
            client::ClientStatus::local(Status::kIdempotencyConflict));
  EXPECT_EQ((*a)->abandon("inference:r1", ra->fence).status(),
            client::ClientStatus::local(Status::kIdempotencyConflict));

  // An abandoned reservation frees the id for anyone.
  auto r2 = (*a)->reserve("inference:r2");
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE((*a)->abandon("inference:r2", r2->fence).ok());
  auto r2b = (*b)->reserve("inference:r2");
  ASSERT_TRUE(r2b.ok());
  EXPECT_EQ(r2b->state, IdempotencyRecord::State::kReservedByUs);

  EXPECT_EQ((*a)->reserve("has/slash").status(),
            client::ClientStatus::local(Status::kInvalidArgument));
  EXPECT_EQ((*a)->reserve("").status(), client::ClientStatus::local(Status::kInvalidArgument));
}

TEST(FleetIdempotency, AReservationWhoseOwnerDiesIsFreedAndItsLateCompletionRefused) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  auto o = store_options(etcd, "gateway-slow");
  o.reservation_ttl = std::chrono::seconds(1);
  auto slow = client::EtcdIdempotencyStore::open(o);
  ASSERT_TRUE(slow.ok());
  auto other = client::EtcdIdempotencyStore::open(store_options(etcd, "gateway-b"));
  ASSERT_TRUE(other.ok());
  auto r = (*slow)->reserve("r");
  ASSERT_TRUE(r.ok());
  // Within its TTL (and etcd's expiry tick) the reservation is gone ...
  auto gone = (*other)->wait_settled("r", 15s);
  ASSERT_TRUE(gone.ok()) << gone.error().message();
  EXPECT_FALSE(gone->has_value());
  // ... another owner takes it, and the late first owner cannot complete.
  auto taken = (*other)->reserve("r");
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->state, IdempotencyRecord::State::kReservedByUs);
  EXPECT_EQ((*slow)->complete("r", r->fence, {}).status(),
            client::ClientStatus::local(Status::kIdempotencyConflict));
  ASSERT_TRUE((*other)->complete("r", taken->fence, {}).ok());
}

TEST(FleetIdempotency, TwoGatewayProcessesRaceOnOneRequestIdAndOnlyOneRunsTheKernel) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  NodeProcess node("race-node");
  for (int round = 0; round < 3; ++round) {
    const std::string id = "race-" + std::to_string(round);
    const auto start_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count() +
                          1500;  // both started by then: they begin together
    auto gw = [&](const char* owner) {
      return bin("recipe53_gateway") + " --node " + node.address() + " --registry " +
             etcd.registry_url() + " --request " + id + " --owner " + owner + " --start-at-ms " +
             std::to_string(start_at);
    };
    const auto dir = node.dir();
    auto r = node.run("sh -c '" + gw("gw-1") + " > " + (dir / "gw1.txt").string() + " 2>&1 & " +
                      gw("gw-2") + " > " + (dir / "gw2.txt").string() + " 2>&1 & wait'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string out1 = slurp(dir / "gw1.txt"), out2 = slurp(dir / "gw2.txt");
    const auto ran = [](const std::string& s) {
      return s.find("ran the kernel") != std::string::npos;
    };
    const auto dup = [](const std::string& s) {
      return s.find("duplicate answer from the store") != std::string::npos;
    };
    EXPECT_NE(ran(out1), ran(out2)) << "exactly one runs the kernel\n" << out1 << "\n" << out2;
    EXPECT_NE(dup(out1), dup(out2)) << out1 << "\n" << out2;
    EXPECT_EQ(ran(out1), dup(out2));
    for (const auto* out : {&out1, &out2}) {
      EXPECT_NE(out->find("matches the CPU reference"), std::string::npos) << *out;
      EXPECT_NE(out->find("idempotency store: etcd"), std::string::npos) << *out;
    }
  }
}

TEST(FleetIdempotency, Recipe53UsesTheReplicatedStoreWithARegistry) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  test::EtcdCluster etcd;
  ASSERT_TRUE(etcd.start(1)) << etcd.last_error();
  NodeProcess node("r53-node");
  for (int run = 0; run < 2; ++run) {  // a second run is not all duplicates
    auto r = node.run(bin("recipe53_gateway") + " --registry " + etcd.registry_url());
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("idempotency store: etcd"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("refused by the idempotency store"), std::string::npos) << r.out;
  }
  auto c = etcd.client();
  auto keys = c->range_prefix("/gpulease/default/idempotency/");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->kvs.size(), 6u) << "three requests a run, each recorded complete";
  for (const auto& kv : keys->kvs) {
    auto j = nlohmann::json::parse(kv.value);
    EXPECT_EQ(j["state"], "complete") << kv.value;
    EXPECT_TRUE(j["fence"].is_number()) << kv.value;
  }
}

// ---- End to end: registered nodes, placement, jobs through node and etcd deaths ----------

// A 3-member etcd, and three sim nodes of 256 MiB, 512 MiB and 1 GiB that
// register in it (TTL 2 s), trust one authority and accept the fleet
// audience: one token (audience fleet:default) works on all of them.
struct ThreeNodeFleet {
  bool start() {
    if (!etcd.start(3)) {
      error = etcd.last_error();
      return false;
    }
    const uint64_t sizes[3] = {256 * kMiB, 512 * kMiB, 1024 * kMiB};
    for (int i = 0; i < 3; ++i) {
      test::FleetNodeOptions o;
      o.node_id = std::string("node-") + static_cast<char>('a' + i);
      o.registry = etcd.registry_url();
      o.registry_ttl_s = 2;
      o.authority_pub = auth.pub_path();
      o.sim_device_bytes = sizes[i];
      o.extra = {"--accept-fleet-audience"};
      nodes.push_back(std::make_unique<test::FleetNodeProcess>(o));
      if (!nodes.back()->start()) {
        error = nodes.back()->log();
        return false;
      }
    }
    auto f = Fleet::open(fleet_options());
    if (!f) {
      error = f.error().message();
      return false;
    }
    fleet.emplace(std::move(f).value());
    if (!has_nodes(*fleet, {"node-a", "node-b", "node-c"}, 20s)) {
      error = "the three nodes did not register";
      return false;
    }
    return true;
  }
  client::FleetOptions fleet_options() const {
    client::FleetOptions o = options(etcd);
    o.token = auth.token("fleet:default");
    return o;
  }
  // The CLI / a recipe with the fleet token and the registry, no node.
  ProcessResult run(const std::string& command, int timeout_s = 120) const {
    static int n = 0;
    const auto out = dir() / ("out" + std::to_string(n) + ".txt");
    const auto err = dir() / ("err" + std::to_string(n++) + ".txt");
    const std::string cmd =
        "env -u GPULEASE_NODE GPULEASE_TOKEN=" + auth.token_text("fleet:default") + " timeout " +
        std::to_string(timeout_s) + " " + command + " > " + out.string() + " 2> " + err.string();
    const int st = std::system(cmd.c_str());
    ProcessResult r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  std::filesystem::path dir() const { return std::filesystem::path(etcd.data_dir()); }
  test::FleetNodeProcess& node(char c) { return *nodes.at(static_cast<size_t>(c - 'a')); }

  test::EtcdCluster etcd;
  test::FleetAuthority auth;
  std::vector<std::unique_ptr<test::FleetNodeProcess>> nodes;
  std::optional<Fleet> fleet;
  std::string error;
};

TEST(FleetEndToEnd, ThreeNodesRegisterAndGpuleaseNodesListsThemWithTheirFreeVram) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  ThreeNodeFleet f;
  ASSERT_TRUE(f.start()) << f.error;
  auto r = f.run(bin("gpulease") + " nodes --json --registry " + f.etcd.registry_url());
  ASSERT_EQ(r.status, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["nodes"].size(), 3u) << r.out;
  const uint64_t sizes[3] = {256 * kMiB, 512 * kMiB, 1024 * kMiB};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(doc["nodes"][i]["node_id"], std::string("node-") + static_cast<char>('a' + i));
    EXPECT_EQ(doc["nodes"][i]["address"], f.nodes[i]->address());
    EXPECT_EQ(doc["nodes"][i]["backend"], "sim");
    EXPECT_EQ(doc["nodes"][i]["free_vram"], sizes[i]) << r.out;
  }
}

TEST(FleetEndToEnd, AcquireAnywhereLandsOnTheBestFitAndSkipsAFullNode) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  ThreeNodeFleet f;
  ASSERT_TRUE(f.start()) << f.error;
  const std::string g = bin("gpulease") + " --registry " + f.etcd.registry_url() + " ";
  auto small = f.run(g + "lease acquire --vram 200MiB --ttl 60 --json");
  ASSERT_EQ(small.status, 0) << small.err;
  EXPECT_EQ(nlohmann::json::parse(small.out)["node_id"], "node-a") << small.out;
  auto mid = f.run(g + "lease acquire --vram 300MiB --ttl 60 --json");
  ASSERT_EQ(mid.status, 0) << mid.err;
  EXPECT_EQ(nlohmann::json::parse(mid.out)["node_id"], "node-b") << mid.out;
  // node-a holds 200 of its 256 MiB now. Whether or not its record has
  // caught up, a 100 MiB lease does not land there: the directory skips it
  // or node-a answers CAPACITY_EXCEEDED and the next candidate takes it.
  auto skip = f.run(g + "lease acquire --vram 100MiB --ttl 60 --json");
  ASSERT_EQ(skip.status, 0) << skip.err;
  const auto skip_json = nlohmann::json::parse(skip.out);
  EXPECT_EQ(skip_json["node_id"], "node-b") << skip.out;
  // Too big for any node: a clear error.
  auto none = f.run(g + "lease acquire --vram 4GiB --ttl 60");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("CAPACITY_EXCEEDED"), std::string::npos) << none.err;
  // The lease commands find a lease wherever it is.
  auto list = f.run(g + "lease list --json");
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(list.out)["leases"].size(), 3u) << list.out;
  const std::string id = std::to_string(skip_json["lease_id"].get<uint64_t>());
  auto q = f.run(g + "lease query " + id + " --json");
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_EQ(nlohmann::json::parse(q.out)["quota_bytes"], 100 * kMiB);
  EXPECT_EQ(f.run(g + "lease renew " + id + " --ttl 120").status, 0);
  auto rel = f.run(g + "lease release " + id);
  ASSERT_EQ(rel.status, 0) << rel.err;
  auto gone = f.run(g + "lease query " + id);  // found on node-b, which remembers it ended
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find("LEASE_EXPIRED"), std::string::npos) << gone.err;
  auto unknown = f.run(g + "lease query 12345");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("is on no node of fleet 'default'"), std::string::npos) << unknown.err;
  // run places its temporary lease on the fleet too.
  {
    std::ofstream data(f.dir() / "data.bin", std::ios::binary);
    const std::string zeros(4096, '\0');
    data.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  auto run = f.run(g + "run " + std::string(GPULEASE_SOURCE_DIR) +
                   "/kernels/ptx/transform.ptx scale --grid 4 --block 256 --arg inout:" +
                   (f.dir() / "data.bin").string() + ":" + (f.dir() / "out.bin").string() +
                   " --arg i32:1024 --arg f32:2.0");
  EXPECT_EQ(run.status, 0) << run.out << run.err;
  EXPECT_EQ(slurp(f.dir() / "out.bin").size(), 4096u);
  // --node and --registry together: refused.
  auto both = f.run(g + "--node " + f.node('a').address() + " lease list");
  EXPECT_EQ(both.status, 1);
  EXPECT_NE(both.err.find("give one of them"), std::string::npos) << both.err;
}

// Runs recipe 34 over the fleet; calls `at_10` once it reports 10 segments
// done; returns its exit status and output.
ProcessResult recipe34_over_fleet(ThreeNodeFleet& f, const std::function<void()>& at_10) {
  const auto out_path = f.dir() / "recipe34.out";
  const std::string cmd =
      "env -u GPULEASE_NODE GPULEASE_TOKEN=" + f.auth.token_text("fleet:default") +
      " timeout 180 " + bin("recipe34_pipeline") + " --registry " + f.etcd.registry_url() +
      " --segments 60 --leases 3 --kill-after 0 --segment-delay-ms 40 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ProcessResult r;
  if (p == nullptr) return r;
  char line[4096];
  bool fired = false;
  while (std::fgets(line, sizeof line, p) != nullptr) {
    r.out += line;
    if (!fired && std::string(line).find("10 segments done") != std::string::npos) {
      fired = true;
      at_10();
    }
  }
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(FleetEndToEnd, KillNineOfANodeMidJobAndTheRecipe34JobFinishesOnTheOthers) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  ThreeNodeFleet f;
  ASSERT_TRUE(f.start()) << f.error;
  auto r = recipe34_over_fleet(f, [&] { f.node('b').kill9(); });
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("OK: all 60 segments match the CPU reference"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("retried on a fresh lease"), std::string::npos) << r.out;
  // The dead node leaves the directory within its TTL (2 s, no deregistration).
  EXPECT_TRUE(has_nodes(*f.fleet, {"node-a", "node-c"}, 15s));
}

TEST(FleetEndToEnd, TheEtcdLeaderKilledMidJobAndTheJobFinishes) {
  GPULEASE_SKIP_WITHOUT_ETCD();
  ThreeNodeFleet f;
  ASSERT_TRUE(f.start()) << f.error;
  auto r = recipe34_over_fleet(f, [&] {
    const int leader = f.etcd.leader_index();
    if (leader >= 0) f.etcd.kill(static_cast<size_t>(leader));
  });
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("OK: all 60 segments match the CPU reference"), std::string::npos) << r.out;
  // The directory keeps working: a node's VRAM change still reaches a watcher.
  EXPECT_GE(f.etcd.leader_index(), 0);
  auto l = client::LeaseBuilder(*f.fleet).min_vram(900 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(l.ok()) << client::describe(l.error());
  EXPECT_EQ(l->connection().node_info().node_id, "node-c");
  EXPECT_TRUE(f.fleet->wait_until(
      [](const std::vector<FleetNode>& nodes) {
        for (const auto& n : nodes)
          if (n.node_id == "node-c") return n.free_vram() <= 124 * kMiB;
        return false;
      },
      20s));
}

}  // namespace
}  // namespace gpulease::testing
