// Attacks found by the attack session of issue 11 after the first round of
// defences, each over loopback against an in-process node (sim backend):
// a tenant makes the node hold host memory it has not paid for through the
// work it queues (a launch's block state, queued launch parameters, memory
// tables rebuilt per launch, tiny allocations), or takes every connection
// slot without a token. Every loop is bounded; each test fails without its
// fix (the attack is accepted where it must be refused), and a well-behaved
// tenant completes a full session with correct results alongside.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "server_attack_util.hpp"
#include "server_test_util.hpp"

namespace gpulease::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPtxHeader = ".version 7.0\n.target sm_70\n.address_size 64\n";

// `spin(flag)` loops while *flag == 0; `noop()` returns; `hog()` declares
// `local` bytes of .local per thread; `fat(...)` takes 8 one-byte
// parameters aligned to 4096 (28673 bytes of parameter space).
std::string attack_ptx(uint32_t local) {
  std::string s = kPtxHeader;
  s += R"(.visible .entry spin(.param .u64 p)
{
  .reg .pred %p<2>;
  .reg .b32 %r<2>;
  .reg .b64 %rd<3>;
  ld.param.u64 %rd1, [p];
  cvta.to.global.u64 %rd2, %rd1;
L1:
  ld.volatile.global.u32 %r1, [%rd2];
  setp.eq.s32 %p1, %r1, 0;
  @%p1 bra L1;
  ret;
}
.visible .entry noop()
{
  ret;
}
.visible .entry fat(.param .align 4096 .b8 q0[1], .param .align 4096 .b8 q1[1],
  .param .align 4096 .b8 q2[1], .param .align 4096 .b8 q3[1], .param .align 4096 .b8 q4[1],
  .param .align 4096 .b8 q5[1], .param .align 4096 .b8 q6[1], .param .align 4096 .b8 q7[1])
{
  ret;
}
.visible .entry hog()
{
  .local .align 8 .b8 arr[)";
  s += std::to_string(local);
  s += R"(];
  ret;
}
)";
  return s;
}

// A lease of `quota` bytes whose `spin` kernel runs until the lease ends, so
// everything launched after it stays queued.
struct SpinningLease {
  RawClient c;
  Bytes tok;
  uint64_t lease = 0, mod = 0, flag = 0;
  SpinningLease(TestNode& node, const std::string& tenant, uint64_t quota, uint32_t local = 8)
      : c(node.port()), tok(node.token(tenant)) {
    lease = acquire(c, tok, quota, 120);
    flag = alloc(c, lease, tok, 4);
    mod = load_module(c, lease, tok, attack_ptx(local));
    auto r = c.call(Opcode::kLaunch, lease, tok, launch_req(mod, "spin", 1, 1, Args().buf(flag)));
    EXPECT_EQ(r.status(), Status::kOk) << r.message();
  }
  RawReply launch(const std::string& kernel, uint32_t block = 1, const Args& args = Args()) {
    return c.call(Opcode::kLaunch, lease, tok, launch_req(mod, kernel, 1, block, args));
  }
  void release() {
    EXPECT_EQ(c.call(Opcode::kLeaseRelease, lease, tok, wire::Empty{}).status(), Status::kOk);
  }
};

// ---- A launch's block state -----------------------------------------------------
// Found: a 4 KiB lease launched a 1024-thread block with 63 KiB of .local per
// thread: the sim held 64 MiB for the running block (32 such leases: 1.7 GiB
// of RSS for 128 KiB of quota).

