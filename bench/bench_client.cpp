// The client library against minimal raw clients measured in the same run,
// in the same iteration (so the ratio compares like with like on a noisy
// machine), on loopback, against an in-process node (sim backend):
//  - BM_ClientPingVsRawEcho: PING round trips through the library vs the same
//    PING frame through a raw blocking socket, to a raw frame-echo server
//    (the network's round trip) and to the node (the node's PING).
//  - BM_ClientLaunchesPipelinedVsRaw: 256 small LAUNCH frames pipelined
//    through Session::launch_with_args vs the same frames written by a raw
//    client that keeps the node's max_inflight requests in flight, and vs
//    the same frames pipelined to the raw echo server.
//  - BM_ClientRecipe53VsRaw: one recipe-53-style request (acquire, alloc,
//    write, load, launch, sync, read, unload, free, release) through the
//    library vs the same frames, each awaited, from a raw client.
// Each prints its ratios as counters (lib_vs_raw_*: library time / raw time,
// or library rate / raw rate for the pipelined one).
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend_factory.hpp"
#include "gpulease/capability/authority.hpp"
#include "gpulease/client/client.hpp"
#include "net.hpp"
#include "node.hpp"

namespace {

using namespace gpulease;
namespace gl = gpulease::client;
using Clock = std::chrono::steady_clock;
using wire::Bytes;
using wire::Opcode;

constexpr int kBatch = 256;
constexpr int kPings = 200;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int tcp_connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect failed");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool send_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool writev_all(int fd, iovec* iov, int n) {
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w <= 0) return false;
    size_t left = static_cast<size_t>(w);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

bool recv_all(int fd, std::byte* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// A raw frame-echo server on loopback: reads a frame, writes it back as a
// reply carrying the token and payload as its payload. One thread per
// connection; blocking sockets.
class RawEchoServer {
 public:
  RawEchoServer() {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_, 8) != 0)
      throw std::runtime_error("echo server: bind/listen failed");
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0 || stop_) {
          if (c >= 0) ::close(c);
          return;
        }
        int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns_.emplace_back([c] { serve(c); });
      }
    });
  }
  ~RawEchoServer() {
    stop_ = true;
    ::close(tcp_connect_loopback(port_));  // wakes accept
    accept_.join();
    for (auto& t : conns_) t.join();
    ::close(listen_);
  }
  uint16_t port() const { return port_; }

 private:
  static void serve(int c) {
    wire::HeaderBytes hb;
    Bytes body;
    for (;;) {
      if (!recv_all(c, hb.data(), hb.size())) break;
      const size_t n = wire::load_le32(hb.data() + wire::kOffTokenLen) +
                       size_t{wire::load_le32(hb.data() + wire::kOffPayloadLen)};
      body.resize(n);
      if (!recv_all(c, body.data(), n)) break;
      wire::store_le32(hb.data() + wire::kOffTokenLen, 0);
      wire::store_le32(hb.data() + wire::kOffPayloadLen, static_cast<uint32_t>(n));
      // Header and body in one segment, as the node writes a reply (two
      // sends would cost the client an extra wake-up per reply).
      iovec iov[2] = {{hb.data(), hb.size()}, {body.data(), n}};
      if (!writev_all(c, iov, 2)) break;
    }
    ::close(c);
  }
  int listen_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_;
  std::vector<std::thread> conns_;
};

// The smallest client that speaks the protocol: builds a frame, writes it,
// reads a reply. No reconnect, no matching beyond FIFO order, no checks but
// the status.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : fd_(tcp_connect_loopback(port)) {}
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  Bytes frame(Opcode op, uint64_t lease, wire::ByteSpan token, wire::ByteSpan payload) {
    wire::FrameHeader h;
    h.opcode = op;
    h.lease_id = lease;
    h.request_id = ++id_;
    return wire::encode_frame(h, token, payload);
  }
  void send(const Bytes& f) {
    if (!send_all(fd_, f.data(), f.size())) throw std::runtime_error("raw send failed");
  }
  // Reads one reply; throws on a non-OK status.
  Bytes receive() {
    wire::HeaderBytes hb;
    if (!recv_all(fd_, hb.data(), hb.size())) throw std::runtime_error("raw recv failed");
    auto h = wire::decode_header(hb, wire::Limits{});
    if (!h) throw std::runtime_error("raw: bad reply header");
    Bytes p(h->payload_len);
    if (!recv_all(fd_, p.data(), p.size())) throw std::runtime_error("raw recv failed");
    if (h->status != wire::Status::kOk)
      throw std::runtime_error("raw: " + std::string(wire::status_name(h->status)));
    return p;
  }
  Bytes call(Opcode op, uint64_t lease, wire::ByteSpan token, wire::ByteSpan payload) {
    send(frame(op, lease, token, payload));
    return receive();
  }
  template <typename M>
  Bytes call_msg(Opcode op, uint64_t lease, wire::ByteSpan token, const M& m) {
    return call(op, lease, token, wire::encode_payload(m));
  }

 private:
  int fd_;
  uint64_t id_ = 0;
};

