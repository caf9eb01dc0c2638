// Hostile and broken frames, deadlines, backpressure, metrics and graceful
// shutdown, against a real node on loopback.
#include <map>
#include <random>

#include "server_test_util.hpp"

namespace gpulease::testing {
namespace {

using namespace std::chrono_literals;

Bytes ping_frame(uint64_t id = 1) {
  wire::FrameHeader h;
  h.opcode = Opcode::kPing;
  h.request_id = id;
  return wire::encode_frame(h, {}, {});
}

// Rewrites a header field and fixes the checksum so only that field is wrong.
Bytes with_field(Bytes frame, size_t off, size_t width, uint64_t value) {
  for (size_t i = 0; i < width; ++i) frame[off + i] = std::byte((value >> (8 * i)) & 0xff);
  wire::ByteSpan all(frame);
  uint64_t sum =
      wire::frame_checksum(all.first(wire::kHeaderSize), {}, all.subspan(wire::kHeaderSize));
  wire::store_le64(frame.data() + wire::kOffChecksum, sum);
  return frame;
}

class FramesTest : public ::testing::Test {
 protected:
  TestNode node_;
  Bytes tok_ = node_.token("alice");

  // A good client keeps working beside whatever the test did.
  void expect_node_still_serves() {
    RawClient good(node_.port());
    auto r = good.call(Opcode::kPing, 0, {}, wire::PingRequest{wire::to_bytes("still here")});
    EXPECT_EQ(r.status(), Status::kOk);
  }
};

TEST_F(FramesTest, BadMagicGetsBadFrameAndTheConnectionIsClosed) {
  RawClient c(node_.port());
  Bytes f = ping_frame();
  f[0] = std::byte{'X'};
  c.send_bytes(f);
  auto r = c.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), Status::kBadFrame);
  EXPECT_TRUE(c.closed_by_peer());
  expect_node_still_serves();
}

TEST_F(FramesTest, AChecksumMismatchIsAnsweredAndClosesTheStream) {
  RawClient c(node_.port());
  Bytes f = ping_frame(9);
  f[wire::kOffChecksum] ^= std::byte{1};
  c.send_bytes(f);
  auto r = c.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), Status::kChecksumMismatch);
  EXPECT_EQ(r->header.request_id, 9u);
  EXPECT_TRUE(c.closed_by_peer());
  expect_node_still_serves();
}

TEST_F(FramesTest, AnOversizeLengthIsRefusedBeforeAnythingIsRead) {
  RawClient c(node_.port());
  // Only the header is sent: the node must answer without waiting for 4 GiB.
  Bytes f = with_field(ping_frame(), wire::kOffPayloadLen, 4, 0xffffffffu);
  c.send_bytes(wire::ByteSpan(f).first(wire::kHeaderSize));
  auto r = c.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), Status::kFrameTooLarge);
  EXPECT_TRUE(c.closed_by_peer());
  Bytes t = with_field(ping_frame(), wire::kOffTokenLen, 4, 1u << 20);
  RawClient c2(node_.port());
  c2.send_bytes(wire::ByteSpan(t).first(wire::kHeaderSize));
  auto r2 = c2.recv();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status(), Status::kFrameTooLarge);
  expect_node_still_serves();
}

TEST_F(FramesTest, AnUnknownVersionIsAnsweredAndClosed) {
  RawClient c(node_.port());
  c.send_bytes(with_field(ping_frame(), wire::kOffVersion, 2, 7));
  auto r = c.recv();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), Status::kUnsupportedVersion);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(FramesTest, UnknownOpcodesFlagsAndReservedBitsAreRefusedButTheStreamGoesOn) {
  RawClient c(node_.port());
  c.send_bytes(with_field(ping_frame(1), wire::kOffOpcode, 2, 0x7777));
  c.send_bytes(with_field(ping_frame(2), wire::kOffFlags, 2, 0x0100));
  c.send_bytes(with_field(ping_frame(3), wire::kOffReserved, 4, 1));
  c.send_bytes(with_field(ping_frame(4), wire::kOffStatus, 2, 3));
  c.send_bytes(with_field(ping_frame(5), wire::kOffFlags, 2, wire::kFlagReply));
  std::map<uint64_t, Status> got;
  for (int i = 0; i < 5; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r);
    got[r->header.request_id] = r->status();
  }
  EXPECT_EQ(got[1], Status::kUnknownOpcode);
  EXPECT_EQ(got[2], Status::kBadFrame);
  EXPECT_EQ(got[3], Status::kBadFrame);
  EXPECT_EQ(got[4], Status::kBadFrame);
  EXPECT_EQ(got[5], Status::kBadFrame);
  // Same connection, still in step.
  EXPECT_EQ(c.call(Opcode::kPing, 0, {}, wire::PingRequest{}).status(), Status::kOk);
}

