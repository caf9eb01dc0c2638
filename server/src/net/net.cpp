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

#include <algorithm>
#include <deque>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "connection.hpp"
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
// Share of the drain bound (--drain-timeout-ms) given to frames in flight
// before the leases are ended; the rest is for the teardown (a slice per
// running kernel) and the last replies.
constexpr unsigned kDrainInflightPercent = 70;
// How often the allocator is asked to hand freed body memory back.
constexpr auto kTrimInterval = std::chrono::seconds(1);
constexpr uint64_t kTrimAfterBytes = 64u << 20;
// ... or after this many bytes of ended connections' input buffers (each one
// 64 KiB, below the allocator's mmap threshold: 1024 connections that came
// and went otherwise leave 64 MiB in its heap).
constexpr uint64_t kTrimAfterClosedBytes = 8u << 20;

std::vector<std::unique_ptr<asio::io_context>> make_ios(unsigned configured) {
  const unsigned n =
      configured != 0 ? configured : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> v;
  v.reserve(n);
  // Each is run by exactly one thread (the hint; posts from others still lock).
  for (unsigned i = 0; i < n; ++i) v.push_back(std::make_unique<asio::io_context>(1));
  return v;
}
}  // namespace

Server::Server(Node& node, const NodeConfig& cfg)
    : node_(node),
      cfg_(cfg),
      budget_(FrameBudget::Shares{cfg.frame_bytes_budget, cfg.frame_bytes_per_tenant,
                                  cfg.frame_bytes_per_connection}),
      reply_budget_(cfg.reply_bytes_per_tenant),
      auth_limiter_(cfg.auth_failures_per_second, cfg.auth_failure_burst),
      pool_(std::make_shared<BodyPool>(cfg.body_pool_bytes)),
      ios_(make_ios(cfg.network_threads)),
      control_(asio::make_strand(*ios_.front())),
      acceptor_(control_),
      metrics_acceptor_(control_),
      trim_timer_(control_) {
  // MEM_READ replies come from the body pool and go back to it once sent.
  node_.set_buffer_source([pool = pool_](size_t n) { return pool->take(n); });
}

