// The network layer under attack (issue 11, items 1, 2, 3, 7, 9), over
// loopback against an in-process node: while each attack runs, a
// well-behaved tenant on another connection completes a full session with
// correct results, and the node's memory (RSS of this process, and the
// frame-bytes budget) returns near its baseline afterwards. Every loop is
// bounded; "within 10 s" bounds are liveness checks, not speed claims.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "frame_budget.hpp"
#include "server_attack_util.hpp"
#include "server_test_util.hpp"

namespace gpulease::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t k64MiB = 64u << 20;

// A request header that declares `payload_len` bytes of payload after
// `token`; the body is the attacker's to send (or not).
Bytes header_declaring(Opcode op, uint64_t lease, wire::ByteSpan token, uint32_t payload_len) {
  wire::FrameHeader h;
  h.opcode = op;
  h.request_id = 7;
  h.lease_id = lease;
  wire::HeaderBytes hb = wire::encode_header(h, token, {});
  wire::store_le32(hb.data() + wire::kOffPayloadLen, payload_len);
  Bytes out(hb.size() + token.size());
  std::memcpy(out.data(), hb.data(), hb.size());
  if (!token.empty()) std::memcpy(out.data() + hb.size(), token.data(), token.size());
  return out;
}

server::NodeConfig attack_config() {
  auto c = TestNode::small_config();
  c.frame_timeout_ms = 1000;
  c.idle_timeout_ms = 60'000;
  c.frame_bytes_budget = 512ull << 20;
  c.frame_bytes_per_tenant = 128ull << 20;
  c.frame_bytes_per_connection = 64ull << 20 | 4096;
  c.body_pool_bytes = 8ull << 20;
  return c;
}

// The node's memory is back near where it started: no frame bytes held, and
// the process's RSS within `slack` of the baseline (pooled buffers, the
// allocator's caches and the sim's allocations of the good sessions).

void expect_memory_back(TestNode& node, size_t baseline, size_t slack = 48u << 20) {
  EXPECT_TRUE(eventually([&] { return node.server().frame_budget().counters().held == 0; }));
  if (!kRssTellsTheNodesMemory) return;
  EXPECT_TRUE(eventually([&] { return rss_bytes() <= baseline + slack; }))
      << "rss " << (rss_bytes() >> 20) << " MiB, baseline " << (baseline >> 20) << " MiB";
}

// ---- 1. Memory before bytes -----------------------------------------------------

TEST(Attack, DeclaredBodiesWithoutBytesHoldNoMemory) {
  TestNode node(attack_config());
  good_session(node);  // warm up: the baseline includes one session's allocations
  const size_t baseline = rss_bytes();
  const Bytes mallory = node.token("mallory");
  std::vector<std::unique_ptr<Sock>> socks;
  // No token: 16 MEM_WRITEs and 16 PINGs declaring 64 MiB, then one byte.
  for (int i = 0; i < 16; ++i) {
    for (Opcode op : {Opcode::kMemWrite, Opcode::kPing}) {
      auto s = std::make_unique<Sock>(node.port());
      ASSERT_TRUE(s->ok());
      Bytes f = header_declaring(op, op == Opcode::kPing ? 0 : 1, {}, k64MiB);
      f.push_back(std::byte{0});
      ASSERT_TRUE(s->send_all(f));
      socks.push_back(std::move(s));
    }
  }
  // Each is refused at once, before its payload is read: UNAUTHENTICATED for
  // the MEM_WRITEs, FRAME_TOO_LARGE for a PING past the tokenless allowance.
  for (size_t i = 0; i < socks.size(); ++i) {
    auto r = socks[i]->recv_reply();
    ASSERT_TRUE(r.has_value()) << "no reply on connection " << i;
    EXPECT_EQ(r->status(), i % 2 == 0 ? Status::kUnauthenticated : Status::kFrameTooLarge)
        << r->message();
  }
  // A tenant with a valid token does the same on 8 connections: its share of
  // the budget bounds what it reserves, and reserving touches no memory.
  for (int i = 0; i < 8; ++i) {
    auto s = std::make_unique<Sock>(node.port());
    ASSERT_TRUE(s->ok());
    Bytes f = header_declaring(Opcode::kMemWrite, 1, mallory, k64MiB);
    f.push_back(std::byte{0});
    ASSERT_TRUE(s->send_all(f));
    socks.push_back(std::move(s));
  }
  ASSERT_TRUE(eventually([&] { return node.server().frame_budget().tenant_held("mallory") > 0; }));
  EXPECT_LE(node.server().frame_budget().tenant_held("mallory"), 128ull << 20);
  EXPECT_EQ(node.server().frame_budget().tenant_held(""), 0u);
  EXPECT_LT(good_session(node), 10s);
  if (kRssTellsTheNodesMemory) {
    EXPECT_LT(rss_bytes(), baseline + (32u << 20))
        << "rss grew by " << ((rss_bytes() - baseline) >> 20) << " MiB";
  }
  // The frame deadline ends every stalled frame.
  for (auto& s : socks) EXPECT_TRUE(s->closed_within(10s));
  EXPECT_TRUE(eventually([&] { return node.server().connections() == 0; }));
  expect_memory_back(node, baseline);
}

