// Connection: HELLO, PING, error replies, pipelining within the node's
// in-flight limit, and reconnecting after the network drops.
#include <future>
#include <set>
#include <utility>

#include "client_test_util.hpp"
#include "gpulease/wire/host_port.hpp"

namespace gpulease::testing {
namespace {

using client::Connection;
using client::LeaseBuilder;
using client::Session;

TEST(ClientConnection, SaysHelloAndLearnsTheNodesIdentityAndLimits) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto info = conn.node_info();
  EXPECT_EQ(info.node_id, "test-node");
  EXPECT_EQ(info.backend, "sim");
  EXPECT_GT(info.limits.max_inflight, 0u);
  ASSERT_EQ(info.devices.size(), 1u);
  EXPECT_GT(conn.chunk_bytes(), 0u);
  EXPECT_LE(conn.chunk_bytes(), info.limits.max_payload_bytes);
}

TEST(ClientConnection, PingEchoesWithoutAToken) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), {});
  Bytes data(1000, std::byte{0x5a});
  auto rtt = conn.ping(data);
  ASSERT_TRUE(rtt.ok()) << client::describe(rtt.error());
}

TEST(ClientConnection, ConnectingToAClosedPortIsConnectionLost) {
  uint16_t port;
  {
    TestNode node(client_test_config());
    port = node.port();
  }
  client::ConnectOptions o;
  o.node = {"127.0.0.1", port};
  auto c = Connection::connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.error().is_connection_lost());
  EXPECT_EQ(c.status(), client::ClientStatus::connection_lost());
  EXPECT_FALSE(c.error().node_status().has_value());
  EXPECT_EQ(c.error().to_string().rfind("CONNECTION_LOST: cannot connect", 0), 0u)
      << c.error().to_string();
}

TEST(ClientConnection, ConnectParsesNodeAndTokenText) {
  EXPECT_FALSE(client::NodeAddress::parse("nohost").ok());
  EXPECT_FALSE(client::NodeAddress::parse("h:0").ok());
  EXPECT_FALSE(client::NodeAddress::parse("h:65536").ok());
  auto a = client::NodeAddress::parse("[::1]:7070");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->str(), "[::1]:7070");
  auto bad = Connection::connect("127.0.0.1:1", "not-a-token");
  // Found by the library before anything is sent: a local error.
  EXPECT_EQ(bad.status(), client::ClientStatus::local(Status::kUnauthenticated));
  EXPECT_TRUE(bad.error().is_local(Status::kUnauthenticated));
  EXPECT_NE(bad.status(), Status::kUnauthenticated);  // not the node's answer
}

// The tree's one HOST:PORT parser (wire/host_port.hpp), as the client's
// --node, the node's --listen and --metrics use it.
TEST(ClientConnection, HostPortParserRefusesWhatIsNotHostColonPort) {
  for (const char* bad :
       {"", "host", "host:", ":7070", "h:abc", "h:12ab", "h:-1", "h:+80", "h: 80", "h:123456",
        "h:65536", "::1:7070", "[::1]", "[::1]7070", "[::1:7070", "[]:7070"}) {
    auto r = wire::parse_host_port(bad, /*allow_port_zero=*/true);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status(), Status::kInvalidArgument) << bad;
      EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
    }
  }
  EXPECT_FALSE(wire::parse_host_port("h:0").ok());  // a client needs a real port
  auto any = wire::parse_host_port("0.0.0.0:0", /*allow_port_zero=*/true);
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->port, 0);
  auto v6 = wire::parse_host_port("[fe80::1]:65535");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "fe80::1");
  EXPECT_EQ(v6->port, 65535);
  EXPECT_EQ(wire::format_host_port(v6->host, v6->port), "[fe80::1]:65535");
  EXPECT_EQ(wire::format_host_port("node-a", 7070), "node-a:7070");
}