TEST_F(FramesTest, MalformedPayloadsGetBadFrameAndChangeNothing) {
  RawClient c(node_.port());
  uint64_t lease = acquire(c, tok_);
  Bytes short_alloc(3);
  EXPECT_EQ(c.call(Opcode::kMemAlloc, lease, tok_, wire::ByteSpan(short_alloc)).status(),
            Status::kBadFrame);
  Bytes long_query(5);
  EXPECT_EQ(c.call(Opcode::kLeaseQuery, lease, tok_, wire::ByteSpan(long_query)).status(),
            Status::kBadFrame);
  EXPECT_EQ(c.call(Opcode::kMemAlloc, lease, tok_, wire::MemAllocRequest{0}).status(),
            Status::kInvalidArgument);
  EXPECT_EQ(c.call(Opcode::kLeaseQuery, lease, tok_, wire::Empty{}).as<wire::LeaseInfo>().buffers,
            0u);
}

TEST_F(FramesTest, GarbageFromOneClientDoesNotDisturbAnother) {
  RawClient good(node_.port());
  uint64_t lease = acquire(good, tok_);
  uint64_t buf = alloc(good, lease, tok_, 8);
  std::mt19937 rng(1234);
  for (int i = 0; i < 20; ++i) {
    RawClient bad(node_.port());
    Bytes junk(64 + rng() % 200);
    for (auto& b : junk) b = std::byte(rng());
    if (i % 2 == 0) wire::store_le32(junk.data(), wire::kMagic);  // get past the magic sometimes
    bad.send_bytes(junk);
    bad.close();
    auto r = good.call(Opcode::kMemRead, lease, tok_, wire::MemReadRequest{buf, 0, 8});
    ASSERT_EQ(r.status(), Status::kOk);
  }
}

class DeadlineTest : public ::testing::Test {
 protected:
  static server::NodeConfig cfg() {
    auto c = TestNode::small_config();
    c.frame_timeout_ms = 300;
    c.idle_timeout_ms = 600;
    return c;
  }
  TestNode node_{cfg()};
};