struct Fixture {
  // `network_threads`: the node's (0: its default, one per core).
  explicit Fixture(unsigned network_threads = 0) : authority(capability::SecretKey::generate()) {
    server::NodeConfig cfg;
    cfg.node_id = "bench-node";
    cfg.listen_host = "127.0.0.1";
    cfg.listen_port = 0;
    cfg.backend = "sim";
    cfg.sim_device_bytes = 256u << 20;
    cfg.network_threads = network_threads;
    cfg.log_level = server::LogLevel::kWarn;
    server::set_log_level(cfg.log_level);
    node = std::make_unique<server::Node>(cfg, server::make_backend(cfg).value(),
                                          capability::SecretKey::generate());
    node->key_ring().add(authority.public_key());
    (void)node->start();
    srv = std::make_unique<server::Server>(*node, node->config());
    (void)srv->start();
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    capability::Claims c;
    c.tenant = "bench";
    c.audience = "bench-node";
    c.perms = capability::kAllPermissions;
    c.not_before = static_cast<uint64_t>(now - 5);
    c.expires_at = static_cast<uint64_t>(now + 3600);
    c.token_id = capability::random_token_id();
    token = authority.mint(c).value();
    gl::ConnectOptions o;
    o.node = {"127.0.0.1", srv->port()};
    o.token = token;
    conn.emplace(gl::Connection::connect(o).value());
  }
  ~Fixture() {
    conn.reset();
    srv->drain_and_stop();
    srv->wait();
  }
  uint16_t port() const { return srv->port(); }
  capability::Authority authority;
  Bytes token;
  std::unique_ptr<server::Node> node;
  std::unique_ptr<server::Server> srv;
  std::optional<gl::Connection> conn;
};

