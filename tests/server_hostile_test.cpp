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
#include <sys/socket.h>
#include <unistd.h>

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

// A TCP connection from `source` (an address of 127/8) that sends nothing.
class Silent {
 public:
  Silent(const char* source, uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &src.sin_addr);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0 &&
          ::connect(fd_, reinterpret_cast<sockaddr*>(&dst), sizeof dst) == 0;
  }
  ~Silent() {
    if (fd_ >= 0) ::close(fd_);
  }
  Silent(const Silent&) = delete;
  Silent& operator=(const Silent&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }
  // True once the node has closed it (EOF or reset), polling up to `timeout`.
  bool closed_within(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char b;
    return ::recv(fd_, &b, 1, 0) <= 0;
  }

 private:
  int fd_;
  bool ok_ = false;
};

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
  std::vector<std::unique_ptr<Silent>> silent;
  for (const char* src : {"127.0.1.1", "127.0.1.2"}) {
    for (int i = 0; i < 8; ++i) {
      silent.push_back(std::make_unique<Silent>(src, node.port()));
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
  std::vector<std::unique_ptr<Silent>> silent;
  for (int i = 0; i < 8; ++i) {
    silent.push_back(std::make_unique<Silent>("127.0.0.1", node.port()));
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

}  // namespace
}  // namespace gpulease::testing
