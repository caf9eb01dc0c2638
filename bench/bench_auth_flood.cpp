// A good tenant's session while another address floods the node with tokens
// whose signature does not verify (issue 11, "bad-signature token flood"),
// with and without the per-address limit on failed verifications
// (--auth-failures-per-second), against the same session with no flood,
// measured in the same run:
//   BM_GoodSession/flood:0/limit:20   the baseline
//   BM_GoodSession/flood:1/limit:0    the flood, no limit (every bad token checked)
//   BM_GoodSession/flood:1/limit:20   the flood, the default limit
// Each iteration is a new connection from 127.0.0.1 with a fresh token
// (one Ed25519 check): LEASE_ACQUIRE, MEM_ALLOC, MEM_WRITE and MEM_READ of
// 4 KiB, LEASE_RELEASE. The flood: 4 connections from 127.0.0.2, 32 frames
// in flight each, reconnecting whenever the node closes one. Counters: p50
// and p99 of a session (us), and the signature checks per second the node
// ran for the flood (all checks less one per good session).
#include <benchmark/benchmark.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "backend_factory.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"
#include "net.hpp"
#include "node.hpp"

namespace {

using namespace gpulease;
using asio::ip::tcp;
using wire::Bytes;
using wire::Opcode;
using wire::Status;

class Client {
 public:
  Client(uint16_t port, const char* source) : s_(io_) {
    s_.open(tcp::v4());
    s_.bind(tcp::endpoint(asio::ip::make_address(source), 0));
    s_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    s_.set_option(tcp::no_delay(true));
  }
  void send(Opcode op, uint64_t lease, wire::ByteSpan token, wire::ByteSpan payload) {
    wire::FrameHeader h;
    h.opcode = op;
    h.lease_id = lease;
    h.request_id = ++id_;
    asio::write(s_, asio::buffer(wire::encode_frame(h, token, payload)));
  }
  // False when the node closed the connection.
  bool recv(Status& s, Bytes& payload) {
    wire::HeaderBytes hb;
    asio::error_code ec;
    asio::read(s_, asio::buffer(hb), ec);
    if (ec) return false;
    payload.resize(wire::load_le32(hb.data() + wire::kOffPayloadLen));
    asio::read(s_, asio::buffer(payload), ec);
    if (ec) return false;
    s = static_cast<Status>(wire::load_le16(hb.data() + wire::kOffStatus));
    return true;
  }
  template <typename M>
  Bytes call(Opcode op, uint64_t lease, wire::ByteSpan token, const M& m) {
    send(op, lease, token, wire::encode_payload(m));
    Status s = Status::kInternal;
    Bytes p;
    if (!recv(s, p) || s != Status::kOk) throw std::runtime_error("good session failed");
    return p;
  }

 private:
  asio::io_context io_;
  tcp::socket s_;
  uint64_t id_ = 0;
};

class Node {
 public:
  explicit Node(uint32_t limit) : authority_(capability::SecretKey::generate()) {
    server::NodeConfig cfg;
    cfg.listen_port = 0;
    cfg.backend = "sim";
    cfg.node_id = "bench-node";
    cfg.network_threads = 2;
    cfg.device_threads = 2;
    cfg.sim_device_bytes = 256ull << 20;
    cfg.auth_failures_per_second = limit;
    server::set_log_level(server::LogLevel::kError);
    node_ = std::make_unique<server::Node>(cfg, server::make_backend(cfg).value(),
                                           capability::SecretKey::generate());
    node_->key_ring().add(authority_.public_key());
    (void)node_->start();
    srv_ = std::make_unique<server::Server>(*node_, node_->config());
    (void)srv_->start();
  }
  ~Node() {
    srv_->drain_and_stop();
    srv_->wait();
  }
  Bytes token(const std::string& tenant) const {
    capability::Claims c;
    c.tenant = tenant;
    c.audience = "bench-node";
    c.perms = capability::kAllPermissions;
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    c.not_before = static_cast<uint64_t>(now - 5);
    c.expires_at = static_cast<uint64_t>(now + 3600);
    c.token_id = capability::random_token_id();
    return authority_.mint(c).value();
  }
  uint16_t port() const { return srv_->port(); }
  uint64_t checks() const { return node_->token_signature_checks(); }

 private:
  capability::Authority authority_;
  std::unique_ptr<server::Node> node_;
  std::unique_ptr<server::Server> srv_;
};

void good_session(const Node& n) {
  Client c(n.port(), "127.0.0.1");
  const Bytes tok = n.token("good");
  Bytes p = c.call(Opcode::kLeaseAcquire, 0, tok, wire::LeaseAcquireRequest{1u << 20, 60});
  const uint64_t lease = wire::decode_payload<wire::LeaseAcquireReply>(p, {}).value().lease_id;
  p = c.call(Opcode::kMemAlloc, lease, tok, wire::MemAllocRequest{4096});
  const uint64_t buf = wire::decode_payload<wire::HandleReply>(p, {}).value().handle;
  c.call(Opcode::kMemWrite, lease, tok, wire::MemWriteRequest{buf, 0, Bytes(4096)});
  c.call(Opcode::kMemRead, lease, tok, wire::MemReadRequest{buf, 0, 4096});
  c.call(Opcode::kLeaseRelease, lease, tok, wire::Empty{});
}

void BM_GoodSession(benchmark::State& state) {
  const bool flood = state.range(0) != 0;
  Node node(static_cast<uint32_t>(state.range(1)));
  Bytes bad = node.token("mallory");
  bad.back() ^= std::byte{1};  // the signature no longer verifies
  std::atomic<bool> stop{false};
  std::vector<std::thread> flooders;
  for (int t = 0; flood && t < 4; ++t) {
    flooders.emplace_back([&] {
      while (!stop) {
        try {
          Client c(node.port(), "127.0.0.2");
          for (bool open = true; open && !stop;) {
            for (int i = 0; i < 32; ++i) c.send(Opcode::kLeaseList, 0, bad, {});
            Status s;
            Bytes p;
            for (int i = 0; i < 32 && open; ++i) open = c.recv(s, p);
          }
        } catch (const std::exception&) {
          // The node closed the connection mid-write: connect again.
        }
      }
    });
  }
  good_session(node);  // warm up
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const uint64_t checks0 = node.checks();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> us;
  for (auto _ : state) {
    auto a = std::chrono::steady_clock::now();
    good_session(node);
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t checks = node.checks() - checks0;
  stop = true;
  for (auto& t : flooders) t.join();
  std::sort(us.begin(), us.end());
  if (!us.empty()) {
    state.counters["p50_us"] = us[us.size() / 2];
    state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  }
  // Each good session's fresh token is one check; the rest are the flood's.
  const uint64_t flood_checks = checks - std::min<uint64_t>(checks, state.iterations());
  state.counters["flood_checks_per_s"] = secs > 0 ? static_cast<double>(flood_checks) / secs : 0;
}
BENCHMARK(BM_GoodSession)
    ->ArgNames({"flood", "limit"})
    ->Args({0, 20})
    ->Args({1, 0})
    ->Args({1, 20})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
