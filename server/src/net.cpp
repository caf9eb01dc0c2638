#include "net.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <deque>

#include "gpulease/wire/host_port.hpp"
#include "log.hpp"

namespace gpulease::server {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using wire::Bytes;
using wire::Status;
using Clock = std::chrono::steady_clock;

namespace {
constexpr size_t kMaxFramesPerWrite = 64;
constexpr auto kDrainWait = std::chrono::seconds(10);
}  // namespace

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket sock, Server& srv, Node& node, const NodeConfig& cfg, uint64_t id,
             std::string peer)
      : sock_(std::move(sock)),
        srv_(srv),
        node_(node),
        cfg_(cfg),
        id_(id),
        peer_(std::move(peer)),
        write_signal_(sock_.get_executor()),
        watchdog_(sock_.get_executor()) {}

  void start() {
    auto self = shared_from_this();
    asio::error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(
        sock_.get_executor(), [self] { return self->reader(); }, asio::detached);
    asio::co_spawn(
        sock_.get_executor(), [self] { return self->writer(); }, asio::detached);
    asio::co_spawn(
        sock_.get_executor(), [self] { return self->watchdog(); }, asio::detached);
  }

  // Thread-safe: queues a reply frame.
  void send(const wire::FrameHeader& req, uint16_t raw_opcode, Status s, Bytes payload) {
    wire::FrameHeader h;
    h.opcode = static_cast<wire::Opcode>(raw_opcode);
    h.flags = wire::kFlagReply;
    h.status = s;
    h.request_id = req.request_id;
    h.lease_id = req.lease_id;
    auto out = std::make_shared<OutFrame>();
    out->payload = std::move(payload);
    out->header = wire::encode_header(h, {}, out->payload);
    asio::post(sock_.get_executor(),
               [self = shared_from_this(), out] { self->enqueue(std::move(*out)); });
  }

  // Graceful close (drain): the writer sends every queued reply, then closes.
  void close_after_flush() {
    asio::post(sock_.get_executor(), [self = shared_from_this()] {
      self->close_after_flush_ = true;
      self->write_signal_.cancel();
    });
  }

  std::string_view peer() const { return peer_; }
  uint64_t id() const { return id_; }
  uint32_t inflight() const { return inflight_.load(); }

 private:
  struct OutFrame {
    wire::HeaderBytes header;
    Bytes payload;
  };

  // REQUIRES: on the strand.
  void enqueue(OutFrame f) {
    if (closed_) return;
    outq_.push_back(std::move(f));
    write_signal_.cancel();
  }

  awaitable<void> reader() {
    wire::HeaderBytes hb;
    for (;;) {
      deadline_ = Clock::now() + std::chrono::milliseconds(cfg_.idle_timeout_ms);
      mid_frame_ = false;
      asio::error_code ec;
      co_await asio::async_read(sock_, asio::buffer(hb), asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      mid_frame_ = true;
      deadline_ = Clock::now() + std::chrono::milliseconds(cfg_.frame_timeout_ms);
      node_.metrics().bytes_in.fetch_add(hb.size(), std::memory_order_relaxed);
      wire::FrameHeader echo;  // what a reply to an unreadable frame echoes
      echo.request_id = wire::load_le64(hb.data() + wire::kOffRequestId);
      echo.lease_id = wire::load_le64(hb.data() + wire::kOffLeaseId);
      uint16_t raw_op = wire::load_le16(hb.data() + wire::kOffOpcode);
      // SECURITY: the stream cannot be trusted past a bad magic or an
      // oversize length: answer and close without reading further.
      if (wire::load_le32(hb.data()) != wire::kMagic) {
        reject(echo, 0, Status::kBadFrame, "bad magic", true);
        break;
      }
      uint32_t token_len = wire::load_le32(hb.data() + wire::kOffTokenLen);
      uint32_t payload_len = wire::load_le32(hb.data() + wire::kOffPayloadLen);
      if (token_len > cfg_.limits.max_token_bytes || payload_len > cfg_.limits.max_payload_bytes) {
        reject(echo, raw_op, Status::kFrameTooLarge,
               "declared length exceeds the limit (token " +
                   std::to_string(cfg_.limits.max_token_bytes) + ", payload " +
                   std::to_string(cfg_.limits.max_payload_bytes) + " bytes)",
               true);
        break;
      }
      // Lengths are bounded: read the body (a MEM_WRITE payload lands here
      // once and is handed to the device without another copy).
      const size_t body_len = size_t{token_len} + payload_len;
      // Backpressure: frame bodies held across all connections are bounded;
      // past the budget the reader waits (the frame deadline still runs).
      while (!srv_.body_pool().within_budget(body_len)) {
        asio::steady_timer wait(sock_.get_executor(), std::chrono::milliseconds(1));
        co_await wait.async_wait(asio::redirect_error(use_awaitable, ec));
        if (closed_) co_return;
      }
      auto body = srv_.body_pool().take(body_len);
      co_await asio::async_read(sock_, asio::buffer(body->data(), body_len),
                                asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      node_.metrics().bytes_in.fetch_add(body_len, std::memory_order_relaxed);
      wire::ByteSpan token(body->data(), token_len);
      wire::ByteSpan payload(body->data() + token_len, payload_len);
      if (wire::frame_checksum(hb, token, payload) !=
          wire::load_le64(hb.data() + wire::kOffChecksum)) {
        reject(echo, raw_op, Status::kChecksumMismatch, "frame checksum mismatch", true);
        break;
      }
      auto h = wire::decode_header(hb, cfg_.limits);
      if (!h) {
        // The frame was read whole, so the stream is still in step; only a
        // version we do not speak may lay out what follows differently.
        bool fatal = h.status() == Status::kUnsupportedVersion;
        reject(echo, raw_op, h.status(), h.error().message, fatal);
        if (fatal) break;
        continue;
      }
      if (h->is_reply()) {
        reject(echo, raw_op, Status::kBadFrame, "a reply frame was sent to the node", false);
        continue;
      }
      if (inflight_.load() >= cfg_.limits.max_inflight) {
        reject(
            *h, raw_op, Status::kBusy,
            "too many requests in flight (limit " + std::to_string(cfg_.limits.max_inflight) + ")",
            false);
        continue;
      }
      // Counted before the draining check, so a drain that sees no request in
      // flight can be sure none is about to enter the node.
      inflight_.fetch_add(1);
      srv_.inflight_total.fetch_add(1);
      if (srv_.draining()) {
        inflight_.fetch_sub(1);
        srv_.inflight_total.fetch_sub(1);
        reject(*h, raw_op, Status::kBusy, "node is draining", false);
        continue;
      }
      auto self = shared_from_this();
      wire::FrameHeader req = *h;
      node_.handle(req, std::move(body), id_, [self, req, raw_op](Status s, Bytes p) {
        // Count the request done before its reply can reach the client, so
        // a client that waits for each reply is never answered BUSY.
        self->inflight_.fetch_sub(1);
        self->srv_.inflight_total.fetch_sub(1);
        self->send(req, raw_op, s, std::move(p));
      });
    }
    if (!close_after_flush_) do_close();
  }

  void reject(const wire::FrameHeader& echo, uint16_t raw_op, Status s, const std::string& msg,
              bool close) {
    node_.metrics().bad_frames.fetch_add(1, std::memory_order_relaxed);
    // REQUIRES: on the strand (the reader). The writer closes the socket once
    // this reply is out.
    if (close) close_after_flush_ = true;
    log_debug("bad frame", {{"conn", std::to_string(id_)},
                            {"peer", peer_},
                            {"status", std::string(wire::status_name(s))},
                            {"msg", msg}});
    // On the strand already: queue directly, so the writer cannot see the
    // close flag before this reply.
    wire::FrameHeader h;
    h.opcode = static_cast<wire::Opcode>(raw_op);
    h.flags = wire::kFlagReply;
    h.status = s;
    h.request_id = echo.request_id;
    h.lease_id = echo.lease_id;
    OutFrame f;
    f.payload = wire::to_bytes(msg);
    f.header = wire::encode_header(h, {}, f.payload);
    enqueue(std::move(f));
  }

  awaitable<void> writer() {
    std::vector<asio::const_buffer> bufs;
    std::deque<OutFrame> batch;
    while (!closed_) {
      if (outq_.empty()) {
        if (close_after_flush_) break;
        write_signal_.expires_at(Clock::time_point::max());
        asio::error_code ec;
        co_await write_signal_.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      // One gathered write for every reply queued so far (up to a bound).
      bufs.clear();
      batch.clear();
      while (!outq_.empty() && batch.size() < kMaxFramesPerWrite) {
        batch.push_back(std::move(outq_.front()));
        outq_.pop_front();
      }
      size_t total = 0;
      for (auto& f : batch) {
        bufs.emplace_back(asio::buffer(f.header));
        if (!f.payload.empty()) bufs.emplace_back(asio::buffer(f.payload));
        total += f.header.size() + f.payload.size();
      }
      asio::error_code ec;
      co_await asio::async_write(sock_, bufs, asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      node_.metrics().bytes_out.fetch_add(total, std::memory_order_relaxed);
    }
    do_close();
  }

  awaitable<void> watchdog() {
    while (!closed_) {
      watchdog_.expires_at(deadline_);
      asio::error_code ec;
      co_await watchdog_.async_wait(asio::redirect_error(use_awaitable, ec));
      if (closed_) break;
      if (deadline_ <= Clock::now()) {
        // A client waiting for a long SYNC is not idle.
        if (!mid_frame_ && inflight_.load() > 0) {
          deadline_ = Clock::now() + std::chrono::milliseconds(cfg_.idle_timeout_ms);
          continue;
        }
        log_info("disconnecting client", {{"conn", std::to_string(id_)},
                                          {"peer", peer_},
                                          {"reason", mid_frame_ ? "stalled mid-frame" : "idle"}});
        do_close();
      }
    }
  }

  void do_close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    write_signal_.cancel();
    watchdog_.cancel();
    node_.connection_closed(id_);
    srv_.connection_ended(shared_from_this());
  }

  tcp::socket sock_;
  Server& srv_;
  Node& node_;
  const NodeConfig& cfg_;
  const uint64_t id_;
  const std::string peer_;
  asio::steady_timer write_signal_;
  asio::steady_timer watchdog_;
  std::deque<OutFrame> outq_;
  Clock::time_point deadline_ = Clock::now();
  bool mid_frame_ = false;
  bool closed_ = false;
  bool close_after_flush_ = false;
  std::atomic<uint32_t> inflight_{0};
};

std::shared_ptr<Bytes> BodyPool::take(size_t n) {
  std::unique_ptr<Bytes> b;
  if (n >= kMinPooledBytes) {
    std::lock_guard lock(state_->mu);
    for (auto it = state_->free.begin(); it != state_->free.end(); ++it) {
      // Reuse a buffer that fits without holding one far larger than needed.
      if ((*it)->size() >= n && (*it)->size() <= 2 * n) {
        b = std::move(*it);
        state_->free.erase(it);
        break;
      }
    }
  }
  if (!b) b = std::make_unique<Bytes>(n);
  const size_t held = b->size();
  state_->outstanding.fetch_add(held);
  // The deleter may run on any thread (the device pool) and after the Server
  // is gone: it owns a reference to the pool's state.
  return std::shared_ptr<Bytes>(b.release(), [state = state_, held](Bytes* p) {
    std::unique_ptr<Bytes> owned(p);
    state->outstanding.fetch_sub(held);
    if (owned->size() < kMinPooledBytes) return;
    std::lock_guard lock(state->mu);
    if (state->free.size() < kMaxPooled) state->free.push_back(std::move(owned));
  });
}

bool BodyPool::within_budget(size_t n) const {
  size_t out = state_->outstanding.load();
  // A frame alone may always proceed, so one frame larger than the budget
  // cannot stall forever.
  return out == 0 || out + n <= budget_;
}

Server::Server(Node& node, const NodeConfig& cfg)
    : node_(node),
      cfg_(cfg),
      body_pool_(cfg.frame_bytes_budget),
      acceptor_(io_),
      metrics_acceptor_(io_) {}

Server::~Server() {
  drain_and_stop();
  wait();
  if (drain_thread_.joinable()) drain_thread_.join();
}

namespace {

Result<tcp::endpoint> resolve(asio::io_context& io, const std::string& host, uint16_t port) {
  asio::error_code ec;
  tcp::resolver res(io);
  auto it = res.resolve(host, std::to_string(port), tcp::resolver::numeric_service, ec);
  if (ec || it.empty())
    return make_error(Status::kInvalidArgument, "cannot resolve " + host + ": " + ec.message());
  return it.begin()->endpoint();
}

Result<void> listen_on(tcp::acceptor& a, const tcp::endpoint& ep) {
  asio::error_code ec;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(Status::kInternal, "cannot listen on " + ep.address().to_string() + ":" +
                                             std::to_string(ep.port()) + ": " + ec.message());
  }
  return {};
}

}  // namespace

Result<void> Server::start() {
  auto ep = resolve(io_, cfg_.listen_host, cfg_.listen_port);
  if (!ep) return std::move(ep).error();
  if (auto r = listen_on(acceptor_, *ep); !r) return r;
  port_ = acceptor_.local_endpoint().port();
  if (!cfg_.metrics_listen.empty()) {
    auto mhp = wire::parse_host_port(cfg_.metrics_listen, /*allow_port_zero=*/true);
    if (!mhp) return make_error(Status::kInvalidArgument, "--metrics: " + mhp.error().message);
    auto mep = resolve(io_, mhp->host, mhp->port);
    if (!mep) return std::move(mep).error();
    if (auto r = listen_on(metrics_acceptor_, *mep); !r) return r;
    metrics_port_ = metrics_acceptor_.local_endpoint().port();
    metrics_loop();
  }
  accept_loop();
  unsigned n = cfg_.network_threads != 0 ? cfg_.network_threads
                                         : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { io_.run(); });
  log_info(
      "listening",
      {{"addr", cfg_.listen_host + ":" + std::to_string(port_)},
       {"threads", std::to_string(n)},
       {"metrics", metrics_port_ ? cfg_.metrics_listen.substr(0, cfg_.metrics_listen.rfind(':')) +
                                       ":" + std::to_string(metrics_port_)
                                 : "off"}});
  return {};
}