TEST(ClientConnection, ALeaseIdThatBreaksTheOpcodesLeaseRuleIsRefusedUnsent) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  const auto before = conn.stats().requests;
  client::RequestOptions with_lease;
  with_lease.lease_id = 7;
  auto list = conn.call(Opcode::kLeaseList, wire::encode_payload(wire::Empty{}), with_lease);
  EXPECT_EQ(list.status(), client::ClientStatus::local(Status::kInvalidArgument));
  EXPECT_NE(list.error().message().find("must be 0"), std::string::npos) << list.error().message();
  auto alloc = conn.call(Opcode::kMemAlloc, wire::encode_payload(wire::MemAllocRequest{64}));
  EXPECT_TRUE(alloc.error().is_local(Status::kInvalidArgument)) << alloc.error().to_string();
  EXPECT_NE(alloc.error().message().find("lease_id required"), std::string::npos)
      << alloc.error().message();
  auto unknown = conn.call(static_cast<Opcode>(0x7777), {});
  EXPECT_EQ(unknown.status(), client::ClientStatus::local(Status::kInvalidArgument));
  EXPECT_EQ(unknown.error().to_string().rfind("INVALID_ARGUMENT (local): ", 0), 0u)
      << unknown.error().to_string();
  EXPECT_EQ(conn.stats().requests, before);  // none went out
  EXPECT_TRUE(conn.ping().ok());
}

TEST(ClientConnection, ErrorRepliesCarryTheWireStatusAndTheNodesMessage) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto lease = client::Lease::adopt(conn, 12345, 10);
  auto q = lease.query();
  lease.detach();
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status(), Status::kLeaseNotFound);
  EXPECT_TRUE(q.error().is_node_status(Status::kLeaseNotFound));
  EXPECT_EQ(q.error().kind(), client::StatusKind::kNodeStatus);
  EXPECT_EQ(q.error().node_status(), Status::kLeaseNotFound);
  EXPECT_TRUE(q.error().is_lease_lost());
  EXPECT_NE(q.error().message().find("LEASE_QUERY"), std::string::npos) << q.error().message();
  EXPECT_NE(q.error().message().find("12345"), std::string::npos) << q.error().message();
  EXPECT_EQ(q.error().to_string().rfind("LEASE_NOT_FOUND: LEASE_QUERY", 0), 0u)
      << q.error().to_string();
}

TEST(ClientConnection, PipelinedRequestsStayWithinTheNodesInflightLimit) {
  server::NodeConfig cfg = client_test_config();
  cfg.limits.max_inflight = 4;
  TestNode node(cfg);
  auto conn = connect_client(node.port(), node.token("t1"));
  EXPECT_EQ(conn.stats().window, 4u);
  std::vector<client::PendingReply> replies;
  for (int i = 0; i < 100; ++i) {
    replies.push_back(conn.send(Opcode::kPing, wire::encode_payload(wire::PingRequest{})));
  }
  for (auto& r : replies) {
    auto rep = r.wait();
    ASSERT_TRUE(rep.ok()) << client::describe(rep.error());  // never BUSY
  }
  EXPECT_LE(conn.stats().max_inflight, 4u);
  EXPECT_EQ(conn.stats().replies, 100u);
}

TEST(ClientConnection, RequestsFromManyThreadsAreMatchedToTheirReplies) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Bytes data(static_cast<size_t>(8 + t), std::byte(i));
        auto r = conn.ping(data);  // checks that the echo is this request's data
        if (!r) bad++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(ClientConnection, ReconnectsAfterTheNetworkDropsAndTheLeaseCarriesOn) {
  TestNode node(client_test_config());
  TcpProxy proxy(node.port());
  auto conn = connect_client(proxy.port(), node.token("t1"));
  auto lease = LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).acquire();
  ASSERT_TRUE(lease.ok()) << client::describe(lease.error());
  Session s(*lease);
  auto buf = s.mem_alloc(4096);
  ASSERT_TRUE(buf.ok());
  std::vector<uint32_t> host(1024);
  for (uint32_t i = 0; i < host.size(); ++i) host[i] = i * 7;
  ASSERT_TRUE(s.mem_write(*buf, 0, as_byte_vector(host)).ok());
  ASSERT_TRUE(s.flush().ok());

  proxy.cut();

  // The next ops go over a new connection, with the same lease and buffer.
  auto back = s.mem_read(*buf, 0, 4096);
  ASSERT_TRUE(back.ok()) << client::describe(back.error());
  EXPECT_EQ(*back, as_byte_vector(host));
  EXPECT_GE(conn.stats().reconnects, 1u);
  EXPECT_GE(proxy.accepted(), 2);
  auto info = lease->query();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->buffers, 1u);
}