TEST_F(DeadlineTest, AClientThatStallsMidFrameIsDisconnected) {
  RawClient c(node_.port());
  Bytes f = ping_frame();
  c.send_bytes(wire::ByteSpan(f).first(20));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(DeadlineTest, AClientThatStallsMidPayloadIsDisconnectedAndItsLeaseSurvives) {
  RawClient c(node_.port());
  Bytes tok = node_.token("alice");
  uint64_t lease = acquire(c, tok);
  wire::FrameHeader h;
  h.opcode = Opcode::kMemAlloc;
  h.lease_id = lease;
  Bytes f = wire::encode_frame(h, tok, wire::encode_payload(wire::MemAllocRequest{64}));
  c.send_bytes(wire::ByteSpan(f).first(f.size() - 4));
  EXPECT_TRUE(c.closed_by_peer());
  RawClient again(node_.port());
  EXPECT_EQ(
      again.call(Opcode::kLeaseQuery, lease, tok, wire::Empty{}).as<wire::LeaseInfo>().buffers, 0u);
}

TEST_F(DeadlineTest, AnIdleClientIsDisconnected) {
  RawClient c(node_.port());
  EXPECT_EQ(c.call(Opcode::kPing, 0, {}, wire::PingRequest{}).status(), Status::kOk);
  EXPECT_TRUE(c.closed_by_peer());
}

// Starts a kernel that spins until the instruction budget stops it, so a SYNC
// stays in flight for a while.
uint64_t start_spinning(RawClient& c, const Bytes& tok, uint64_t& lease) {
  lease = acquire(c, tok);
  uint64_t flag = alloc(c, lease, tok, 4);
  uint64_t mod = load_module(c, lease, tok, ptx("faults.ptx"));
  EXPECT_EQ(
      c.call(Opcode::kLaunch, lease, tok, launch_req(mod, "spin", 1, 1, Args().buf(flag))).status(),
      Status::kOk);
  return c.send(Opcode::kSync, lease, tok, wire::encode_payload(wire::Empty{}));
}

TEST_F(FramesTest, APipelinedBurstIsAnsweredInOrderWithTheRightData) {
  // One write carrying many frames: the replies made while more frames are
  // buffered go out together in gathered writes; every one arrives, in
  // request order, with its own data.
  RawClient c(node_.port());
  uint64_t lease = acquire(c, tok_);
  uint64_t buf = alloc(c, lease, tok_, 256);
  Bytes data(256);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i);
  ASSERT_EQ(c.call(Opcode::kMemWrite, lease, tok_, wire::MemWriteRequest{buf, 0, data}).status(),
            Status::kOk);
  constexpr int kFrames = 60;  // under max_inflight
  Bytes burst;
  for (int i = 0; i < kFrames; ++i) {
    wire::FrameHeader h;
    h.request_id = 1000 + static_cast<uint64_t>(i);
    Bytes f;
    if (i % 3 == 0) {
      h.opcode = Opcode::kPing;
      f = wire::encode_frame(h, {},
                             wire::encode_payload(wire::PingRequest{Bytes(i, std::byte(i))}));
    } else {
      h.opcode = Opcode::kMemRead;
      h.lease_id = lease;
      f = wire::encode_frame(
          h, tok_, wire::encode_payload(wire::MemReadRequest{buf, static_cast<uint64_t>(i), 16}));
    }
    burst.insert(burst.end(), f.begin(), f.end());
  }
  c.send_bytes(burst);
  for (int i = 0; i < kFrames; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r.has_value()) << "reply " << i;
    EXPECT_EQ(r->header.request_id, 1000 + static_cast<uint64_t>(i));
    ASSERT_EQ(r->status(), Status::kOk) << r->message();
    if (i % 3 == 0) {
      EXPECT_EQ(r->payload, wire::encode_payload(wire::PingReply{Bytes(i, std::byte(i))}));
    } else {
      EXPECT_EQ(r->payload, Bytes(data.begin() + i, data.begin() + i + 16)) << "reply " << i;
    }
  }
  expect_node_still_serves();
}

TEST(BackpressureTest, RequestsPastTheInflightCapAreAnsweredBusy) {
  auto cfg = TestNode::small_config();
  cfg.limits.max_inflight = 1;
  cfg.instruction_budget = 400'000'000;
  TestNode node(cfg);
  RawClient c(node.port());
  Bytes tok = node.token("alice");
  uint64_t lease;
  uint64_t sync_id = start_spinning(c, tok, lease);
  uint64_t ping_id = c.send(Opcode::kPing, 0, {}, wire::encode_payload(wire::PingRequest{}));
  std::map<uint64_t, Status> got;
  for (int i = 0; i < 2; ++i) {
    auto r = c.recv();
    ASSERT_TRUE(r);
    got[r->header.request_id] = r->status();
  }
  EXPECT_EQ(got[ping_id], Status::kBusy);
  EXPECT_EQ(got[sync_id], Status::kSyncFailed);  // the budget stopped the spinning kernel
}