void Server::accept_loop() {
  asio::co_spawn(
      io_,
      [this]() -> awaitable<void> {
        for (;;) {
          asio::error_code ec;
          tcp::socket sock = co_await acceptor_.async_accept(
              asio::make_strand(io_), asio::redirect_error(use_awaitable, ec));
          if (ec) {
            if (!acceptor_.is_open() || draining_) co_return;
            // e.g. EMFILE: keep serving the clients we have; retry a little later.
            asio::steady_timer backoff(io_, std::chrono::milliseconds(100));
            co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
          }
          asio::error_code pec;
          auto remote = sock.remote_endpoint(pec);
          std::string ip = pec ? "?" : remote.address().to_string();
          std::shared_ptr<Connection> conn;
          {
            std::lock_guard lock(mu_);
            if (conns_.size() >= cfg_.max_connections ||
                per_ip_[ip] >= cfg_.max_connections_per_ip) {
              node_.metrics().connections_rejected.fetch_add(1);
              if (per_ip_[ip] == 0) per_ip_.erase(ip);
              log_warn("connection refused: limit reached", {{"peer", ip}});
              sock.close(pec);
              continue;
            }
            per_ip_[ip] += 1;
            conn =
                std::make_shared<Connection>(std::move(sock), *this, node_, cfg_, next_conn_id_++,
                                             ip + ":" + std::to_string(pec ? 0 : remote.port()));
            conns_[conn.get()] = conn;
          }
          node_.metrics().connections_total.fetch_add(1);
          node_.metrics().connections_active.fetch_add(1);
          node_.connection_opened(conn->id());
          conn->start();
        }
      },
      asio::detached);
}