TEST(ClientConnection, RequestsInFlightDuringADropAreResentWithTheSameId) {
  TestNode node(client_test_config());
  TcpProxy proxy(node.port());
  auto conn = connect_client(proxy.port(), node.token("t1"));
  auto lease = LeaseBuilder(conn).min_vram(8 << 20).lease_secs(60).acquire();
  ASSERT_TRUE(lease.ok());
  // Cut the connection with allocations in flight: every MEM_ALLOC is
  // retry-safe (the node's replay window answers a resend of the same request
  // id with the first answer), so each returns a buffer and none is made twice.
  std::vector<client::PendingReply> replies;
  client::RequestOptions on_lease;
  on_lease.lease_id = lease->lease_id();
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 60; ++i) {
      replies.push_back(conn.send(Opcode::kMemAlloc,
                                  wire::encode_payload(wire::MemAllocRequest{4096}), on_lease));
    }
    proxy.cut();
  }
  std::set<uint64_t> handles;
  for (auto& r : replies) {
    auto rep = r.wait();
    ASSERT_TRUE(rep.ok()) << client::describe(rep.error());
    auto h = Connection::decode_reply_as<wire::HandleReply>(Opcode::kMemAlloc, rep->payload);
    ASSERT_TRUE(h.ok());
    handles.insert(h->handle);
  }
  EXPECT_GE(conn.stats().reconnects, 1u);
  std::printf("reconnects %llu, resent %llu\n",
              static_cast<unsigned long long>(conn.stats().reconnects),
              static_cast<unsigned long long>(conn.stats().resent));
  EXPECT_EQ(handles.size(), 180u);
  auto info = lease->query();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->buffers, 180u);  // no allocation was made twice
}

// The transport reports that LEASE_RELEASE went out twice (resent()); the
// lease code decides what that means: the first copy ended the lease, so the
// resend's LEASE_EXPIRED is a successful release.
TEST(ClientConnection, AReleaseWhoseReplyWasLostIsResentAndCountsAsReleased) {
  TestNode node(client_test_config());
  TcpProxy proxy(node.port());
  const auto token = node.token("t1");
  auto conn = connect_client(proxy.port(), token);
  auto direct = connect_client(node.port(), token);
  auto lease = LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).acquire();
  ASSERT_TRUE(lease.ok()) << client::describe(lease.error());
  proxy.drop_replies(true);
  auto released = std::async(std::launch::async, [&] { return lease->release(); });
  // Bounded: until the node has ended the lease (the reply is being dropped).
  bool ended = false;
  for (int i = 0; i < 2000 && !ended; ++i) {
    auto leases = client::list_leases(direct);
    ASSERT_TRUE(leases.ok()) << client::describe(leases.error());
    ended = leases->empty();
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(ended);
  proxy.drop_replies(false);
  proxy.cut();  // the reply is lost with the connection; the client resends
  auto r = released.get();
  EXPECT_TRUE(r.ok()) << client::describe(r.error());
  EXPECT_GE(conn.stats().resent, 1u);
  // The same through the transport alone: a LEASE_EXPIRED answer, marked resent.
  auto again = LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).acquire();
  ASSERT_TRUE(again.ok());
  client::RequestOptions o;
  o.lease_id = again->lease_id();
  proxy.drop_replies(true);
  auto p = conn.send(Opcode::kLeaseRelease, wire::encode_payload(wire::Empty{}), o);
  ended = false;
  for (int i = 0; i < 2000 && !ended; ++i) {
    auto leases = client::list_leases(direct);
    ASSERT_TRUE(leases.ok());
    ended = leases->empty();
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(ended);
  proxy.drop_replies(false);
  proxy.cut();
  auto raw = p.wait();
  EXPECT_EQ(raw.status(), Status::kLeaseExpired);
  EXPECT_TRUE(p.resent());
  again->detach();
}