std::string read_ptx(const std::string& name) {
  std::ifstream f(std::string(GPULEASE_PTX_DIR) + "/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---- PING ----------------------------------------------------------------------

// Arg: the node's network threads (0: its default). With one, no reply
// waits for a hand-off between the node's threads; with the default (two on
// a 2-core machine) some connections' frames are handed to the node's other
// network thread (docs/BENCHMARKS.md).
void BM_ClientPingVsRawEcho(benchmark::State& state) {
  Fixture fx(static_cast<unsigned>(state.range(0)));
  RawEchoServer echo;
  RawClient raw_echo(echo.port());
  RawClient raw_node(fx.port());
  const Bytes ping = wire::encode_payload(wire::PingRequest{});
  // The three kinds of round trip take turns, one each, so the machine's
  // load drifts over all three alike; every round trip is timed on its own.
  std::vector<double> lib_t, echo_t, node_t;
  double lib_s = 0, echo_s = 0, node_s = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    for (int i = 0; i < kPings; ++i) {
      const auto t0 = Clock::now();
      if (!fx.conn->ping()) state.SkipWithError("ping failed");
      const auto t1 = Clock::now();
      (void)raw_echo.call(Opcode::kPing, 0, {}, ping);
      const auto t2 = Clock::now();
      (void)raw_node.call(Opcode::kPing, 0, {}, ping);
      const auto t3 = Clock::now();
      lib_t.push_back(seconds(t1 - t0));
      echo_t.push_back(seconds(t2 - t1));
      node_t.push_back(seconds(t3 - t2));
      lib_s += lib_t.back();
      echo_s += echo_t.back();
      node_s += node_t.back();
    }
    state.SetIterationTime(seconds(Clock::now() - start));
  }
  const double dn = static_cast<double>(lib_t.size());
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const double lib_m = median(lib_t), echo_m = median(echo_t), node_m = median(node_t);
  state.counters["lib_us"] = 1e6 * lib_s / dn;
  state.counters["raw_echo_us"] = 1e6 * echo_s / dn;
  state.counters["raw_node_us"] = 1e6 * node_s / dn;
  state.counters["lib_vs_raw_echo"] = lib_s / echo_s;  // goal <= 1.3 (means)
  state.counters["lib_vs_raw_node"] = lib_s / node_s;
  // Medians: a round trip that lost its core to another process counts once.
  state.counters["lib_p50_us"] = 1e6 * lib_m;
  state.counters["raw_echo_p50_us"] = 1e6 * echo_m;
  state.counters["raw_node_p50_us"] = 1e6 * node_m;
  state.counters["p50_lib_vs_raw_echo"] = lib_m / echo_m;  // goal <= 1.3 (medians)
  state.counters["p50_lib_vs_raw_node"] = lib_m / node_m;
}
BENCHMARK(BM_ClientPingVsRawEcho)
    ->ArgName("node_network_threads")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---- Pipelined launches ---------------------------------------------------------------

// Sends `n` frames of `op` (each built here, with a fresh request id, as any
// client must: the node's replay window would answer a repeated id from its
// cache) keeping at most `window` in flight; reads every reply.
void raw_pipeline(RawClient& c, int n, size_t window, Opcode op, uint64_t lease,
                  wire::ByteSpan token, wire::ByteSpan payload) {
  size_t sent = 0, got = 0;
  const size_t total = static_cast<size_t>(n);
  while (got < total) {
    while (sent < total && sent - got < window) {
      c.send(c.frame(op, lease, token, payload));
      ++sent;
    }
    (void)c.receive();
    ++got;
  }
}

void BM_ClientLaunchesPipelinedVsRaw(benchmark::State& state) {
  Fixture fx;
  auto lease = gl::LeaseBuilder(*fx.conn).min_vram(1 << 20).lease_secs(600).acquire();
  if (!lease) {
    state.SkipWithError(gl::describe(lease.error()).c_str());
    return;
  }
  gl::Session s(*lease);
  auto buf = s.mem_alloc(4).value();
  const std::string ptx = read_ptx("transform.ptx");
  auto mod = s.module_load(wire::as_bytes(ptx)).value();
  const auto args = gl::KernelArgs().push_buffer(buf).push_i32(1).push_f32(1.0f);
  const size_t window = fx.conn->node_info().limits.max_inflight;

  // The same LAUNCH frames for the raw clients (same lease, token, module).
  RawClient raw(fx.port());
  RawEchoServer echo;
  RawClient raw_echo(echo.port());
  const wire::LaunchRequest req{mod.handle, "scale", {1, 1, 1}, {1, 1, 1}, 0, args.wire_args()};
  const Bytes launch = wire::encode_payload(req);
  const Bytes sync = wire::encode_payload(wire::Empty{});

  double lib_s = 0, raw_s = 0, echo_s = 0;
  int64_t launches = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i)
      (void)s.launch_with_args(mod, "scale", {1, 1, 1}, {1, 1, 1}, args);
    if (!s.flush()) state.SkipWithError("pipelined launch failed");
    auto t1 = Clock::now();
    (void)s.sync();
    auto t2 = Clock::now();
    raw_pipeline(raw, kBatch, window, Opcode::kLaunch, lease->lease_id(), fx.token, launch);
    auto t3 = Clock::now();
    (void)raw.call(Opcode::kSync, lease->lease_id(), fx.token, sync);
    auto t4 = Clock::now();
    raw_pipeline(raw_echo, kBatch, window, Opcode::kLaunch, lease->lease_id(), fx.token, launch);
    auto t5 = Clock::now();
    lib_s += seconds(t1 - t0);
    raw_s += seconds(t3 - t2);
    echo_s += seconds(t5 - t4);
    launches += kBatch;
    state.SetIterationTime(seconds(t1 - t0) + seconds(t3 - t2) + seconds(t5 - t4));
  }
  const double dl = static_cast<double>(launches);
  state.counters["lib_launches_per_s"] = dl / lib_s;
  state.counters["raw_launches_per_s"] = dl / raw_s;
  state.counters["raw_echo_frames_per_s"] = dl / echo_s;
  state.counters["lib_vs_raw"] = raw_s / lib_s;  // rate ratio; goal >= 0.8
  state.counters["lib_vs_raw_echo"] = echo_s / lib_s;
}
BENCHMARK(BM_ClientLaunchesPipelinedVsRaw)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- A recipe-53-style request ------------------------------------------------------