TEST(ShutdownTest, DrainFinishesInFlightFramesAndReleasesEveryLease) {
  auto cfg = TestNode::small_config();
  cfg.instruction_budget = 200'000'000;
  TestNode node(cfg);
  RawClient c(node.port());
  Bytes tok = node.token("alice");
  acquire(c, tok);
  acquire(c, tok);
  uint64_t lease;
  uint64_t sync_id = start_spinning(c, tok, lease);
  EXPECT_EQ(node.node().active_leases(), 3u);
  std::thread stopper([&] { node.server().drain_and_stop(); });
  auto r = c.recv();
  stopper.join();
  ASSERT_TRUE(r) << "the in-flight SYNC was not answered";
  EXPECT_EQ(r->header.request_id, sync_id);
  node.server().wait();
  EXPECT_EQ(node.node().active_leases(), 0u);
  std::string m = node.node().metrics().render();
  EXPECT_NE(m.find("gpu_lease_dropped_total{reason=\"shutdown\"} 3"), std::string::npos) << m;
}

std::string http_get(uint16_t port, const std::string& path) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(s, asio::buffer(req));
  std::string out;
  asio::error_code ec;
  std::array<char, 4096> buf;
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf.data(), n);
    if (ec) break;
  }
  return out;
}

TEST(MetricsTest, TheMetricsEndpointServesPrometheusTextWithTheSeedsNames) {
  auto cfg = TestNode::small_config();
  cfg.metrics_listen = "127.0.0.1:0";
  TestNode node(cfg);
  RawClient c(node.port());
  Bytes tok = node.token("alice");
  uint64_t lease = acquire(c, tok);
  alloc(c, lease, tok, 4096);
  c.call(Opcode::kSync, lease, tok, wire::Empty{});
  c.call(Opcode::kLeaseList, 0, Bytes(10), wire::Empty{});  // a malformed token
  std::string m = http_get(node.server().metrics_port(), "/metrics");
  EXPECT_NE(m.find("200 OK"), std::string::npos);
  for (const char* name :
       {"gpu_lease_acquired_total 1", "gpu_leases_active 1", "gpu_session_mem_alloc_bytes 4096",
        "gpu_session_launch_total", "gpu_session_sync_total 1", "gpu_session_sync_errors_total 0",
        "gpu_lease_dropped_total{reason=\"expired\"}",
        "gpulease_frames_total{opcode=\"MEM_ALLOC\",status=\"OK\"} 1",
        "gpulease_auth_failures_total{reason=\"UNAUTHENTICATED\"} 1",
        "gpulease_token_cache_hits_total", "gpulease_bytes_in_total",
        "gpulease_request_duration_seconds_bucket{opcode=\"LEASE_ACQUIRE\""}) {
    EXPECT_NE(m.find(name), std::string::npos) << name;
  }
  EXPECT_NE(http_get(node.server().metrics_port(), "/healthz").find("ok"), std::string::npos);
  EXPECT_NE(http_get(node.server().metrics_port(), "/nope").find("404"), std::string::npos);
}

TEST(ExpiryTest, LeasesExpireOnTimeWhileOtherClientsKeepTheNodeBusy) {
  TestNode node;
  Bytes tok = node.token("alice");
  RawClient c(node.port());
  std::vector<uint64_t> short_leases;
  for (int i = 0; i < 5; ++i) short_leases.push_back(acquire(c, tok, 1 << 20, 1));
  uint64_t keeper = acquire(c, tok, 1 << 20, 60);
  uint64_t buf = alloc(c, keeper, tok, 1024);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::thread load([&] {
    RawClient l(node.port());
    while (!stop) {
      if (l.call(Opcode::kMemRead, keeper, tok, wire::MemReadRequest{buf, 0, 1024}).status() ==
          Status::kOk)
        ++ok;
    }
  });
  EXPECT_TRUE(eventually([&] { return node.node().active_leases() == 1; }, 10s));
  stop = true;
  load.join();
  EXPECT_GT(ok.load(), 0);
  for (uint64_t l : short_leases) {
    EXPECT_EQ(c.call(Opcode::kLeaseQuery, l, tok, wire::Empty{}).status(), Status::kLeaseExpired);
  }
}

}  // namespace
}  // namespace gpulease::testing