TEST(Hostile, ABlocksStateMustFitWhatTheLeasePaysFor) {
  TestNode node;
  const size_t baseline = rss_bytes();
  RawClient c(node.port());
  Bytes tok = node.token("mallory");
  uint64_t lease = acquire(c, tok, 64 << 10);
  uint64_t mod = load_module(c, lease, tok, attack_ptx(60000));
  // 1024 threads x 60000 bytes: about 61 MiB for one block.
  auto r = c.call(Opcode::kLaunch, lease, tok, launch_req(mod, "hog", 1, 1024, Args()));
  EXPECT_EQ(r.status(), Status::kLaunchFailed) << r.message();
  EXPECT_NE(r.message().find("pays for"), std::string::npos) << r.message();
  // Nothing else changed: the lease still works, and a block that fits runs:
  // 256 threads x 60000 bytes (15 MiB) is within the launch allowance, as an
  // ordinary kernel's many registers are.
  EXPECT_EQ(c.call(Opcode::kLaunch, lease, tok, launch_req(mod, "hog", 1, 256, Args())).status(),
            Status::kOk);
  auto s = c.call(Opcode::kSync, lease, tok, wire::Empty{});
  EXPECT_EQ(s.status(), Status::kOk) << s.message();
  good_session(node);
  EXPECT_EQ(c.call(Opcode::kLeaseRelease, lease, tok, wire::Empty{}).status(), Status::kOk);
  if (kRssTellsTheNodesMemory) {
    EXPECT_LT(rss_bytes(), baseline + (48u << 20));
  }
}

// ---- Queued launches ------------------------------------------------------------
// Found: behind a spinning kernel, a 4 KiB lease queued 1023 launches of a
// kernel with 28 KiB of parameter space: 29 MiB held per lease (16 leases:
// 456 MiB for 64 KiB of quota).

TEST(Hostile, QueuedLaunchesHoldBoundedParameterBytes) {
  TestNode node;
  SpinningLease sp(node, "mallory", 4096);
  Args fat;
  for (int i = 0; i < 8; ++i) fat.scalar<uint8_t>(0);
  int accepted = 0;
  RawReply refused;
  for (int i = 0; i < 1000; ++i) {
    auto r = sp.launch("fat", 1, fat);
    if (r.status() != Status::kOk) {
      refused = r;
      break;
    }
    ++accepted;
  }
  // 2 MiB of queued launches at about 29 KiB each.
  EXPECT_LT(accepted, 100);
  EXPECT_EQ(refused.status(), Status::kLaunchFailed) << refused.message();
  EXPECT_NE(refused.message().find("sync first"), std::string::npos) << refused.message();
  // Small launches still queue (their parameters are a few bytes).
  good_session(node);
  sp.release();
}

// ---- Memory tables rebuilt per launch -------------------------------------------
// Found: behind a spinning kernel, a lease with 65000 one-byte buffers
// alternated MEM_FREE and LAUNCH: each launch held its own copy of the
// allocation table (2.6 MB each): 2.5 GB of RSS after 1000 launches for a
// 69 KB quota, and 38 ms of a network thread per launch.

TEST(Hostile, FreeThenLaunchCannotMultiplyTheMemoryTable) {
  TestNode node;
  SpinningLease sp(node, "mallory", 4u << 20);
  std::vector<uint64_t> bufs;
  for (int i = 0; i < 4096; ++i) bufs.push_back(alloc(sp.c, sp.lease, sp.tok, 256));
  int accepted = 0;
  RawReply refused;
  for (int i = 0; i < 1000 && !bufs.empty(); ++i) {
    EXPECT_EQ(
        sp.c.call(Opcode::kMemFree, sp.lease, sp.tok, wire::HandleRequest{bufs.back()}).status(),
        Status::kOk);
    bufs.pop_back();
    auto r = sp.launch("noop");
    if (r.status() != Status::kOk) {
      refused = r;
      break;
    }
    ++accepted;
  }
  // Each launch after a free needs a table of ~4096 entries (~160 KiB).
  EXPECT_LT(accepted, 100);
  EXPECT_EQ(refused.status(), Status::kLaunchFailed) << refused.message();
  EXPECT_NE(refused.message().find("sync first"), std::string::npos) << refused.message();
  good_session(node);
  sp.release();
}

