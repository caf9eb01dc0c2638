// The client's Fleet without etcd: node records, the registry URL, placement
// (pure), and LeaseBuilder(fleet) / JobCoordinator over in-process nodes
// listed in a fixed directory (Fleet::from_nodes). The same paths against a
// real etcd and real node processes: tests/fleet_client_test.cpp.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <set>

#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using client::ChunkContext;
using client::Fleet;
using client::FleetDevice;
using client::FleetNode;
using client::JobCoordinator;
using client::KernelArgs;
using client::LeaseBuilder;
using client::PlacementCandidate;
using client::PlacementConstraints;
using client::rank_candidates;
using client::unwrap;

constexpr uint64_t kMiB = 1ull << 20;

FleetNode node(std::string id, std::vector<FleetDevice> devices, std::string backend = "sim") {
  FleetNode n;
  n.node_id = id;
  n.fleet = "default";
  n.address = "127.0.0.1:1";
  n.backend = std::move(backend);
  n.devices = std::move(devices);
  return n;
}

FleetDevice dev(uint16_t index, uint64_t free_mib, uint8_t cc_major = 8, uint8_t cc_minor = 0,
                uint64_t total_mib = 4096) {
  return FleetDevice{index, "dev", cc_major, cc_minor, total_mib * kMiB, free_mib * kMiB};
}

std::vector<std::string> ids(const std::vector<PlacementCandidate>& c) {
  std::vector<std::string> v;
  for (const auto& x : c) v.push_back(x.node_id + "/" + std::to_string(x.device));
  return v;
}

// ---- Node records ---------------------------------------------------------------

const char* kRecord =
    R"({"node_id":"gpu-a","fleet":"prod","address":"10.0.0.7:7070","backend":"cuda","version":1,)"
    R"("devices":[{"index":0,"name":"NVIDIA H200","compute_capability":[9,0],)"
    R"("total_vram":150000000000,"free_vram":140000000000}],"updated_ms":1764579000000})";

TEST(FleetRecord, ANodeRecordParsesIntoEveryField) {
  auto n = client::parse_node_record(kRecord);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(n->node_id, "gpu-a");
  EXPECT_EQ(n->fleet, "prod");
  EXPECT_EQ(n->address, "10.0.0.7:7070");
  EXPECT_EQ(n->backend, "cuda");
  ASSERT_EQ(n->devices.size(), 1u);
  EXPECT_EQ(n->devices[0].name, "NVIDIA H200");
  EXPECT_EQ(n->devices[0].cc_major, 9);
  EXPECT_EQ(n->devices[0].total_vram, 150000000000ull);
  EXPECT_EQ(n->devices[0].free_vram, 140000000000ull);
  EXPECT_EQ(n->updated_ms, 1764579000000ull);
  // And the record JSON we write reads back the same.
  auto again = client::parse_node_record(client::node_record_json(*n));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *n);
}

TEST(FleetRecord, EveryTruncatedPrefixIsRefusedWithoutACrash) {
  const std::string r = kRecord;
  for (size_t len = 0; len < r.size(); ++len) {
    auto n = client::parse_node_record(std::string_view(r).substr(0, len));
    EXPECT_FALSE(n.ok()) << len;
    EXPECT_EQ(n.status(), client::ClientStatus::local(Status::kInvalidArgument));
  }
}