// ---- 2. The frame deadline --------------------------------------------------------

TEST(Attack, StalledFramesEndAtTheFrameDeadlineNotTheIdleOne) {
  TestNode node(attack_config());  // frame deadline 1 s, idle 60 s
  good_session(node);
  const size_t baseline = rss_bytes();
  const Bytes mallory = node.token("mallory");
  // A partial header.
  Sock partial(node.port());
  Bytes h = header_declaring(Opcode::kPing, 0, {}, 0);
  ASSERT_TRUE(partial.send_all(wire::ByteSpan(h).first(10)));
  // A whole header and token, and part of the payload.
  Sock body(node.port());
  Bytes f = header_declaring(Opcode::kMemWrite, 1, mallory, 1 << 20);
  f.resize(f.size() + 1000);
  ASSERT_TRUE(body.send_all(f));
  // A frame dribbled a byte at a time: progress does not extend a frame's deadline.
  Sock dribble(node.port());
  Bytes d = header_declaring(Opcode::kMemWrite, 1, mallory, 64);
  EXPECT_LT(good_session(node), 10s);
  auto t0 = Clock::now();
  bool dribble_closed = false;
  for (size_t i = 0; i < d.size() && Clock::now() - t0 < 10s; ++i) {
    if (!dribble.send_all(wire::ByteSpan(d).subspan(i, 1))) {
      dribble_closed = true;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(dribble_closed || dribble.closed_within(10s));
  EXPECT_TRUE(partial.closed_within(10s));
  EXPECT_TRUE(body.closed_within(10s));
  EXPECT_TRUE(eventually([&] { return node.server().connections() == 0; }));
  expect_memory_back(node, baseline);
}

// ---- 3. Replies that are never read ------------------------------------------------

TEST(Attack, UnreadRepliesStopTheReaderAtTheReplyBound) {
  auto cfg = attack_config();
  cfg.frame_timeout_ms = 20'000;  // the attacker pauses reading while the good session runs
  cfg.reply_queue_bytes = 8u << 20;
  TestNode node(cfg);
  good_session(node);
  const Bytes mallory = node.token("mallory");
  RawClient setup(node.port());
  uint64_t lease = acquire(setup, mallory, 8u << 20);
  constexpr uint32_t kRead = 4u << 20;
  uint64_t buf = alloc(setup, lease, mallory, kRead);
  const size_t baseline = rss_bytes();
  // 64 MEM_READs of 4 MiB (256 MiB of replies), none read for now.
  Sock s(node.port());
  Bytes batch;
  for (int i = 0; i < 64; ++i) {
    wire::FrameHeader h;
    h.opcode = Opcode::kMemRead;
    h.request_id = static_cast<uint64_t>(i + 1);
    h.lease_id = lease;
    Bytes f =
        wire::encode_frame(h, mallory, wire::encode_payload(wire::MemReadRequest{buf, 0, kRead}));
    batch.insert(batch.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(s.send_all(batch));
  EXPECT_LT(good_session(node), 10s);
  // Replies held by the node are bounded by the reply bound (plus the one
  // being written and what the device pool is producing), not 256 MiB.
  std::this_thread::sleep_for(200ms);
  if (kRssTellsTheNodesMemory) {
    EXPECT_LT(rss_bytes(), baseline + (48u << 20))
        << "rss grew by " << ((rss_bytes() - baseline) >> 20) << " MiB";
  }
  // Reading resumes the node's reading: every request is answered, in order.
  for (int i = 0; i < 64; ++i) {
    auto r = s.recv_reply();
    ASSERT_TRUE(r.has_value()) << "reply " << i;
    EXPECT_EQ(r->status(), Status::kOk) << r->message();
    EXPECT_EQ(r->header.request_id, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(r->payload.size(), kRead);
  }
  EXPECT_EQ(setup.call(Opcode::kLeaseRelease, lease, mallory, wire::Empty{}).status(), Status::kOk);
  expect_memory_back(node, baseline);
}

TEST(Attack, ATenantsConnectionsShareOneReplyBound) {
  // Four connections of one tenant, each allowed 8 MiB of replies: without a
  // per-tenant bound the tenant would hold 32 MiB of replies it never reads.
  auto cfg = attack_config();
  cfg.frame_timeout_ms = 20'000;  // the attacker pauses reading while the good session runs
  cfg.reply_queue_bytes = 8u << 20;
  cfg.reply_bytes_per_tenant = 12u << 20;
  TestNode node(cfg);
  const Bytes mallory = node.token("mallory");
  RawClient setup(node.port());
  uint64_t lease = acquire(setup, mallory, 4u << 20);
  constexpr uint32_t kRead = 1u << 20;
  uint64_t buf = alloc(setup, lease, mallory, kRead);
  constexpr int kConns = 4, kReads = 32;  // 128 MiB of replies asked for
  std::vector<std::unique_ptr<Sock>> socks;
  for (int c = 0; c < kConns; ++c) {
    socks.push_back(std::make_unique<Sock>(node.port()));
    ASSERT_TRUE(socks.back()->ok());
    Bytes batch;
    for (int i = 0; i < kReads; ++i) {
      wire::FrameHeader h;
      h.opcode = Opcode::kMemRead;
      h.request_id = static_cast<uint64_t>(i + 1);
      h.lease_id = lease;
      Bytes f =
          wire::encode_frame(h, mallory, wire::encode_payload(wire::MemReadRequest{buf, 0, kRead}));
      batch.insert(batch.end(), f.begin(), f.end());
    }
    ASSERT_TRUE(socks.back()->send_all(batch));
  }
  // Another tenant is served meanwhile.
  EXPECT_LT(good_session(node), 10s);
  // The tenant's replies, queued or owed, reached the bound but never
  // passed it (the per-connection bounds together would allow 32 MiB).
  EXPECT_TRUE(eventually([&] { return node.server().reply_budget().peak("mallory") > (8u << 20); }))
      << node.server().reply_budget().peak("mallory");
  EXPECT_LE(node.server().reply_budget().peak("mallory"), cfg.reply_bytes_per_tenant);
  // Reading every connection (each on its own thread: a connection may wait
  // for room that only the others' reading makes) resumes their readers:
  // each request is answered, in order, and the tenant then holds nothing.
  std::vector<int> answered(kConns, 0);
  std::vector<std::thread> readers;
  for (int c = 0; c < kConns; ++c) {
    readers.emplace_back([&, c] {
      for (int i = 0; i < kReads; ++i) {
        auto r = socks[c]->recv_reply();
        if (!r || r->status() != Status::kOk ||
            r->header.request_id != static_cast<uint64_t>(i + 1) || r->payload.size() != kRead)
          return;
        answered[c] += 1;
      }
    });
  }
  for (auto& t : readers) t.join();
  for (int c = 0; c < kConns; ++c) EXPECT_EQ(answered[c], kReads) << "connection " << c;
  EXPECT_LE(node.server().reply_budget().peak("mallory"), cfg.reply_bytes_per_tenant);
  EXPECT_TRUE(eventually([&] { return node.server().reply_budget().held("mallory") == 0; }));
  EXPECT_EQ(setup.call(Opcode::kLeaseRelease, lease, mallory, wire::Empty{}).status(), Status::kOk);
}

TEST(Attack, APeerThatNeverReadsIsDisconnectedAtTheWriteDeadline) {
  auto cfg = attack_config();
  cfg.reply_queue_bytes = 8u << 20;
  TestNode node(cfg);  // frame (and write) deadline 1 s
  const Bytes mallory = node.token("mallory");
  RawClient setup(node.port());
  uint64_t lease = acquire(setup, mallory, 8u << 20);
  uint64_t buf = alloc(setup, lease, mallory, 4u << 20);
  Sock s(node.port());
  Bytes batch;
  for (int i = 0; i < 32; ++i) {
    wire::FrameHeader h;
    h.opcode = Opcode::kMemRead;
    h.request_id = static_cast<uint64_t>(i + 1);
    h.lease_id = lease;
    Bytes f = wire::encode_frame(h, mallory,
                                 wire::encode_payload(wire::MemReadRequest{buf, 0, 4u << 20}));
    batch.insert(batch.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(s.send_all(batch));
  EXPECT_LT(good_session(node), 10s);
  // Closed by the node: its connection count drops to the setup client's.
  EXPECT_TRUE(eventually([&] { return node.server().connections() == 1; }));
}

// ---- 7. Half-close ---------------------------------------------------------------

TEST(Attack, HalfCloseStillGetsEveryReply) {
  TestNode node(attack_config());
  good_session(node);
  const size_t baseline = rss_bytes();
  const Bytes tok = node.token("bob");
  Sock s(node.port());
  Bytes batch;
  for (int i = 0; i < 20; ++i) {
    wire::FrameHeader h;
    h.opcode = Opcode::kLeaseAcquire;
    h.request_id = static_cast<uint64_t>(i + 1);
    Bytes f =
        wire::encode_frame(h, tok, wire::encode_payload(wire::LeaseAcquireRequest{64 << 10, 60}));
    batch.insert(batch.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(s.send_all(batch));
  s.shut_wr();
  EXPECT_LT(good_session(node), 10s);
  std::vector<uint64_t> leases;
  for (int i = 0; i < 20; ++i) {
    auto r = s.recv_reply();
    ASSERT_TRUE(r.has_value()) << "reply " << i << " missing";
    ASSERT_EQ(r->status(), Status::kOk) << r->message();
    leases.push_back(r->as<wire::LeaseAcquireReply>().lease_id);
  }
  // Then the node closes its side.
  EXPECT_TRUE(s.closed_within(10s));
  RawClient c(node.port());
  for (uint64_t l : leases)
    EXPECT_EQ(c.call(Opcode::kLeaseRelease, l, tok, wire::Empty{}).status(), Status::kOk);
  expect_memory_back(node, baseline);
}

TEST(Attack, HalfCloseMidFrameAnswersTheWholeFramesAndCloses) {
  TestNode node(attack_config());
  Sock s(node.port());
  wire::FrameHeader h;
  h.opcode = Opcode::kPing;
  h.request_id = 5;
  Bytes f = wire::encode_frame(h, {}, wire::encode_payload(wire::PingRequest{Bytes(16)}));
  Bytes partial = header_declaring(Opcode::kPing, 0, {}, 100);
  f.insert(f.end(), partial.begin(), partial.end());
  ASSERT_TRUE(s.send_all(f));
  s.shut_wr();
  auto r = s.recv_reply();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), Status::kOk);
  EXPECT_EQ(r->header.request_id, 5u);
  EXPECT_TRUE(s.closed_within(10s));
}

// ---- 9. The metrics endpoint ---------------------------------------------------

std::string http_get(uint16_t port, const std::string& path) {
  Sock s(port);
  if (!s.ok()) return {};
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  if (!s.send_all(wire::ByteSpan(reinterpret_cast<const std::byte*>(req.data()), req.size())))
    return {};
  std::string out;
  std::array<std::byte, 4096> b;
  for (;;) {
    size_t before = out.size();
    if (!s.read_exact(b.data(), 1, 2s)) break;
    out.push_back(static_cast<char>(b[0]));
    if (out.size() == before) break;
  }
  return out;
}

TEST(Attack, HeldMetricsSocketsAreBoundedAndTimedOut) {
  auto cfg = attack_config();
  cfg.metrics_listen = "127.0.0.1:0";
  cfg.metrics_max_connections = 4;
  cfg.metrics_timeout_ms = 500;
  TestNode node(cfg);
  const uint16_t mport = node.server().metrics_port();
  ASSERT_NE(mport, 0);
  std::vector<std::unique_ptr<Sock>> held;
  for (int i = 0; i < 256; ++i) {
    held.push_back(std::make_unique<Sock>(mport));
    ASSERT_TRUE(held.back()->ok());
  }
  EXPECT_LT(good_session(node), 10s);
  EXPECT_LE(node.server().metrics_connections(), 4);
  // Every held socket is closed by the node: refused at once, or at its deadline.
  for (auto& s : held) EXPECT_TRUE(s->closed_within(10s));
  EXPECT_GT(node.node().metrics().metrics_connections_rejected.load(), 0u);
  // And the endpoint still serves.
  std::string page;
  EXPECT_TRUE(eventually([&] {
    page = http_get(mport, "/metrics");
    return page.rfind("HTTP/1.1 200", 0) == 0;
  }));
  EXPECT_NE(page.find("gpulease_frame_bytes_held"), std::string::npos);
}

// ---- The frame check order at the reader (PROTOCOL.md, "Receiving a frame") ----

TEST(ReaderOrder, ReplyFlagBeatsUnknownOpcodeAndTheConnectionStays) {
  TestNode node(attack_config());
  Sock s(node.port());
  wire::FrameHeader h;
  h.opcode = Opcode::kPing;
  h.request_id = 9;
  Bytes f = wire::encode_frame(h, {}, Bytes(8));
  wire::store_le16(f.data() + wire::kOffFlags, wire::kFlagReply);
  wire::store_le16(f.data() + wire::kOffOpcode, 0x7777);
  ASSERT_TRUE(s.send_all(f));
  auto r = s.recv_reply();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), Status::kBadFrame) << r->message();
  // The body was dropped and the stream is in step: a PING is answered.
  h.request_id = 10;
  ASSERT_TRUE(s.send_all(wire::encode_frame(h, {}, {})));
  r = s.recv_reply();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), Status::kOk);
  EXPECT_EQ(r->header.request_id, 10u);
}

TEST(ReaderOrder, TokenRefusalsOtherThanUnauthenticatedComeAfterTheChecksum) {
  TestNode node(attack_config());
  // An expired token, and a frame whose checksum is wrong: CHECKSUM_MISMATCH
  // (step 9) before TOKEN_EXPIRED (step 10), and the connection closes.
  Bytes expired = node.token("bob", capability::kAllPermissions, -120, 0, 0, "test-node", -600);
  wire::FrameHeader h;
  h.opcode = Opcode::kLeaseList;
  h.request_id = 3;
  {
    Sock s(node.port());
    Bytes f = wire::encode_frame(h, expired, {});
    f[wire::kOffChecksum] ^= std::byte{1};
    ASSERT_TRUE(s.send_all(f));
    auto r = s.recv_reply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status(), Status::kChecksumMismatch) << r->message();
    EXPECT_TRUE(s.closed_within(10s));
  }
  {
    // The same frame with a sound checksum: TOKEN_EXPIRED, connection kept.
    Sock s(node.port());
    ASSERT_TRUE(s.send_all(wire::encode_frame(h, expired, {})));
    auto r = s.recv_reply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status(), Status::kTokenExpired) << r->message();
    wire::FrameHeader ping;
    ping.request_id = 4;
    ASSERT_TRUE(s.send_all(wire::encode_frame(ping, {}, {})));
    r = s.recv_reply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status(), Status::kOk);
  }
  EXPECT_EQ(node.server().frame_budget().counters().peak, 0u);  // nothing was buffered
}