// ---- Tiny allocations -------------------------------------------------------------
// Found: a 64 KiB lease held 65536 one-byte buffers: 14 MiB of bookkeeping
// (about 210 bytes each) for 64 KiB of quota; 64 such leases per tenant.

TEST(Hostile, TinyAllocationsPayForTheirBookkeeping) {
  TestNode node;
  RawClient c(node.port());
  Bytes tok = node.token("mallory");
  uint64_t lease = acquire(c, tok, 64 << 10);
  int accepted = 0;
  RawReply refused;
  for (int i = 0; i < 1000; ++i) {
    auto r = c.call(Opcode::kMemAlloc, lease, tok, wire::MemAllocRequest{1});
    if (r.status() != Status::kOk) {
      refused = r;
      break;
    }
    ++accepted;
  }
  // At least 256 bytes each: 256 of them fill 64 KiB.
  EXPECT_EQ(accepted, 256);
  EXPECT_EQ(refused.status(), Status::kAllocFailed) << refused.message();
  // A large allocation is charged its size: the lease is full, nothing else.
  auto q = c.call(Opcode::kLeaseQuery, lease, tok, wire::Empty{});
  EXPECT_EQ(q.status(), Status::kOk);
  good_session(node);
  EXPECT_EQ(c.call(Opcode::kLeaseRelease, lease, tok, wire::Empty{}).status(), Status::kOk);
  // The quota came back: a new lease of the same size takes 64 KiB at once.
  uint64_t again = acquire(c, tok, 64 << 10);
  EXPECT_NE(alloc(c, again, tok, 64 << 10), 0u);
}

// ---- Connection slots ---------------------------------------------------------------
// Found: 1024 connections from 17 loopback addresses that never sent a byte
// took every slot: every tenant was refused at accept until the idle
// timeout (300 s), and 64 from one address locked out everyone behind it.

server::NodeConfig few_slots() {
  auto c = TestNode::small_config();
  c.max_connections = 16;
  c.max_connections_per_ip = 8;
  return c;
}

// Waits until the node has accepted `n` connections (they count at once).
bool node_holds(TestNode& node, size_t n) {
  return eventually([&] { return node.server().connections() >= n; });
}

TEST(Hostile, TokenlessPeersCannotHoldEveryConnectionSlot) {
  TestNode node(few_slots());
  std::vector<std::unique_ptr<Sock>> silent;
  for (const char* src : {"127.0.1.1", "127.0.1.2"}) {
    for (int i = 0; i < 8; ++i) {
      silent.push_back(std::make_unique<Sock>(node.port(), src));
      ASSERT_TRUE(silent.back()->ok());
    }
  }
  ASSERT_TRUE(node_holds(node, 16));
  // Every slot is taken by a peer that never presented a token: a tenant
  // still gets in (the oldest such connection makes room) and completes a
  // whole session, twice.
  good_session(node);
  good_session(node);
  EXPECT_TRUE(silent.front()->closed_within(5s));
  // The limit still holds: never more than 16 connections at once.
  EXPECT_TRUE(eventually([&] { return node.server().connections() <= 16; }));
}

TEST(Hostile, TokenlessPeersCannotHoldEverySlotOfAnAddress) {
  TestNode node(few_slots());
  // Eight silent connections from 127.0.0.1, the address the tenant uses.
  std::vector<std::unique_ptr<Sock>> silent;
  for (int i = 0; i < 8; ++i) {
    silent.push_back(std::make_unique<Sock>(node.port(), "127.0.0.1"));
    ASSERT_TRUE(silent.back()->ok());
  }
  ASSERT_TRUE(node_holds(node, 8));
  good_session(node);
  EXPECT_TRUE(silent.front()->closed_within(5s));
}

