// gpulease_etcd against a real etcd on loopback (tests/etcd_cluster.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "etcd_cluster.hpp"
#include "gpulease/etcd/client.hpp"

using namespace gpulease;
using namespace std::chrono_literals;
using etcd::ErrorCode;

namespace {

// Collects watch events; waits (bounded) for a count.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<etcd::WatchEvent> events;
  std::vector<etcd::WatchResponse> compactions;

  void operator()(const etcd::WatchResponse& r) {
    std::lock_guard lk(mu);
    if (r.compacted) compactions.push_back(r);
    for (const auto& e : r.events) events.push_back(e);
    cv.notify_all();
  }
  bool wait_for(size_t n, std::chrono::milliseconds limit = 10s) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, limit, [&] { return events.size() >= n; });
  }
  bool wait_compaction(std::chrono::milliseconds limit = 10s) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, limit, [&] { return !compactions.empty(); });
  }
  std::vector<etcd::WatchEvent> snapshot() {
    std::lock_guard lk(mu);
    return events;
  }
};

}  // namespace

TEST(EtcdUrl, ParsesTheRegistryForm) {
  auto r = etcd::parse_registry_url("etcd://127.0.0.1:2379,[::1]:2380,etcd.local:1");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].host, "127.0.0.1");
  EXPECT_EQ((*r)[0].port, 2379);
  EXPECT_EQ((*r)[1].host, "::1");
  EXPECT_EQ((*r)[1].to_string(), "[::1]:2380");
  EXPECT_EQ((*r)[2].host, "etcd.local");
  auto bare = etcd::parse_registry_url("127.0.0.1:2379");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->size(), 1u);
}

TEST(EtcdUrl, RefusesBadForms) {
  for (const char* bad :
       {"", "etcd://", "http://127.0.0.1:2379", "etcd://127.0.0.1", "etcd://127.0.0.1:2379,",
        "etcd://,127.0.0.1:1", "etcd://h:99999", "etcd://a:1,,b:2"}) {
    auto r = etcd::parse_registry_url(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(r.error().message.find("etcd://HOST:PORT"), std::string::npos) << bad;
  }
}

TEST(EtcdUrl, PrefixEnd) {
  EXPECT_EQ(etcd::prefix_end("/a/"), "/a0");
  EXPECT_EQ(etcd::prefix_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(etcd::prefix_end(""), std::string(1, '\0'));
  EXPECT_EQ(etcd::prefix_end(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(EtcdClient, RefusesBadOptions) {
  auto none = etcd::Client::create({});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kInvalidArgument);
  etcd::ClientOptions o;
  o.endpoints = {{"127.0.0.1", 1}};
  o.request_timeout = 0ms;
  auto zero = etcd::Client::create(o);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument);
}

TEST(EtcdClient, UnreachableEndpointsAreUnavailableAndNamed) {
  auto ports = test::free_loopback_ports(2);  // closed again: nothing listens
  ASSERT_EQ(ports.size(), 2u);
  etcd::ClientOptions o;
  o.endpoints = {{"127.0.0.1", ports[0]}, {"127.0.0.1", ports[1]}};
  auto c = etcd::Client::create(o);
  ASSERT_TRUE(c);
  auto r = (*c)->put("k", "v");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(r.error().outcome_unknown);
  EXPECT_NE(r.error().message.find("2 tried"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::to_string(ports[1])), std::string::npos);
  auto t = (*c)->txn(etcd::Txn{});
  ASSERT_FALSE(t);
  EXPECT_FALSE(t.error().outcome_unknown);  // never connected: nothing was sent
}

class EtcdSingle : public ::testing::Test {
 protected:
  void SetUp() override {
    GPULEASE_SKIP_WITHOUT_ETCD();
    ASSERT_TRUE(etcd_.start(1)) << etcd_.last_error();
    client_ = etcd_.client();
    ASSERT_NE(client_, nullptr);
  }
  test::EtcdCluster etcd_;
  std::unique_ptr<etcd::Client> client_;
};

TEST_F(EtcdSingle, PutGetRangeDelete) {
  auto& c = *client_;
  const std::string binkey("/t/\x00\xff\x01", 6);
  const std::string binval("\x00\x01\xfe\xff value", 10);
  auto p = c.put(binkey, binval);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_GT(p->revision, 0);
  ASSERT_TRUE(c.put("/t/a", "1"));
  ASSERT_TRUE(c.put("/t/b", ""));
  ASSERT_TRUE(c.put("/u/a", "other"));

  auto g = c.get(binkey);
  ASSERT_TRUE(g);
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->value, binval);
  EXPECT_EQ((*g)->key, binkey);
  EXPECT_EQ((*g)->version, 1);

  auto missing = c.get("/t/none");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());

  auto r = c.range_prefix("/t/");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->kvs.size(), 3u);
  EXPECT_EQ(r->count, 3);
  std::set<std::string> keys;
  for (const auto& kv : r->kvs) keys.insert(kv.key);
  EXPECT_EQ(keys, (std::set<std::string>{binkey, "/t/a", "/t/b"}));
  EXPECT_LT(r->kvs[1].key, r->kvs[2].key);  // etcd sorts by key

  auto p2 = c.put("/t/a", "2", 0, /*prev_kv=*/true);
  ASSERT_TRUE(p2);
  ASSERT_TRUE(p2->prev_kv.has_value());
  EXPECT_EQ(p2->prev_kv->value, "1");

  auto d = c.del_prefix("/t/");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->deleted, 3);
  auto after = c.range_prefix("/t/");
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->kvs.empty());
  auto u = c.get("/u/a");
  ASSERT_TRUE(u && u->has_value());
  EXPECT_EQ((*u)->value, "other");
}