// ---- The budget and the pool on their own ---------------------------------------

TEST(FrameBudget, SharesBoundTenantsAndConnectionsAndAdmitOneFrameAlone) {
  server::FrameBudget b({100, 60, 40});
  auto a1 = b.open_account();
  auto a2 = b.open_account();
  auto a3 = b.open_account();
  auto r1 = b.try_reserve(a1, "t", 30);
  ASSERT_TRUE(r1);
  EXPECT_FALSE(b.try_reserve(a1, "t", 20));  // connection share (40)
  auto r2 = b.try_reserve(a2, "t", 30);
  ASSERT_TRUE(r2);
  EXPECT_FALSE(b.try_reserve(a3, "t", 1));  // tenant share (60)
  auto r3 = b.try_reserve(a3, "u", 39);
  ASSERT_TRUE(r3);
  EXPECT_FALSE(b.try_reserve(b.open_account(), "v", 2));  // total (100)
  EXPECT_EQ(b.counters().held, 99u);
  EXPECT_EQ(b.tenant_held("t"), 60u);
  int woken = 0;
  uint64_t w = b.add_waiter([&] { ++woken; });
  r1.reset();
  EXPECT_EQ(woken, 1);
  b.remove_waiter(w);
  r2 = {};
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(b.tenant_held("t"), 0u);
  // A frame larger than every share is admitted when nothing is held.
  r3.reset();
  auto big = b.try_reserve(a1, "t", 1000);
  EXPECT_TRUE(big);
  EXPECT_FALSE(b.try_reserve(a2, "u", 1));
  big.reset();
  EXPECT_EQ(b.counters().held, 0u);
  EXPECT_EQ(b.counters().released, 1000u + 99u);
}

TEST(BodyPool, KeepsLargeBuffersUpToItsCapAndFreesTheRest) {
  server::BodyPool pool(1u << 20);
  wire::Bytes small = pool.take(1000);
  EXPECT_EQ(small.size(), 0u);
  EXPECT_GE(small.capacity(), 1000u);
  std::vector<wire::Bytes> big;
  for (int i = 0; i < 6; ++i) big.emplace_back(300u << 10);
  for (auto& b : big) pool.give(std::move(b));
  EXPECT_LE(pool.pooled_bytes(), 1u << 20);
  EXPECT_EQ(pool.pooled_bytes(), 3u * (300u << 10));
  wire::Bytes reused = pool.take(280u << 10);
  EXPECT_EQ(reused.size(), 300u << 10);  // full size: a reuse never zero-fills
  EXPECT_EQ(pool.pooled_bytes(), 2u * (300u << 10));
  EXPECT_EQ(pool.take(100u << 10).size(), 0u);  // small bodies are not pooled
  EXPECT_EQ(pool.pooled_bytes(), 2u * (300u << 10));
  EXPECT_EQ(pool.take(1u << 20).size(), 0u);  // nothing pooled is large enough
}

}  // namespace
}  // namespace gpulease::testing