Server::~Server() {
  drain_and_stop();
  wait();
  if (drain_thread_.joinable()) drain_thread_.join();
  node_.metrics().frame_bytes_stats = nullptr;
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
  auto ep = resolve(io(), cfg_.listen_host, cfg_.listen_port);
  if (!ep) return std::move(ep).error();
  if (auto r = listen_on(acceptor_, *ep); !r) return r;
  port_ = acceptor_.local_endpoint().port();
  if (!cfg_.metrics_listen.empty()) {
    auto mhp = wire::parse_host_port(cfg_.metrics_listen, /*allow_port_zero=*/true);
    if (!mhp) return make_error(Status::kInvalidArgument, "--metrics: " + mhp.error().message);
    auto mep = resolve(io(), mhp->host, mhp->port);
    if (!mep) return std::move(mep).error();
    if (auto r = listen_on(metrics_acceptor_, *mep); !r) return r;
    metrics_port_ = metrics_acceptor_.local_endpoint().port();
    metrics_loop();
  }
  node_.metrics().frame_bytes_stats = [this] {
    auto c = budget_.counters();
    return Metrics::FrameBytes{c.held, pool_->pooled_bytes(), c.waits};
  };
  accept_loop();
  trim_loop();
  const size_t n = ios_.size();
  // An io_context with no connection yet must not return from run().
  for (auto& io : ios_) work_.push_back(asio::make_work_guard(*io));
  for (auto& io : ios_) threads_.emplace_back([ctx = io.get()] { ctx->run(); });
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
      control_,
      [this]() -> awaitable<void> {
        for (;;) {
          asio::error_code ec;
          // The connection lives on one io_context (one thread) for good.
          auto strand = asio::make_strand(next_io());
          tcp::socket sock =
              co_await acceptor_.async_accept(strand, asio::redirect_error(use_awaitable, ec));
          if (ec) {
            if (!acceptor_.is_open() || draining_) co_return;
            // e.g. EMFILE: keep serving the clients we have; retry a little later.
            asio::steady_timer backoff(control_, std::chrono::milliseconds(100));
            co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
          }
          asio::error_code pec;
          auto remote = sock.remote_endpoint(pec);
          std::string ip = pec ? "?" : remote.address().to_string();
          std::shared_ptr<Connection> conn;
          std::shared_ptr<Connection> evicted;
          {
            std::lock_guard lock(mu_);
            // SECURITY: at a limit, a connection on which no token has
            // verified gives its slot up (the oldest first): peers without a
            // token cannot lock tenants out by holding every slot (or every
            // slot of a shared address) until the idle timeout.
            // Evicted connections hold their slots until they have closed,
            // but are not counted against the limits again.
            const bool global_full = conns_.size() - evicting_ >= cfg_.max_connections;
            const bool ip_full = per_ip_[ip] >= cfg_.max_connections_per_ip &&
                                 live_from(ip) >= cfg_.max_connections_per_ip;
            if (global_full || ip_full) {
              // One from the same address frees a slot under both limits.
              evicted = oldest_tokenless(ip_full ? &ip : nullptr);
              if (evicted) {
                evicted->evicted = true;
                evicting_ += 1;
              }
            }
            if ((global_full || ip_full) && !evicted) {
              node_.metrics().connections_rejected.fetch_add(1);
              if (per_ip_[ip] == 0) per_ip_.erase(ip);
              log_warn("connection refused: limit reached", {{"peer", ip}});
              sock.close(pec);
              continue;
            }
            per_ip_[ip] += 1;
            conn = std::make_shared<Connection>(std::move(sock), std::move(strand), *this, node_,
                                                cfg_, next_conn_id_++,
                                                ip + ":" + std::to_string(pec ? 0 : remote.port()));
            conns_[conn.get()] = conn;
          }
          if (evicted) {
            node_.metrics().connections_evicted.fetch_add(1);
            evicted->evict();
          }
          node_.metrics().connections_total.fetch_add(1);
          node_.metrics().connections_active.fetch_add(1);
          node_.connection_opened(conn->id());
          conn->start();
        }
      },
      asio::detached);
}

asio::io_context& Server::next_io() {
  asio::io_context& io = *ios_[next_io_];
  next_io_ = (next_io_ + 1) % ios_.size();
  return io;
}

void Server::stop_ios() {
  for (auto& io : ios_) io->stop();
}

size_t Server::connections() const {
  std::lock_guard lock(mu_);
  return conns_.size();
}

// Freed body buffers and ended connections' input buffers below the
// allocator's mmap threshold stay in its heap; after a burst (an attack, a
// bulk transfer, many connections that came and went) ask it to hand them
// back, at most once per kTrimInterval.
void Server::trim_loop() {
  trim_timer_.expires_after(kTrimInterval);
  trim_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    auto c = budget_.counters();
    const uint64_t closed = closed_input_bytes_.load();
    const bool bodies =
        c.released - trimmed_at_released_ >= kTrimAfterBytes && c.held < kTrimAfterBytes;
    const bool conns = closed - trimmed_at_closed_ >= kTrimAfterClosedBytes;
    if (bodies || conns) {
      trimmed_at_released_ = c.released;
      trimmed_at_closed_ = closed;
#if defined(__GLIBC__)
      malloc_trim(0);
#endif
    }
    trim_loop();
  });
}

std::shared_ptr<Connection> Server::oldest_tokenless(const std::string* ip) const {
  std::shared_ptr<Connection> best;
  for (const auto& [p, w] : conns_) {
    auto c = w.lock();
    if (!c || c->evicted.load() || c->authenticated()) continue;
    if (ip && c->peer().substr(0, c->peer().rfind(':')) != *ip) continue;
    if (!best || c->id() < best->id()) best = std::move(c);
  }
  return best;
}

bool Server::tenant_connected(const std::string& tenant) {
  std::lock_guard lock(mu_);
  uint32_t& n = per_tenant_[tenant];
  if (n >= cfg_.max_connections_per_tenant) return false;
  n += 1;
  return true;
}