TEST_F(EtcdSingle, TxnCreateIfAbsentThenCompareModRevision) {
  auto& c = *client_;
  const std::string key = "/gpulease/f/idempotency/r1";
  etcd::Txn reserve;
  reserve.compare = {etcd::Compare::create_revision(key, etcd::Compare::Op::kEqual, 0)};
  reserve.success = {etcd::TxnOp::put(key, "reserved-by-A")};
  reserve.failure = {etcd::TxnOp::range(key)};
  auto first = c.txn(reserve);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(first->succeeded);
  ASSERT_EQ(first->responses.size(), 1u);
  EXPECT_EQ(first->responses[0].kind, etcd::TxnOp::Kind::kPut);

  reserve.success = {etcd::TxnOp::put(key, "reserved-by-B")};
  auto second = c.txn(reserve);
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->responses.size(), 1u);
  ASSERT_EQ(second->responses[0].kind, etcd::TxnOp::Kind::kRange);
  ASSERT_EQ(second->responses[0].range.kvs.size(), 1u);
  const auto fence = second->responses[0].range.kvs[0].mod_revision;
  EXPECT_EQ(second->responses[0].range.kvs[0].value, "reserved-by-A");
  EXPECT_EQ(fence, first->revision);

  // complete with the right fence, then a stale fence fails.
  etcd::Txn complete;
  complete.compare = {etcd::Compare::mod_revision(key, etcd::Compare::Op::kEqual, fence)};
  complete.success = {etcd::TxnOp::put(key, "complete")};
  auto ok = c.txn(complete);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->succeeded);
  auto stale = c.txn(complete);
  ASSERT_TRUE(stale);
  EXPECT_FALSE(stale->succeeded);
  EXPECT_TRUE(stale->responses.empty());

  // value compare and a delete branch.
  etcd::Txn del;
  del.compare = {etcd::Compare::value_of(key, etcd::Compare::Op::kEqual, "complete")};
  del.success = {etcd::TxnOp::del(key)};
  auto d = c.txn(del);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->succeeded);
  ASSERT_EQ(d->responses.size(), 1u);
  EXPECT_EQ(d->responses[0].deleted, 1);
}