TEST(Hostile, ConnectionsThatPresentedATokenAreNeverEvicted) {
  TestNode node(few_slots());
  // Eight tenant connections from one address, each with a verified token.
  std::vector<std::unique_ptr<RawClient>> tenants;
  Bytes tok = node.token("bob");
  for (int i = 0; i < 8; ++i) {
    tenants.push_back(std::make_unique<RawClient>(node.port()));
    EXPECT_EQ(tenants.back()->call(Opcode::kLeaseList, 0, tok, wire::Empty{}).status(),
              Status::kOk);
  }
  // A ninth from that address is refused at accept (no slot can be freed).
  RawClient extra(node.port());
  EXPECT_TRUE(extra.closed_by_peer());
  // The eight keep working.
  for (auto& t : tenants)
    EXPECT_EQ(t->call(Opcode::kLeaseList, 0, tok, wire::Empty{}).status(), Status::kOk);
}

TEST(Hostile, ATenantCannotTakeEveryConnectionSlot) {
  auto cfg = few_slots();
  cfg.max_connections_per_ip = 16;
  cfg.max_connections_per_tenant = 4;
  TestNode node(cfg);
  Bytes tok = node.token("mallory");
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawClient>(node.port()));
    EXPECT_EQ(held.back()->call(Opcode::kLeaseList, 0, tok, wire::Empty{}).status(), Status::kOk);
  }
  // A fifth connection of the tenant is answered BUSY and closed.
  RawClient fifth(node.port());
  auto r = fifth.call(Opcode::kLeaseList, 0, tok, wire::Empty{});
  EXPECT_EQ(r.status(), Status::kBusy) << r.message();
  EXPECT_NE(r.message().find("per-tenant limit"), std::string::npos) << r.message();
  EXPECT_TRUE(fifth.closed_by_peer());
  // Its four keep working, another tenant gets in, and a closed one frees
  // its slot for the tenant.
  for (auto& c : held)
    EXPECT_EQ(c->call(Opcode::kLeaseList, 0, tok, wire::Empty{}).status(), Status::kOk);
  good_session(node);
  held.pop_back();
  EXPECT_TRUE(eventually([&] {
    RawClient again(node.port());
    return again.call(Opcode::kLeaseList, 0, tok, wire::Empty{}).status() == Status::kOk;
  }));
}

// ---- Failed token verifications ------------------------------------------------------
// Found: 4 connections sending tokens with bad signatures made the node run
// about 56k Ed25519 checks a second: good sessions went from 5 ms to
// 300-550 ms on 2 cores, and nothing ever stopped the flood.

server::NodeConfig strict_auth() {
  auto c = TestNode::small_config();
  c.auth_failures_per_second = 1;
  c.auth_failure_burst = 8;
  c.idle_timeout_ms = 10'000;  // bounds a wait for a close that does not come
  return c;
}

// A token whose signature does not verify (its last byte flipped).
Bytes forged(Bytes tok) {
  tok.back() ^= std::byte{1};
  return tok;
}