void Server::connection_ended(const std::shared_ptr<Connection>& c) {
  std::lock_guard lock(mu_);
  if (conns_.erase(c.get()) == 0) return;
  std::string ip(c->peer().substr(0, c->peer().rfind(':')));
  if (--per_ip_[ip] == 0) per_ip_.erase(ip);
  node_.metrics().connections_active.fetch_sub(1);
}

void Server::metrics_loop() {
  asio::co_spawn(
      io_,
      [this]() -> awaitable<void> {
        for (;;) {
          asio::error_code ec;
          // Each request on its own strand: the deadline timer and the handler
          // never run at once, and the timer shares ownership of the socket.
          auto sp = std::make_shared<tcp::socket>(co_await metrics_acceptor_.async_accept(
              asio::make_strand(io_), asio::redirect_error(use_awaitable, ec)));
          if (ec) {
            if (!metrics_acceptor_.is_open()) co_return;
            asio::steady_timer backoff(io_, std::chrono::milliseconds(100));
            co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
          }
          asio::co_spawn(
              sp->get_executor(),
              [this, sp]() -> awaitable<void> {
                tcp::socket& s = *sp;
                auto t = std::make_shared<asio::steady_timer>(s.get_executor());
                t->expires_after(std::chrono::seconds(5));
                t->async_wait([sp, t](asio::error_code e) {
                  if (!e) {
                    asio::error_code x;
                    sp->close(x);
                  }
                });
                asio::streambuf req(8192);
                asio::error_code e;
                co_await asio::async_read_until(s, req, "\r\n\r\n",
                                                asio::redirect_error(use_awaitable, e));
                if (e) {
                  t->cancel();
                  co_return;
                }
                std::string line(
                    asio::buffers_begin(req.data()),
                    asio::buffers_begin(req.data()) + std::min<size_t>(req.size(), 256));
                std::string status = "200 OK", ctype = "text/plain; version=0.0.4", body;
                if (line.rfind("GET /metrics", 0) == 0) {
                  body = node_.metrics().render();
                } else if (line.rfind("GET /healthz", 0) == 0) {
                  ctype = "text/plain";
                  body = draining_ ? "draining\n" : "ok\n";
                  if (draining_) status = "503 Service Unavailable";
                } else {
                  status = "404 Not Found";
                  ctype = "text/plain";
                  body = "try /metrics or /healthz\n";
                }
                std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: " + ctype +
                                   "\r\nContent-Length: " + std::to_string(body.size()) +
                                   "\r\nConnection: close\r\n\r\n" + body;
                co_await asio::async_write(s, asio::buffer(resp),
                                           asio::redirect_error(use_awaitable, e));
                t->cancel();
                s.close(e);
              },
              asio::detached);
        }
      },
      asio::detached);
}