TEST(ClientConnection, ClosedConnectionFailsRequestsAsConnectionLost) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  conn.close();
  auto r = conn.ping();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().is_connection_lost()) << r.error().to_string();
}

TEST(ClientConnection, APayloadOverTheNodesLimitFailsWithFrameTooLargeWithoutBeingSent) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  const uint64_t limit = conn.node_info().limits.max_payload_bytes;
  ASSERT_GT(limit, 0u);
  const auto before = conn.stats().requests;
  auto r = conn.call(Opcode::kPing, Bytes(limit + 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), client::ClientStatus::local(Status::kFrameTooLarge))
      << r.error().to_string();
  EXPECT_EQ(conn.stats().requests, before);  // refused before it went out
  EXPECT_TRUE(conn.ping().ok());             // and the connection is unharmed
}

// A node that says HELLO (announcing a large payload limit) and then never
// reads another byte.
class DeafNode {
 public:
  DeafNode() {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~DeafNode() {
    thread_.join();
    if (conn_ >= 0) ::close(conn_);
    ::close(listen_);
  }
  uint16_t port() const { return port_; }

 private:
  void serve() {
    conn_ = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn_ < 0) return;
    wire::HeaderBytes hb;
    if (::recv(conn_, hb.data(), hb.size(), MSG_WAITALL) != static_cast<ssize_t>(hb.size())) return;
    auto h = wire::decode_header(hb, wire::Limits{});
    if (!h) return;
    Bytes body(h->payload_len);
    if (!body.empty() &&
        ::recv(conn_, body.data(), body.size(), MSG_WAITALL) != static_cast<ssize_t>(body.size())) {
      return;
    }
    wire::HelloReply hello;
    hello.node_id = "deaf";
    hello.backend = "sim";
    hello.limits = {1024, 64u << 20, 4, 128, 4096, 256, 3600};
    Bytes payload = wire::encode_payload(hello);
    wire::FrameHeader r;
    r.opcode = wire::Opcode::kHello;
    r.flags = wire::kFlagReply;
    r.request_id = h->request_id;
    auto rb = wire::encode_header(r, {}, payload);
    (void)::send(conn_, rb.data(), rb.size(), MSG_NOSIGNAL);
    (void)::send(conn_, payload.data(), payload.size(), MSG_NOSIGNAL);
  }

  int listen_ = -1;
  int conn_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST(ClientConnection, CloseReturnsWhileASenderIsStuckOnANodeThatStopsReading) {
  DeafNode node;
  client::ConnectOptions o;
  o.reconnect_attempts = 0;
  auto conn = connect_client(node.port(), {}, o);
  std::promise<void> sending;
  std::thread sender([&] {
    client::RequestOptions ro;
    bool once = false;
    ro.progress = [&](uint64_t, uint64_t) {
      if (!std::exchange(once, true)) sending.set_value();
    };
    // Far more than the socket buffers hold: the send blocks on the deaf node.
    auto r = conn.call(Opcode::kPing, Bytes(128u << 20), std::move(ro));
    EXPECT_FALSE(r.ok());
    if (!once) sending.set_value();
  });
  sending.get_future().wait();  // the frame is going out
  std::promise<void> closed;
  std::thread closer([&] {
    conn.close();
    closed.set_value();
  });
  // A liveness check, not a timing one: without the fix this never returns.
  if (closed.get_future().wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "close() blocked behind a sender stuck on a full socket";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  closer.join();
  sender.join();
  EXPECT_EQ(conn.ping().status(), client::ClientStatus::connection_lost());
}

TEST(ClientConnection, ANodeThatDoesNotAnswerIsATimeoutNotBusy) {
  DeafNode node;
  client::ConnectOptions o;
  o.reconnect_attempts = 0;
  auto conn = connect_client(node.port(), {}, o);
  // 50 ms: a poll; 250 ms: blocking receives bounded by the socket's
  // receive timeout (100 ms), then a poll for the rest.
  for (int ms : {50, 250}) {
    client::RequestOptions ro;
    ro.timeout = std::chrono::milliseconds(ms);
    auto r = conn.call(Opcode::kPing, wire::encode_payload(wire::PingRequest{}), ro);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.error().is_timeout()) << r.error().to_string();
    EXPECT_EQ(r.status(), client::ClientStatus::timeout());
    EXPECT_NE(r.status(), Status::kBusy);
    EXPECT_FALSE(r.error().node_status().has_value());
    EXPECT_EQ(r.error().to_string(),
              "TIMEOUT: PING: no reply within " + std::to_string(ms) + " ms");
  }
}

TEST(ClientConnection, AHelloThatGetsNoReplyIsATimeout) {
  // Listens, never accepts: the kernel completes the handshake, nobody answers.
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  client::ConnectOptions o;
  o.node = {"127.0.0.1", ntohs(a.sin_port)};
  o.connect_timeout = std::chrono::milliseconds(50);
  auto c = Connection::connect(o);
  ::close(l);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.error().is_timeout()) << c.error().to_string();
  EXPECT_NE(c.error().message().find("HELLO"), std::string::npos) << c.error().message();
}