TEST(Hostile, AnAddressThatFailsVerificationGetsNoMoreSignatureChecks) {
  TestNode node(strict_auth());
  constexpr const char* kFlooder = "127.0.0.2";
  // Successful verifications never spend: 32 fresh tokens (each one an
  // Ed25519 check) from the address, past its burst of 8 failures.
  for (int i = 0; i < 32; ++i) {
    RawClient c(node.port(), 0, kFlooder);
    auto r = c.call(Opcode::kLeaseList, 0, node.token("carol"), wire::Empty{});
    ASSERT_EQ(r.status(), Status::kOk) << r.message();
  }
  // A tenant on the flooder's address whose token has verified already.
  RawClient shared(node.port(), 0, kFlooder);
  const Bytes carol = node.token("carol");
  ASSERT_EQ(shared.call(Opcode::kLeaseList, 0, carol, wire::Empty{}).status(), Status::kOk);

  // The flood: a bad signature per frame. The first few are checked and
  // answered UNAUTHENTICATED on a connection that stays; then BUSY, closed.
  const Bytes bad = forged(node.token("mallory"));
  const auto t0 = std::chrono::steady_clock::now();
  int unauthenticated = 0;
  RawReply busy;
  {
    RawClient c(node.port(), 0, kFlooder);
    for (int i = 0; i < 64; ++i) {
      auto r = c.call(Opcode::kLeaseList, 0, bad, wire::Empty{});
      if (r.status() != Status::kUnauthenticated) {
        busy = r;
        break;
      }
      ++unauthenticated;
    }
    ASSERT_EQ(busy.status(), Status::kBusy) << busy.message();
    EXPECT_NE(busy.message().find("failed token verifications"), std::string::npos)
        << busy.message();
    EXPECT_TRUE(c.closed_by_peer());
  }
  const auto refill = [&] {
    // What the bucket may have refilled meanwhile (1 a second), plus one.
    return 1 +
           std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0)
               .count();
  };
  EXPECT_GE(unauthenticated, 8);
  EXPECT_LE(unauthenticated, 8 + refill());

  // Each further attempt, on a new connection, is refused without a check.
  const uint64_t checks = node.node().token_signature_checks();
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    RawClient c(node.port(), 0, kFlooder);
    auto r = c.call(Opcode::kLeaseList, 0, bad, wire::Empty{});
    if (r.status() == Status::kBusy) {
      ++refused;
      EXPECT_TRUE(c.closed_by_peer());
    }
  }
  const uint64_t checked = node.node().token_signature_checks() - checks;
  EXPECT_LE(checked, static_cast<uint64_t>(refill())) << "signature checks ran for the flood";
  EXPECT_GE(refused, 200 - refill());
  EXPECT_GE(node.node().metrics().auth_rate_limited.load(), static_cast<uint64_t>(refused));
  EXPECT_NE(node.node().metrics().render().find("gpulease_auth_rate_limited_total"),
            std::string::npos);

  // The tenant on that address keeps working on its verified token, and a
  // tenant on another address is unaffected (a fresh token: a full check).
  EXPECT_EQ(shared.call(Opcode::kLeaseList, 0, carol, wire::Empty{}).status(), Status::kOk);
  good_session(node);
}

// ---- Ended leases -------------------------------------------------------------------
// Found: the node remembered 4096 ended leases for all tenants together: one
// tenant cycling leases pushed out another's, whose late op then read
// LEASE_NOT_FOUND instead of LEASE_EXPIRED.

