// A real node on loopback (sim backend, in-process) and a raw-frame client,
// for the server's integration tests.
#pragma once

#include <gtest/gtest.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "backend_factory.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/permissions.hpp"
#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"
#include "net.hpp"
#include "node.hpp"

namespace gpulease::testing {

using wire::Bytes;
using wire::Opcode;
using wire::Status;

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string ptx(const std::string& name) {
  return read_text(std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/" + name);
}

inline int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One in-process node with a fresh authority whose public key it trusts.
class TestNode {
 public:
  explicit TestNode(server::NodeConfig cfg = small_config())
      : authority_(capability::SecretKey::generate()) {
    cfg.listen_host = "127.0.0.1";
    cfg.listen_port = 0;
    cfg.backend = "sim";
    cfg_ = cfg;
    server::set_log_level(server::LogLevel::kWarn);
    auto backend = server::make_backend(cfg_);
    EXPECT_TRUE(backend.ok());
    node_ = std::make_unique<server::Node>(cfg_, std::move(backend).value(),
                                           capability::SecretKey::generate());
    node_->key_ring().add(authority_.public_key());
    EXPECT_TRUE(node_->start().ok());
    server_ = std::make_unique<server::Server>(*node_, node_->config());
    auto r = server_->start();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  }
  ~TestNode() { stop(); }

  static server::NodeConfig small_config() {
    server::NodeConfig c;
    c.node_id = "test-node";
    c.network_threads = 2;
    c.device_threads = 2;
    c.sim_devices = 1;
    c.sim_device_bytes = 64ull << 20;
    c.reaper_interval_ms = 20;
    c.instruction_budget = 50'000'000;
    return c;
  }

  void stop() {
    if (server_) {
      server_->drain_and_stop();
      server_->wait();
      server_.reset();
    }
    node_.reset();
  }

  uint16_t port() const { return server_->port(); }
  server::Node& node() { return *node_; }
  server::Server& server() { return *server_; }

  // A token from the test authority.
  Bytes token(const std::string& tenant,
              capability::PermissionSet perms = capability::kAllPermissions, int64_t ttl_s = 600,
              uint64_t lease = 0, uint64_t max_vram = 0, const std::string& audience = "test-node",
              int64_t not_before_offset = -5) const {
    capability::Claims c;
    c.tenant = tenant;
    c.audience = audience;
    c.lease_id = lease;
    c.perms = perms;
    c.not_before = static_cast<uint64_t>(now_s() + not_before_offset);
    c.expires_at = static_cast<uint64_t>(now_s() + ttl_s);
    c.token_id = capability::random_token_id();
    c.max_vram = max_vram;
    auto t = authority_.mint(c);
    EXPECT_TRUE(t.ok());
    return t.ok() ? std::move(t).value() : Bytes{};
  }

 private:
  server::NodeConfig cfg_;
  capability::Authority authority_;
  std::unique_ptr<server::Node> node_;
  std::unique_ptr<server::Server> server_;
};

struct RawReply {
  wire::FrameHeader header;
  Bytes payload;
  Status status() const { return header.status; }
  std::string message() const { return std::string(wire::as_chars(payload)); }
  template <typename M>
  M as() const {
    auto m = wire::decode_payload<M>(payload, wire::Limits{});
    EXPECT_TRUE(m.ok()) << "reply does not decode";
    return m.ok() ? std::move(m).value() : M{};
  }
};

// A blocking client that speaks raw frames, so tests can also send bad ones.
class RawClient {
 public:
  // `receive_buffer` > 0: the socket's SO_RCVBUF, set before it connects
  // (a slow reader: the node's replies stay in its own queue sooner).
  // `source`: the local address to connect from (another address of 127/8
  // looks like another client host to the node).
  explicit RawClient(uint16_t port, int receive_buffer = 0, const char* source = nullptr)
      : sock_(io_) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    if (receive_buffer > 0 || source != nullptr) sock_.open(asio::ip::tcp::v4());
    if (receive_buffer > 0) {
      sock_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    }
    if (source != nullptr) {
      sock_.bind(asio::ip::tcp::endpoint(asio::ip::make_address(source), 0));
    }
    sock_.connect(ep);
    sock_.set_option(asio::ip::tcp::no_delay(true));
  }

  void send_bytes(wire::ByteSpan b) { asio::write(sock_, asio::buffer(b.data(), b.size())); }

  uint64_t send(Opcode op, uint64_t lease, wire::ByteSpan token, wire::ByteSpan payload,
                std::optional<uint64_t> request_id = std::nullopt) {
    wire::FrameHeader h;
    h.opcode = op;
    h.request_id = request_id ? *request_id : next_id_++;
    h.lease_id = lease;
    send_bytes(wire::encode_frame(h, token, payload));
    return h.request_id;
  }

  // Reads one reply; nullopt when the node closed the connection.
  std::optional<RawReply> recv() {
    wire::HeaderBytes hb;
    asio::error_code ec;
    asio::read(sock_, asio::buffer(hb), ec);
    if (ec) return std::nullopt;
    auto h = wire::decode_header(hb, wire::Limits{});
    EXPECT_TRUE(h.ok()) << "reply header does not decode";
    if (!h) return std::nullopt;
    RawReply r{*h, Bytes(h->payload_len)};
    asio::read(sock_, asio::buffer(r.payload), ec);
    if (ec) return std::nullopt;
    EXPECT_EQ(wire::frame_checksum(hb, {}, r.payload), h->checksum);
    EXPECT_TRUE(h->is_reply());
    return r;
  }

  RawReply call(Opcode op, uint64_t lease, wire::ByteSpan token, wire::ByteSpan payload) {
    uint64_t id = send(op, lease, token, payload);
    auto r = recv();
    EXPECT_TRUE(r.has_value()) << "connection closed";
    if (!r) return RawReply{};
    EXPECT_EQ(r->header.request_id, id);
    EXPECT_EQ(r->header.opcode, op);
    return *r;
  }

  template <typename M>
  RawReply call(Opcode op, uint64_t lease, wire::ByteSpan token, const M& msg) {
    Bytes p = wire::encode_payload(msg);
    return call(op, lease, token, wire::ByteSpan(p));
  }

  // True once the node has closed the connection (reads EOF).
  bool closed_by_peer() {
    std::array<std::byte, 1> b;
    asio::error_code ec;
    sock_.read_some(asio::buffer(b), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  void close() {
    asio::error_code ec;
    sock_.close(ec);
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket sock_;
  uint64_t next_id_ = 1000;
};

// Convenience: acquire a lease and return its id (asserting success).
inline uint64_t acquire(RawClient& c, wire::ByteSpan tok, uint64_t bytes = 1 << 20,
                        uint32_t ttl = 60, uint8_t flags = 0) {
  wire::LeaseAcquireRequest req;
  req.min_vram = bytes;
  req.ttl_s = ttl;
  req.flags = flags;
  auto r = c.call(Opcode::kLeaseAcquire, 0, tok, req);
  EXPECT_EQ(r.status(), Status::kOk) << r.message();
  return r.status() == Status::kOk ? r.as<wire::LeaseAcquireReply>().lease_id : 0;
}

inline uint64_t alloc(RawClient& c, uint64_t lease, wire::ByteSpan tok, uint64_t size) {
  auto r = c.call(Opcode::kMemAlloc, lease, tok, wire::MemAllocRequest{size});
  EXPECT_EQ(r.status(), Status::kOk) << r.message();
  return r.status() == Status::kOk ? r.as<wire::HandleReply>().handle : 0;
}

inline uint64_t load_module(RawClient& c, uint64_t lease, wire::ByteSpan tok,
                            const std::string& text) {
  wire::ModuleLoadRequest m;
  m.image = wire::to_bytes(text);
  auto r = c.call(Opcode::kModuleLoad, lease, tok, m);
  EXPECT_EQ(r.status(), Status::kOk) << r.message();
  return r.status() == Status::kOk ? r.as<wire::HandleReply>().handle : 0;
}

template <typename T>
Bytes pod_bytes(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <typename T>
std::vector<T> from_bytes(const Bytes& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Typed launch args.
struct Args {
  wire::KernelArgs a{wire::ArgForm::kTyped, {}, {}, {}};
  Args& buf(uint64_t h, uint64_t off = 0) {
    wire::TypedArg t;
    t.kind = wire::TypedArgKind::kBuffer;
    t.handle = h;
    t.offset = off;
    a.typed.push_back(t);
    return *this;
  }
  template <typename T>
  Args& scalar(T v) {
    wire::TypedArg t;
    t.scalar.resize(sizeof(T));
    std::memcpy(t.scalar.data(), &v, sizeof(T));
    a.typed.push_back(t);
    return *this;
  }
};

inline wire::LaunchRequest launch_req(uint64_t module, const std::string& kernel, uint32_t grid,
                                      uint32_t block, const Args& args) {
  wire::LaunchRequest l;
  l.module = module;
  l.kernel = kernel;
  l.grid = {grid, 1, 1};
  l.block = {block, 1, 1};
  l.args = args.a;
  return l;
}

// Polls `pred` for up to `timeout`; true once it holds.
template <typename P>
bool eventually(P pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace gpulease::testing