TEST(ClientErrors, KindsStatusesAndTheirNames) {
  using client::ClientStatus;
  using client::Error;
  EXPECT_TRUE(ClientStatus{}.ok());
  EXPECT_EQ(ClientStatus{}, Status::kOk);
  EXPECT_EQ(ClientStatus{}.to_string(), "OK");
  const Error node = Error::node(Status::kLeaseExpired, "lease 7 ended");
  EXPECT_EQ(node.kind(), client::StatusKind::kNodeStatus);
  EXPECT_TRUE(node.is_node_status(Status::kLeaseExpired));
  EXPECT_FALSE(node.is_node_status(Status::kBusy));
  EXPECT_TRUE(node.is_lease_lost());
  EXPECT_EQ(node.to_string(), "LEASE_EXPIRED: lease 7 ended");
  EXPECT_EQ(Error::timeout("PING: no reply").to_string(), "TIMEOUT: PING: no reply");
  EXPECT_EQ(Error::connection_lost("gone").to_string(), "CONNECTION_LOST: gone");
  // What wire/ and capability/ return is the library's own finding: local.
  const Error local = make_error(Status::kBadFrame, "short reply");
  EXPECT_TRUE(local.is_local(Status::kBadFrame));
  EXPECT_FALSE(local.is_node_status(Status::kBadFrame));
  EXPECT_FALSE(local.is_lease_lost());
  EXPECT_EQ(local.local_status(), Status::kBadFrame);
  EXPECT_EQ(local.to_string(), "BAD_FRAME (local): short reply");
  EXPECT_FALSE(Error::local(Status::kLeaseExpired, "").is_lease_lost());
  EXPECT_EQ(client::with_context(Error::timeout("no reply"), "LAUNCH").to_string(),
            "TIMEOUT: LAUNCH: no reply");
  // An OK status is not an error: it becomes a local INTERNAL one.
  EXPECT_TRUE(Error(ClientStatus{}, "?").is_local(Status::kInternal));
  // Results convert from the wire's, errors as local.
  client::Result<int> from_wire = gpulease::Result<int>(make_error(Status::kOutOfRange, "x"));
  EXPECT_EQ(from_wire.status(), ClientStatus::local(Status::kOutOfRange));
  client::Result<int> value = gpulease::Result<int>(3);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 3);
  EXPECT_TRUE(value.status().ok());
  client::Result<void> done;
  EXPECT_TRUE(done.ok());
  EXPECT_EQ(done.status(), Status::kOk);
}

TEST(ClientConnection, ClosingFromSeveralThreadsWhileItReconnectsIsSafe) {
  TestNode node(client_test_config());
  for (int round = 0; round < 20; ++round) {
    TcpProxy proxy(node.port());
    client::ConnectOptions o;
    o.reconnect_initial_backoff = std::chrono::milliseconds(0);
    auto conn = connect_client(proxy.port(), {}, o);
    ASSERT_TRUE(conn.ping().ok());
    proxy.cut();
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([conn, t] {
        if (t == 0) (void)conn.ping();  // may revive the connection meanwhile
        conn.close();
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(conn.ping().status(), client::ClientStatus::connection_lost());
  }
}

}  // namespace
}  // namespace gpulease::testing