TEST(FleetRecord, ABadFieldIsRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("node_id":"gpu-a")", R"("node_id":7)"},
      {R"("node_id":"gpu-a")", R"("node_id":"")"},
      {R"("address":"10.0.0.7:7070")", R"("address":"10.0.0.7")"},
      {R"("version":1)", R"("version":2)"},
      {R"("compute_capability":[9,0])", R"("compute_capability":[9])"},
      {R"("compute_capability":[9,0])", R"("compute_capability":[900,0])"},
      {R"("free_vram":140000000000)", R"("free_vram":160000000000)"},
      {R"("free_vram":140000000000)", R"("free_vram":-1)"},
      {R"("index":0)", R"("index":65535)"},
      {R"("backend":"cuda")", R"("backend":")" + std::string(300, 'x') + "\""},
  };
  const std::vector<std::string> names = {
      "node_id",   "node_id",   "address", "version", "compute_capability", "compute_capability",
      "free_vram", "free_vram", "index",   "backend"};
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string r = kRecord;
    const auto at = r.find(cases[i].first);
    ASSERT_NE(at, std::string::npos) << cases[i].first;
    r.replace(at, cases[i].first.size(), cases[i].second);
    auto n = client::parse_node_record(r);
    ASSERT_FALSE(n.ok()) << r;
    EXPECT_EQ(n.status(), client::ClientStatus::local(Status::kInvalidArgument));
    EXPECT_NE(n.error().message().find(names[i]), std::string::npos) << n.error().message();
  }
  EXPECT_FALSE(client::parse_node_record("[]").ok());
  EXPECT_FALSE(client::parse_node_record(std::string(client::kMaxNodeRecordBytes + 1, ' ')).ok());
}

TEST(FleetRecord, TheRegistryUrlNamesEtcdEndpoints) {
  auto one = client::parse_registry_url("etcd://127.0.0.1:2379");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, std::vector<std::string>{"127.0.0.1:2379"});
  auto three = client::parse_registry_url("etcd://a:1,b:2,[::1]:3");
  ASSERT_TRUE(three.ok()) << three.error().message();
  EXPECT_EQ(*three, (std::vector<std::string>{"a:1", "b:2", "[::1]:3"}));
  for (const char* bad :
       {"", "http://a:1", "etcd://", "etcd://a", "etcd://a:1,", "etcd://a:0", "etcd://a:1,,b:2"}) {
    auto r = client::parse_registry_url(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status(), client::ClientStatus::local(Status::kInvalidArgument));
  }
  EXPECT_TRUE(client::check_fleet_name("prod-eu.1_a").ok());
  EXPECT_FALSE(client::check_fleet_name("").ok());
  EXPECT_FALSE(client::check_fleet_name("a/b").ok());
  EXPECT_TRUE(client::check_fleet_name(std::string(58, 'a')).ok());
  EXPECT_FALSE(client::check_fleet_name(std::string(59, 'a')).ok());
  EXPECT_EQ(client::fleet_nodes_prefix("prod"), "/gpulease/prod/nodes/");
}

// ---- Placement --------------------------------------------------------------------

TEST(FleetPlacement, BestFitIsTheDeviceWithTheLeastFreeVramThatStillHolds) {
  const std::vector<FleetNode> nodes = {node("a", {dev(0, 8000), dev(1, 900)}),
                                        node("b", {dev(0, 1200)}), node("c", {dev(0, 500)})};
  PlacementConstraints c;
  c.min_vram = 800 * kMiB;
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"a/1", "b/0", "a/0"}));
  c.min_vram = 9000 * kMiB;
  EXPECT_TRUE(rank_candidates(nodes, c).empty());
}

TEST(FleetPlacement, ConstraintsOnDeviceComputeCapabilityAndBackendFilter) {
  const std::vector<FleetNode> nodes = {node("a", {dev(0, 1000, 7, 5), dev(1, 2000, 9, 0)}),
                                        node("b", {dev(0, 1500, 8, 6)}, "cuda"),
                                        node("c", {dev(0, 100, 8, 0)})};
  PlacementConstraints c;
  c.min_vram = 200 * kMiB;
  c.min_compute_capability = std::make_pair(uint8_t{8}, uint8_t{6});
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"b/0", "a/1"}));
  c.backend = "sim";
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"a/1"}));
  c = {};
  c.min_vram = 1;
  c.device = 0;
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"c/0", "a/0", "b/0"}));
  c.exclude = {"c"};
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"a/0", "b/0"}));
}