void BM_ClientRecipe53VsRaw(benchmark::State& state) {
  Fixture fx;
  RawClient raw(fx.port());
  const std::string ptx = read_ptx("transform.ptx");
  const Bytes image(reinterpret_cast<const std::byte*>(ptx.data()),
                    reinterpret_cast<const std::byte*>(ptx.data()) + ptx.size());
  Bytes data(4096, std::byte{1});
  constexpr uint32_t kElems = 1024;
  double lib_s = 0, raw_s = 0;
  int64_t n = 0;
  for (auto _ : state) {
    // Through the library, as a gateway would write it.
    auto t0 = Clock::now();
    {
      auto lease = gl::LeaseBuilder(*fx.conn).min_vram(1 << 20).lease_secs(60).acquire();
      if (!lease) {
        state.SkipWithError(gl::describe(lease.error()).c_str());
        return;
      }
      gl::Session s(*lease);
      auto buf = s.mem_alloc(data.size()).value();
      (void)s.mem_write(buf, 0, data);
      auto mod = s.module_load(image).value();
      (void)s.launch_with_args(mod, "scale", {4, 1, 1}, {256, 1, 1},
                               gl::KernelArgs().push_buffer(buf).push_i32(kElems).push_f32(2.0f));
      if (!s.sync()) state.SkipWithError("sync failed");
      if (!s.mem_read(buf, 0, data.size())) state.SkipWithError("read failed");
      (void)s.module_unload(mod);
      (void)s.mem_free(buf);
      if (!lease->release()) state.SkipWithError("release failed");
    }
    auto t1 = Clock::now();
    // The same frames from the raw client, each awaited.
    {
      wire::LeaseAcquireRequest acq;
      acq.min_vram = 1 << 20;
      acq.ttl_s = 60;
      auto ar = wire::decode_payload<wire::LeaseAcquireReply>(
          raw.call_msg(Opcode::kLeaseAcquire, 0, fx.token, acq), wire::Limits{});
      const uint64_t lease = ar->lease_id;
      auto buf =
          wire::decode_payload<wire::HandleReply>(
              raw.call_msg(Opcode::kMemAlloc, lease, fx.token, wire::MemAllocRequest{data.size()}),
              wire::Limits{})
              ->handle;
      (void)raw.call_msg(Opcode::kMemWrite, lease, fx.token, wire::MemWriteRequest{buf, 0, data});
      auto mod = wire::decode_payload<wire::HandleReply>(
                     raw.call_msg(Opcode::kModuleLoad, lease, fx.token,
                                  wire::ModuleLoadRequest{wire::ImageFormat::kPtx, image}),
                     wire::Limits{})
                     ->handle;
      const auto args = gl::KernelArgs()
                            .push_buffer(gl::DeviceBuffer{buf, data.size()})
                            .push_i32(kElems)
                            .push_f32(2.0f);
      (void)raw.call_msg(
          Opcode::kLaunch, lease, fx.token,
          wire::LaunchRequest{mod, "scale", {4, 1, 1}, {256, 1, 1}, 0, args.wire_args()});
      (void)raw.call_msg(Opcode::kSync, lease, fx.token, wire::Empty{});
      (void)raw.call_msg(Opcode::kMemRead, lease, fx.token,
                         wire::MemReadRequest{buf, 0, static_cast<uint32_t>(data.size())});
      (void)raw.call_msg(Opcode::kModuleUnload, lease, fx.token, wire::HandleRequest{mod});
      (void)raw.call_msg(Opcode::kMemFree, lease, fx.token, wire::HandleRequest{buf});
      (void)raw.call_msg(Opcode::kLeaseRelease, lease, fx.token, wire::Empty{});
    }
    auto t2 = Clock::now();
    lib_s += seconds(t1 - t0);
    raw_s += seconds(t2 - t1);
    ++n;
    state.SetIterationTime(seconds(t2 - t0));
  }
  const double dn = static_cast<double>(n);
  state.counters["lib_us"] = 1e6 * lib_s / dn;
  state.counters["raw_us"] = 1e6 * raw_s / dn;
  state.counters["lib_vs_raw"] = lib_s / raw_s;  // goal <= 1.3
}
BENCHMARK(BM_ClientRecipe53VsRaw)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