TEST_F(EtcdSingle, LeasesKeepAliveRevokeAndExpiry) {
  auto& c = *client_;
  auto g = c.lease_grant(2);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_NE(g->id, 0);
  EXPECT_EQ(g->ttl, 2);
  ASSERT_TRUE(c.put("/l/a", "x", g->id));
  auto kv = c.get("/l/a");
  ASSERT_TRUE(kv && kv->has_value());
  EXPECT_EQ((*kv)->lease, g->id);
  auto ka = c.lease_keepalive(g->id);
  ASSERT_TRUE(ka) << ka.error().message;
  EXPECT_EQ(*ka, 2);
  ASSERT_TRUE(c.lease_revoke(g->id));
  auto gone = c.get("/l/a");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  auto ka2 = c.lease_keepalive(g->id);
  ASSERT_FALSE(ka2);
  EXPECT_EQ(ka2.error().code, ErrorCode::kNotFound);
  auto rv2 = c.lease_revoke(g->id);
  ASSERT_FALSE(rv2);
  EXPECT_EQ(rv2.error().code, ErrorCode::kNotFound);

  // A lease left alone expires with its key (bounded wait: TTL 1 s).
  auto e = c.lease_grant(1);
  ASSERT_TRUE(e);
  ASSERT_TRUE(c.put("/l/b", "y", e->id));
  bool expired = false;
  for (int i = 0; i < 100 && !expired; ++i) {
    auto r = c.get("/l/b");
    ASSERT_TRUE(r);
    expired = !r->has_value();
    if (!expired) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(expired);

  auto bad = c.lease_grant(0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  auto put_dead = c.put("/l/c", "z", e->id);  // expired lease
  ASSERT_FALSE(put_dead);
  EXPECT_EQ(put_dead.error().code, ErrorCode::kNotFound);
}

TEST_F(EtcdSingle, WatchDeliversPutsAndDeletesInOrderAndStopsCleanly) {
  auto& c = *client_;
  ASSERT_TRUE(c.put("/w/before", "0"));
  Collector col;
  etcd::WatchOptions o;
  o.key = "/w/";
  o.range_end = etcd::prefix_end("/w/");
  o.prev_kv = true;
  auto w = c.watch(o, std::ref(col));
  ASSERT_TRUE(w) << w.error().message;
  for (int i = 0; i < 50 && !(*w)->connected(); ++i) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE((*w)->connected());
  ASSERT_TRUE(c.put("/w/a", "1"));
  ASSERT_TRUE(c.put("/w/a", "2"));
  ASSERT_TRUE(c.put("/x/other", "not watched"));
  ASSERT_TRUE(c.del("/w/a"));
  ASSERT_TRUE(col.wait_for(3));
  auto ev = col.snapshot();
  ASSERT_EQ(ev.size(), 3u);  // nothing from before the watch, nothing outside the prefix
  EXPECT_EQ(ev[0].type, etcd::WatchEvent::Type::kPut);
  EXPECT_EQ(ev[0].kv.value, "1");
  EXPECT_EQ(ev[1].kv.value, "2");
  ASSERT_TRUE(ev[1].prev_kv.has_value());
  EXPECT_EQ(ev[1].prev_kv->value, "1");
  EXPECT_EQ(ev[2].type, etcd::WatchEvent::Type::kDelete);
  EXPECT_EQ(ev[2].kv.key, "/w/a");
  EXPECT_LT(ev[0].kv.mod_revision, ev[1].kv.mod_revision);
  EXPECT_EQ((*w)->next_revision(), ev[2].kv.mod_revision + 1);
  (*w)->stop();
  EXPECT_FALSE((*w)->connected());
  ASSERT_TRUE(c.put("/w/late", "x"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(col.snapshot().size(), 3u);  // stopped: nothing more arrives
}

TEST_F(EtcdSingle, WatchFromARevisionReplaysHistory) {
  auto& c = *client_;
  auto p1 = c.put("/h/a", "1");
  ASSERT_TRUE(p1);
  ASSERT_TRUE(c.put("/h/b", "2"));
  Collector col;
  etcd::WatchOptions o;
  o.key = "/h/";
  o.range_end = etcd::prefix_end("/h/");
  o.start_revision = p1->revision;
  auto w = c.watch(o, std::ref(col));
  ASSERT_TRUE(w);
  ASSERT_TRUE(col.wait_for(2));
  auto ev = col.snapshot();
  EXPECT_EQ(ev[0].kv.key, "/h/a");
  EXPECT_EQ(ev[1].kv.key, "/h/b");
}

TEST_F(EtcdSingle, WatchFromACompactedRevisionSaysSo) {
  auto& c = *client_;
  auto p1 = c.put("/cmp/a", "1");
  ASSERT_TRUE(p1);
  auto p2 = c.put("/cmp/a", "2");
  ASSERT_TRUE(p2);
  ASSERT_TRUE(c.compact(p2->revision));
  Collector col;
  etcd::WatchOptions o;
  o.key = "/cmp/a";
  o.start_revision = p1->revision;
  std::atomic<int> errors{0};
  auto w = c.watch(o, std::ref(col), [&](const etcd::Error&) { ++errors; });
  ASSERT_TRUE(w);
  ASSERT_TRUE(col.wait_compaction());
  EXPECT_EQ(col.compactions[0].compact_revision, p2->revision);
  ASSERT_TRUE(col.wait_for(1));  // then it resumes at the compact revision
  EXPECT_EQ(col.snapshot()[0].kv.value, "2");
  auto bad = c.compact(0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(EtcdSingle, ConcurrentCallersShareOneClient) {
  auto& c = *client_;
  constexpr int kThreads = 4, kEach = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!c.put("/mt/" + std::to_string(t) + "/" + std::to_string(i), "v")) ++failures;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto r = c.range_prefix("/mt/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->count, kThreads * kEach);
}

TEST_F(EtcdSingle, WatchRetriesWhileEtcdIsDownAndResumesWithoutLoss) {
  auto& c = *client_;
  Collector col;
  std::atomic<int> errors{0};
  etcd::WatchOptions o;
  o.key = "/r/";
  o.range_end = etcd::prefix_end("/r/");
  o.reconnect_max = 200ms;
  auto w = c.watch(o, std::ref(col), [&](const etcd::Error&) { ++errors; });
  ASSERT_TRUE(w);
  ASSERT_TRUE(c.put("/r/1", "a"));
  ASSERT_TRUE(col.wait_for(1));
  etcd_.kill(0);
  auto down = c.put("/r/x", "y");
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable);
  for (int i = 0; i < 100 && errors.load() < 2; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_GE(errors.load(), 2);  // broken stream, then refused reconnections
  ASSERT_TRUE(etcd_.restart(0)) << etcd_.last_error();
  ASSERT_TRUE(c.put("/r/2", "b"));
  ASSERT_TRUE(col.wait_for(2));
  auto ev = col.snapshot();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].kv.key, "/r/2");
  EXPECT_GE((*w)->connects(), 2u);
}

class EtcdThree : public ::testing::Test {
 protected:
  void SetUp() override {
    GPULEASE_SKIP_WITHOUT_ETCD();
    ASSERT_TRUE(etcd_.start(3)) << etcd_.last_error();
    client_ = etcd_.client();
    ASSERT_NE(client_, nullptr);
  }
  test::EtcdCluster etcd_;
  std::unique_ptr<etcd::Client> client_;
};

TEST_F(EtcdThree, FailsOverWhenAMemberDiesAndTheWatchMissesNothing) {
  auto& c = *client_;
  Collector col;
  etcd::WatchOptions o;
  o.key = "/f/";
  o.range_end = etcd::prefix_end("/f/");
  o.reconnect_max = 200ms;
  auto w = c.watch(o, std::ref(col));
  ASSERT_TRUE(w);
  ASSERT_TRUE(c.put("/f/0", "before"));  // sticks to member 0 (it answered)
  ASSERT_TRUE(col.wait_for(1));
  etcd_.kill(0);  // the member both the client and the watch use (2 of 3 keep quorum)
  // Member 0 may have been the leader: until the other two elect one (~1 s,
  // election timeout 500 ms) a put is refused as unavailable, so retry, bounded.
  for (int i = 1; i <= 20; ++i) {
    auto p = c.put("/f/" + std::to_string(i), "after");
    for (int t = 0; t < 50 && !p && p.error().code == ErrorCode::kUnavailable; ++t) {
      std::this_thread::sleep_for(100ms);
      p = c.put("/f/" + std::to_string(i), "after");
    }
    ASSERT_TRUE(p) << p.error().message;
  }
  ASSERT_TRUE(col.wait_for(21));
  auto ev = col.snapshot();
  ASSERT_EQ(ev.size(), 21u);
  for (size_t i = 1; i < ev.size(); ++i)
    EXPECT_LT(ev[i - 1].kv.mod_revision, ev[i].kv.mod_revision);
  EXPECT_GE((*w)->connects(), 2u);
}

TEST_F(EtcdThree, TheLeaderKilledLeavesTheClientWorking) {
  auto& c = *client_;
  const int leader = etcd_.leader_index();
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(c.put("/k/a", "1"));
  etcd_.kill(static_cast<size_t>(leader));
  // A new leader is elected within ~1 s (election timeout 500 ms); calls in
  // between fail over or report unavailable, bounded.
  bool ok = false;
  for (int i = 0; i < 50 && !ok; ++i) {
    ok = static_cast<bool>(c.put("/k/b", "2"));
    if (!ok) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(ok);
  auto g = c.get("/k/a");
  ASSERT_TRUE(g && g->has_value());
  EXPECT_EQ((*g)->value, "1");
  EXPECT_GE(etcd_.leader_index(), 0);
}