TEST(FleetPlacement, TheOrderIsTotalWhateverTheInputOrder) {
  std::vector<FleetNode> nodes = {node("b", {dev(0, 100), dev(1, 100)}), node("a", {dev(0, 100)}),
                                  node("c", {dev(0, 50)})};
  PlacementConstraints c;
  c.min_vram = 10 * kMiB;
  const auto want = std::vector<std::string>{"c/0", "a/0", "b/0", "b/1"};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ids(rank_candidates(nodes, c)), want);
    std::next_permutation(nodes.begin(), nodes.end(), [](const FleetNode& x, const FleetNode& y) {
      return x.node_id < y.node_id;
    });
  }
  // A node listed twice counts once: its most recent record.
  auto stale = node("c", {dev(0, 5000)});
  stale.updated_ms = 1;
  auto fresh = node("c", {dev(0, 50)});
  fresh.updated_ms = 2;
  EXPECT_EQ(ids(rank_candidates({stale, fresh}, c)), std::vector<std::string>{"c/0"});
  EXPECT_EQ(rank_candidates({fresh, stale}, c).front().free_vram, 50 * kMiB);
}

TEST(FleetPlacement, TheCallersLoadSpreadsLeasesBeforeBestFit) {
  const std::vector<FleetNode> nodes = {node("a", {dev(0, 100)}), node("b", {dev(0, 200)}),
                                        node("c", {dev(0, 300)})};
  PlacementConstraints c;
  c.min_vram = 10 * kMiB;
  c.load = {{"a", 1}};
  EXPECT_EQ(ids(rank_candidates(nodes, c)), (std::vector<std::string>{"b/0", "c/0", "a/0"}));
  c.load = {{"a", 1}, {"b", 1}};
  EXPECT_EQ(ids(rank_candidates(nodes, c)).front(), "c/0");
}

TEST(FleetPlacement, OnlyFullUnreachableAndBusyNodesAreSkipped) {
  using client::Error;
  EXPECT_TRUE(client::placement_skips(Error::node(Status::kCapacityExceeded, "")));
  EXPECT_TRUE(client::placement_skips(Error::node(Status::kBusy, "")));
  EXPECT_TRUE(client::placement_skips(Error::connection_lost("")));
  EXPECT_TRUE(client::placement_skips(Error::timeout("")));
  EXPECT_FALSE(client::placement_skips(Error::node(Status::kUnauthenticated, "")));
  EXPECT_FALSE(client::placement_skips(Error::node(Status::kInvalidArgument, "")));
  // A local CAPACITY_EXCEEDED is not a node's answer.
  EXPECT_FALSE(client::placement_skips(Error::local(Status::kCapacityExceeded, "")));
}

// ---- Leases on in-process nodes ---------------------------------------------------

// Three sim nodes of different sizes, each with its own authority (so the
// fleet uses a token per node), listed in a fixed directory.
struct ThreeNodes {
  ThreeNodes() {
    const uint64_t sizes[3] = {256 * kMiB, 512 * kMiB, 1024 * kMiB};
    for (int i = 0; i < 3; ++i) {
      auto cfg = client_test_config();
      cfg.node_id = "node-" + std::string(1, static_cast<char>('a' + i));
      cfg.sim_device_bytes = sizes[i];
      nodes.push_back(std::make_unique<TestNode>(cfg));
    }
  }
  FleetNode record(int i) const {
    FleetNode n;
    n.node_id = "node-" + std::string(1, static_cast<char>('a' + i));
    n.fleet = "default";
    n.address = "127.0.0.1:" + std::to_string(nodes[i]->port());
    n.backend = "sim";
    const uint64_t sizes[3] = {256 * kMiB, 512 * kMiB, 1024 * kMiB};
    n.devices = {FleetDevice{0, "sim", 8, 0, sizes[i], sizes[i]}};
    return n;
  }
  client::FleetOptions options() const {
    client::FleetOptions o;
    o.fleet = "default";
    for (int i = 0; i < 3; ++i)
      o.node_tokens[record(i).node_id] =
          nodes[i]->token("tenant-a", capability::kAllPermissions, 600, 0, 0, record(i).node_id);
    return o;
  }
  Fleet fleet() const { return Fleet::from_nodes({record(0), record(1), record(2)}, options()); }
  std::vector<std::unique_ptr<TestNode>> nodes;
};