uint32_t Server::live_from(const std::string& ip) const {
  uint32_t n = 0;
  for (const auto& [p, w] : conns_) {
    auto c = w.lock();
    if (c && !c->evicted.load() && c->peer().substr(0, c->peer().rfind(':')) == ip) ++n;
  }
  return n;
}

void Server::connection_ended(const std::shared_ptr<Connection>& c) {
  std::lock_guard lock(mu_);
  if (conns_.erase(c.get()) == 0) return;
  if (c->evicted.load()) evicting_ -= 1;
  if (const std::string& t = c->counted_tenant(); !t.empty()) {
    if (--per_tenant_[t] == 0) per_tenant_.erase(t);
  }
  std::string ip(c->peer().substr(0, c->peer().rfind(':')));
  if (--per_ip_[ip] == 0) per_ip_.erase(ip);
  node_.metrics().connections_active.fetch_sub(1);
}

void Server::metrics_loop() {
  asio::co_spawn(
      control_,
      [this]() -> awaitable<void> {
        for (;;) {
          asio::error_code ec;
          // Each request on its own strand: the deadline timer and the handler
          // never run at once, and the timer shares ownership of the socket.
          auto sp = std::make_shared<tcp::socket>(co_await metrics_acceptor_.async_accept(
              asio::make_strand(next_io()), asio::redirect_error(use_awaitable, ec)));
          if (ec) {
            if (!metrics_acceptor_.is_open()) co_return;
            asio::steady_timer backoff(control_, std::chrono::milliseconds(100));
            co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
          }
          // SECURITY: a bounded number of scrapes at once, each with a
          // deadline, so held sockets cannot pile up on the node.
          if (metrics_conns_.load() >= static_cast<int64_t>(cfg_.metrics_max_connections)) {
            node_.metrics().metrics_connections_rejected.fetch_add(1, std::memory_order_relaxed);
            asio::error_code x;
            sp->close(x);
            continue;
          }
          metrics_conns_.fetch_add(1);
          asio::co_spawn(
              sp->get_executor(),
              [this, sp]() -> awaitable<void> {
                struct Count {
                  std::atomic<int64_t>& n;
                  ~Count() { n.fetch_sub(1); }
                } count{metrics_conns_};
                tcp::socket& s = *sp;
                auto t = std::make_shared<asio::steady_timer>(s.get_executor());
                t->expires_after(std::chrono::milliseconds(cfg_.metrics_timeout_ms));
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
    asio::post(control_, [this] {
      asio::error_code ec;
      acceptor_.close(ec);
    });
    // Off the network threads: waiting and lease teardown may block.
    drain_thread_ = std::thread([this] {
      const auto start = Clock::now();
      const auto bound = std::chrono::milliseconds(cfg_.drain_timeout_ms);
      const auto deadline = start + bound;
      // Frames in flight may finish on their own (a SYNC of a short kernel);
      // one queued behind a kernel that never ends would not, so the wait
      // is a share of the bound, and ending the leases answers the rest.
      const auto inflight_until = start + bound * kDrainInflightPercent / 100;
      while (inflight_total.load() > 0 && Clock::now() < inflight_until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      // Every lease ends: running kernels stop within a slice, queued ops
      // are answered LEASE_EXPIRED; the answers are awaited until the bound.
      node_.shutdown(std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(deadline - Clock::now(), Clock::duration::zero())));
      std::vector<std::shared_ptr<Connection>> live;
      {
        std::lock_guard lock(mu_);
        for (auto& [p, w] : conns_) {
          if (auto c = w.lock()) live.push_back(c);
        }
      }
      for (auto& c : live) c->close_after_flush();
      asio::post(control_, [this] {
        asio::error_code ec;
        metrics_acceptor_.close(ec);
        trim_timer_.cancel();
      });
      // Let the writers flush their last replies (2 s at most, and never
      // past the bound), then stop.
      const auto flush_until = std::min(deadline, Clock::now() + std::chrono::seconds(2));
      for (;;) {
        {
          std::lock_guard lock(mu_);
          if (conns_.empty()) break;
        }
        if (Clock::now() >= flush_until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      stop_ios();
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