TEST(Hostile, ATenantCyclingLeasesForgetsOnlyItsOwnEndedLeases) {
  auto cfg = TestNode::small_config();
  cfg.tombstones_per_tenant = 1024;
  TestNode node(cfg);
  RawClient a(node.port());
  const Bytes alice = node.token("alice");
  std::vector<uint64_t> ended;
  for (int i = 0; i < 8; ++i) {
    ended.push_back(acquire(a, alice, 4096));
    ASSERT_EQ(a.call(Opcode::kLeaseRelease, ended.back(), alice, wire::Empty{}).status(),
              Status::kOk);
  }
  // Bob ends 8192 leases on two connections (twice the old shared bound).
  const Bytes bob = node.token("bob");
  std::vector<uint64_t> bob_first(2);
  std::atomic<int> cycles{0};
  std::vector<std::thread> cyclers;
  for (int t = 0; t < 2; ++t) {
    cyclers.emplace_back([&, t] {
      RawClient b(node.port());
      for (int i = 0; i < 4096; ++i) {
        const uint64_t id = acquire(b, bob, 4096);
        if (id == 0) return;
        if (i == 0) bob_first[t] = id;
        if (b.call(Opcode::kLeaseRelease, id, bob, wire::Empty{}).status() != Status::kOk) return;
        cycles.fetch_add(1);
      }
    });
  }
  for (auto& t : cyclers) t.join();
  ASSERT_EQ(cycles.load(), 8192);
  // Every one of alice's ended leases is still answered LEASE_EXPIRED.
  for (uint64_t id : ended) {
    auto r = a.call(Opcode::kLeaseQuery, id, alice, wire::Empty{});
    EXPECT_EQ(r.status(), Status::kLeaseExpired) << r.message();
    EXPECT_NE(r.message().find("was released"), std::string::npos) << r.message();
  }
  // Bob's own bound holds: his most recent is remembered, his first ones
  // (each followed by 4095 more) forgotten.
  RawClient b(node.port());
  const uint64_t bob_last = acquire(b, bob, 4096);
  ASSERT_EQ(b.call(Opcode::kLeaseRelease, bob_last, bob, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(b.call(Opcode::kLeaseQuery, bob_last, bob, wire::Empty{}).status(),
            Status::kLeaseExpired);
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(b.call(Opcode::kLeaseQuery, bob_first[t], bob, wire::Empty{}).status(),
              Status::kLeaseNotFound);
  }
  // Another tenant's ended lease reads as an absent one.
  EXPECT_EQ(b.call(Opcode::kLeaseQuery, ended.front(), bob, wire::Empty{}).status(),
            Status::kLeaseNotFound);
}

// ---- Memory of closed connections -----------------------------------------------------
// Found: after 1024 connections that had each sent part of a frame closed,
// the node's RSS stayed 84 MiB above its baseline: their 64 KiB input
// buffers stayed in the allocator's heap (it was trimmed only after frame
// bodies were released).

TEST(Hostile, ClosedConnectionsGiveTheirMemoryBack) {
  if (!kRssTellsTheNodesMemory) GTEST_SKIP() << "RSS says nothing under a sanitizer";
  constexpr int kConns = 1024;
  // The test holds both ends of every connection.
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  const rlim_t need = 2 * kConns + 256;
  if (lim.rlim_cur < need) {
    if (lim.rlim_max < need) GTEST_SKIP() << "needs " << need << " file descriptors";
    lim.rlim_cur = need;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  auto cfg = TestNode::small_config();
  cfg.max_connections = kConns + 16;
  cfg.max_connections_per_ip = kConns + 16;
  TestNode node(cfg);
  good_session(node);  // warm up: the baseline includes one session's allocations
  const size_t baseline = rss_bytes();
  {
    // Each sends half a header: a frame has started, its bytes are buffered.
    const Bytes frame = wire::encode_frame(wire::FrameHeader{}, {}, {});
    std::vector<std::unique_ptr<Sock>> conns;
    for (int i = 0; i < kConns; ++i) {
      conns.push_back(std::make_unique<Sock>(node.port(), "127.0.0.1"));
      ASSERT_TRUE(conns.back()->ok());
      ASSERT_TRUE(conns.back()->send_all(wire::ByteSpan(frame.data(), 24)));
    }
    ASSERT_TRUE(node_holds(node, kConns));
    ASSERT_TRUE(eventually([&] {
      return node.node().metrics().bytes_in.load() >= static_cast<uint64_t>(24 * kConns);
    }));
    std::cerr << "rss with " << kConns << " connections: +" << ((rss_bytes() - baseline) >> 20)
              << " MiB\n";
  }
  EXPECT_TRUE(eventually([&] { return node.server().connections() == 0; }));
  // Back within 16 MiB of the baseline (the connections held 64+ MiB).
  EXPECT_TRUE(eventually([&] { return rss_bytes() <= baseline + (16u << 20); }))
      << "rss " << (rss_bytes() >> 20) << " MiB, baseline " << (baseline >> 20) << " MiB";
  std::cerr << "rss after they closed: " << (rss_bytes() >> 20) << " MiB, baseline "
            << (baseline >> 20) << " MiB\n";
  good_session(node);
}

}  // namespace
}  // namespace gpulease::testing