std::string node_of(const client::Lease& l) {
  return l.connection().node_info().node_id;
}

TEST(FleetLeases, AcquireAnywhereLandsOnTheBestFit) {
  ThreeNodes three;
  Fleet fleet = three.fleet();
  auto small = LeaseBuilder(fleet).min_vram(100 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(small.ok()) << client::describe(small.error());
  EXPECT_EQ(node_of(*small), "node-a");
  auto mid = LeaseBuilder(fleet).min_vram(300 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(mid.ok()) << client::describe(mid.error());
  EXPECT_EQ(node_of(*mid), "node-b");
  auto big = LeaseBuilder(fleet).min_vram(800 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(big.ok()) << client::describe(big.error());
  EXPECT_EQ(node_of(*big), "node-c");
  EXPECT_EQ(big->granted_bytes(), 800 * kMiB);
}

TEST(FleetLeases, AFullNodeIsSkippedForTheNextCandidate) {
  ThreeNodes three;
  Fleet fleet = three.fleet();
  // Fill node-a behind the directory's back: it still lists 256 MiB free.
  auto filler = connect_client(
      three.nodes[0]->port(),
      three.nodes[0]->token("tenant-b", capability::kAllPermissions, 600, 0, 0, "node-a"));
  auto full = unwrap(LeaseBuilder(filler).min_vram(200 * kMiB).lease_secs(30).acquire());
  auto l = LeaseBuilder(fleet).min_vram(100 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(l.ok()) << client::describe(l.error());
  EXPECT_EQ(node_of(*l), "node-b");
}

TEST(FleetLeases, AnUnreachableNodeIsSkippedAndNothingFitsSaysWhy) {
  ThreeNodes three;
  auto dead = three.record(0);
  dead.node_id = "node-dead";
  dead.address = "127.0.0.1:1";            // nothing listens there
  dead.devices[0].free_vram = 150 * kMiB;  // the best fit, if it answered
  auto o = three.options();
  o.token = three.nodes[0]->token("tenant-a");  // some token for node-dead
  Fleet fleet = Fleet::from_nodes({dead, three.record(0), three.record(1)}, o);
  auto l = LeaseBuilder(fleet).min_vram(100 * kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(l.ok()) << client::describe(l.error());
  EXPECT_EQ(node_of(*l), "node-a");

  auto none = LeaseBuilder(fleet).min_vram(2048 * kMiB).lease_secs(30).acquire();
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status(), Status::kCapacityExceeded);
  EXPECT_NE(none.error().message().find("no registered node"), std::string::npos)
      << none.error().message();
  auto cuda = LeaseBuilder(fleet).min_vram(kMiB).lease_secs(30).backend("cuda").acquire();
  ASSERT_FALSE(cuda.ok());
  EXPECT_NE(cuda.error().message().find("backend cuda"), std::string::npos)
      << cuda.error().message();

  // Only the dead node fits: unreachable, reported as such.
  Fleet only_dead = Fleet::from_nodes({dead}, o);
  auto lost = LeaseBuilder(only_dead).min_vram(kMiB).lease_secs(30).acquire();
  ASSERT_FALSE(lost.ok());
  EXPECT_TRUE(lost.error().is_connection_lost()) << client::describe(lost.error());
  EXPECT_NE(lost.error().message().find("node-dead"), std::string::npos) << lost.error().message();
}

TEST(FleetLeases, ANodeWithoutATokenIsNoCandidateAndARefusedTokenFailsAtOnce) {
  ThreeNodes three;
  auto o = three.options();
  o.node_tokens.erase("node-a");
  Fleet fleet = Fleet::from_nodes({three.record(0), three.record(1)}, o);
  auto l = LeaseBuilder(fleet).min_vram(kMiB).lease_secs(30).acquire();
  ASSERT_TRUE(l.ok()) << client::describe(l.error());
  EXPECT_EQ(node_of(*l), "node-b");
  // node-a's token on node-b: the node refuses it, placement does not hide it.
  o.node_tokens["node-b"] = o.node_tokens.at("node-c");
  Fleet wrong = Fleet::from_nodes({three.record(1)}, o);
  auto refused = LeaseBuilder(wrong).min_vram(kMiB).lease_secs(30).acquire();
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status() == Status::kUnauthenticated ||
              refused.status() == Status::kPermissionDenied)
      << client::describe(refused.error());
  EXPECT_NE(refused.error().message().find("node-b"), std::string::npos);
}

TEST(FleetLeases, ConstraintsApplyOnASingleNodeToo) {
  TestNode n(client_test_config());
  auto conn = connect_client(n.port(), n.token("t"));
  auto cuda = LeaseBuilder(conn).min_vram(kMiB).lease_secs(10).backend("cuda").acquire();
  ASSERT_FALSE(cuda.ok());
  EXPECT_EQ(cuda.status(), client::ClientStatus::local(Status::kUnsupported));
  const auto d = conn.node_info().devices.at(0);
  auto ok = LeaseBuilder(conn)
                .min_vram(kMiB)
                .lease_secs(10)
                .backend("sim")
                .min_compute_capability(d.cc_major, d.cc_minor)
                .acquire();
  EXPECT_TRUE(ok.ok()) << client::describe(ok.error());
  auto newer = LeaseBuilder(conn)
                   .min_vram(kMiB)
                   .lease_secs(10)
                   .min_compute_capability(static_cast<uint8_t>(d.cc_major + 1), 0)
                   .acquire();
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status(), client::ClientStatus::local(Status::kUnsupported));
}

// ---- JobCoordinator over a fleet ------------------------------------------------------

Bytes pipeline_reference(wire::ByteSpan raw, float threshold) {
  const size_t n = raw.size();
  std::vector<float> d(n), s(n);
  for (size_t i = 0; i < n; ++i)
    d[i] = static_cast<float>(std::to_integer<uint8_t>(raw[i])) / 255.0f;
  for (size_t i = 0; i < n; ++i) {
    float c = d[i], l = i > 0 ? d[i - 1] : c, r = i + 1 < n ? d[i + 1] : c;
    float v = (l + c + r) / 3.0f;
    s[i] = v > threshold ? v : 0.0f;
  }
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    float v = std::min(std::max(s[i], 0.0f), 1.0f);
    out[i] = std::byte(static_cast<uint8_t>(std::fma(v, 255.0f, 0.5f)));
  }
  return out;
}

client::Result<Bytes> run_pipeline(ChunkContext& c, const std::string& ptx_text, float threshold) {
  auto& s = c.session();
  auto mod = c.module("pipeline", wire::as_bytes(ptx_text));
  if (!mod) return std::move(mod).error();
  const auto n = static_cast<uint32_t>(c.input().size());
  client::DeviceBuffer bufs[4];
  const uint64_t sizes[4] = {n, n * 4ull, n * 4ull, n};
  for (int i = 0; i < 4; ++i) {
    auto b = s.mem_alloc(sizes[i]);
    if (!b) return std::move(b).error();
    bufs[i] = *b;
  }
  (void)s.mem_write(bufs[0], 0, c.input());
  const client::Dim3 grid{(n + 127) / 128, 1, 1}, block{128, 1, 1};
  (void)s.launch_with_args(*mod, "decode", grid, block,
                           KernelArgs().push_buffer(bufs[0]).push_buffer(bufs[1]).push_u32(n));
  (void)s.launch_with_args(
      *mod, "denoise", grid, block,
      KernelArgs().push_buffer(bufs[1]).push_buffer(bufs[2]).push_u32(n).push_f32(threshold));
  (void)s.launch_with_args(*mod, "encode", grid, block,
                           KernelArgs().push_buffer(bufs[2]).push_buffer(bufs[3]).push_u32(n));
  if (auto r = s.sync(); !r) return std::move(r).error();
  auto result = s.mem_read(bufs[3], 0, n);
  for (const auto& b : bufs) (void)s.mem_free(b);
  return result;
}

std::vector<Bytes> make_inputs(size_t count, size_t size) {
  std::vector<Bytes> v(count);
  uint32_t x = 34;
  for (auto& in : v) {
    in.resize(size);
    for (auto& b : in) {
      x = x * 1664525u + 1013904223u;
      b = std::byte(x >> 24);
    }
  }
  return v;
}

TEST(FleetJobs, AJobSpreadsItsLeasesOverTheFleet) {
  ThreeNodes three;
  Fleet fleet = three.fleet();
  const std::string ptx_text = ptx("pipeline.ptx");
  auto inputs = make_inputs(30, 700);
  JobCoordinator::Options o;
  o.fleet = fleet;
  o.workers = 3;
  o.lease.min_vram = 4 * kMiB;
  JobCoordinator jobs(o);
  // Each worker's first chunk waits (bounded) until all three hold a lease,
  // so every lease gets work whatever the scheduling.
  std::mutex mu;
  std::condition_variable cv;
  std::set<uint64_t> leases;
  auto out = jobs.run(inputs, [&](ChunkContext& c) {
    {
      std::unique_lock lock(mu);
      leases.insert(c.lease().lease_id());
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(30), [&] { return leases.size() >= 3; });
    }
    return run_pipeline(c, ptx_text, 0.1f);
  });
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ((*out)[i], pipeline_reference(inputs[i], 0.1f)) << i;
  const auto st = jobs.stats();
  EXPECT_EQ(st.leases_acquired, 3u);
  EXPECT_EQ(st.chunks_by_node.size(), 3u) << "one lease on each node";
}