void Server::drain_and_stop() {
  std::call_once(drain_once_, [this] {
    draining_ = true;
    asio::post(io_, [this] {
      asio::error_code ec;
      acceptor_.close(ec);
    });
    // Off the network threads: waiting and lease teardown may block.
    drain_thread_ = std::thread([this] {
      auto until = Clock::now() + kDrainWait;
      while (inflight_total.load() > 0 && Clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      node_.shutdown();
      std::vector<std::shared_ptr<Connection>> live;
      {
        std::lock_guard lock(mu_);
        for (auto& [p, w] : conns_) {
          if (auto c = w.lock()) live.push_back(c);
        }
      }
      for (auto& c : live) c->close_after_flush();
      asio::post(io_, [this] {
        asio::error_code ec;
        metrics_acceptor_.close(ec);
      });
      // Let the writers flush their last replies (bounded), then stop.
      auto flush_until = Clock::now() + std::chrono::seconds(2);
      for (;;) {
        {
          std::lock_guard lock(mu_);
          if (conns_.empty()) break;
        }
        if (Clock::now() >= flush_until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      io_.stop();
      stopped_ = true;
    });
  });
}

void Server::wait() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (drain_thread_.joinable() && drain_thread_.get_id() != std::this_thread::get_id())
    drain_thread_.join();
}

}  // namespace gpulease::server