TEST(FleetJobs, ANodeThatStopsMidJobHasItsChunksRunOnTheOthers) {
  ThreeNodes three;
  Fleet fleet = three.fleet();
  const std::string ptx_text = ptx("pipeline.ptx");
  auto inputs = make_inputs(40, 700);
  JobCoordinator::Options o;
  o.fleet = fleet;
  o.workers = 3;
  o.lease.min_vram = 4 * kMiB;
  o.retry.initial_backoff = std::chrono::milliseconds(5);
  std::atomic<int> done{0};
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;         // GUARDED_BY(mu)
  std::set<std::string> after;  // GUARDED_BY(mu): nodes chunks completed on after the stop
  std::thread stopper;
  o.on_chunk_done = [&](size_t, uint64_t) {
    if (done.fetch_add(1) + 1 == 8) {
      // node-b stops (its leases end, its connections close) while the job runs.
      stopper = std::thread([&] {
        three.nodes[1]->stop();
        std::lock_guard lock(mu);
        stopped = true;
        cv.notify_all();
      });
    }
  };
  JobCoordinator jobs(o);
  auto out = jobs.run(inputs, [&](ChunkContext& c) -> client::Result<Bytes> {
    bool started_after = false;
    if (done >= 8) {  // the rest of the job runs after node-b is gone (bounded wait)
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(60), [&] { return stopped; });
      started_after = stopped;
    }
    auto r = run_pipeline(c, ptx_text, 0.1f);
    std::lock_guard lock(mu);
    if (r && started_after) after.insert(node_of(c.lease()));
    return r;
  });
  if (stopper.joinable()) stopper.join();
  ASSERT_TRUE(out.ok()) << client::describe(out.error());
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ((*out)[i], pipeline_reference(inputs[i], 0.1f)) << i;
  EXPECT_TRUE(stopped);
  // Chunks begun after the stop succeeded only on the other nodes.
  EXPECT_EQ(after.count("node-b"), 0u);
  EXPECT_FALSE(after.empty());
  EXPECT_EQ(jobs.stats().chunks_done, inputs.size());
}

}  // namespace
}  // namespace gpulease::testing
