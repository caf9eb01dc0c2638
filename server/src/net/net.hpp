// The TCP front end of the node: standalone Asio with C++20 coroutines.
//
// One io_context per network thread; each accepted connection is pinned to
// one of them (round-robin), on its own strand there (connection.hpp: one
// `reader || watchdog` coroutine and a writer), so a connection's handlers
// never hop between threads (a hop cost ~10 us per round trip). The
// acceptors and the trim timer live on a control strand of the first
// io_context. Replies made on device/lease threads reach a connection by a
// post to its strand. What a
// peer can make the node hold is bounded before it is held:
//  - without a valid token: the 64 KiB input buffer, one token section and
//    one frame of at most max_ping_bytes (HELLO, PING), and a small reply
//    queue; a refused body is read into the input buffer and dropped;
//  - with one: frame bodies within the connection's and the tenant's share
//    of the frame-bytes budget (reserved before reading, filled as bytes
//    arrive), and reply bytes bound per connection and per tenant.
// Large body buffers are recycled up to body_pool_bytes; the rest go back to
// the OS. Replies are matched by request id, so clients may pipeline up to
// max_inflight requests; past that the node answers BUSY.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "auth_limiter.hpp"
#include "config.hpp"
#include "frame_budget.hpp"
#include "node.hpp"
#include "reply_budget.hpp"

namespace gpulease::server {

class Connection;

class Server {
 public:
  Server(Node& node, const NodeConfig& cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listen (and metrics) sockets and starts the network threads.
  [[nodiscard]] Result<void> start();
  [[nodiscard]] uint16_t port() const noexcept { return port_; }
  [[nodiscard]] uint16_t metrics_port() const noexcept { return metrics_port_; }

  // Graceful stop (SIGTERM): stop accepting, answer new frames BUSY, wait
  // (bounded) for in-flight frames, release every lease, close connections,
  // stop the threads. Safe to call from any thread, once or more.
  void drain_and_stop();
  // Blocks until the network threads have exited.
  void wait();

  // The first network io_context (the control strand's; signals go here).
  asio::io_context& io() noexcept { return *ios_.front(); }

  // Connection bookkeeping (called by connections).
  void connection_ended(const std::shared_ptr<Connection>& c);
  // A connection's coroutine has ended and freed its input buffer: counts
  // toward handing freed memory back to the OS (trim_loop). Thread-safe.
  void input_buffer_freed(size_t bytes) { closed_input_bytes_.fetch_add(bytes); }
  // A token of `tenant` verified on a connection for the first time: counts
  // it against max_connections_per_tenant; false (not counted) when the
  // tenant holds that many already. Thread-safe.
  [[nodiscard]] bool tenant_connected(const std::string& tenant);
  [[nodiscard]] FrameBudget& frame_budget() noexcept { return budget_; }
  [[nodiscard]] ReplyBudget& reply_budget() noexcept { return reply_budget_; }
  [[nodiscard]] AuthLimiter& auth_limiter() noexcept { return auth_limiter_; }
  [[nodiscard]] BodyPool& body_pool() noexcept { return *pool_; }
  [[nodiscard]] const std::shared_ptr<BodyPool>& body_pool_ptr() noexcept { return pool_; }
  [[nodiscard]] bool draining() const noexcept { return draining_.load(); }
  [[nodiscard]] size_t connections() const;
  [[nodiscard]] int64_t metrics_connections() const noexcept { return metrics_conns_.load(); }
  std::atomic<int64_t> inflight_total{0};

 private:
  void accept_loop();
  void metrics_loop();
  void trim_loop();
  // The io_context for the next accepted socket (round-robin). Control strand only.
  asio::io_context& next_io();
  void stop_ios();

  Node& node_;
  const NodeConfig& cfg_;
  FrameBudget budget_;
  ReplyBudget reply_budget_;
  AuthLimiter auth_limiter_;
  std::shared_ptr<BodyPool> pool_;
  // One per network thread, each run by exactly one thread; fixed after
  // construction. THREAD SAFETY: Connections keep to their own one.
  std::vector<std::unique_ptr<asio::io_context>> ios_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;  // start() only
  size_t next_io_ = 0;  // control strand only
  // THREAD SAFETY: the acceptors and the trim timer are used only on this
  // strand (their loops run on it; drain posts their close to it).
  asio::strand<asio::io_context::executor_type> control_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::acceptor metrics_acceptor_;
  asio::steady_timer trim_timer_;
  uint64_t trimmed_at_released_ = 0;  // on the trim timer's handler only
  // Input-buffer bytes freed by connections that have ended.
  std::atomic<uint64_t> closed_input_bytes_{0};
  uint64_t trimmed_at_closed_ = 0;  // on the trim timer's handler only
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> metrics_conns_{0};
  std::once_flag drain_once_;
  std::thread drain_thread_;

  mutable std::mutex mu_;
  std::map<Connection*, std::weak_ptr<Connection>> conns_;  // GUARDED_BY(mu_)
  std::map<std::string, uint32_t> per_ip_;                  // GUARDED_BY(mu_)
  uint32_t evicting_ = 0;  // GUARDED_BY(mu_): evicted connections not yet ended
  std::map<std::string, uint32_t> per_tenant_;  // GUARDED_BY(mu_)
  // The oldest connection not yet evicted on which no token has verified
  // (from `ip`, when given), or null. REQUIRES: mu_ held.
  std::shared_ptr<Connection> oldest_tokenless(const std::string* ip) const;
  // Connections from `ip` not yet evicted. REQUIRES: mu_ held.
  uint32_t live_from(const std::string& ip) const;
  uint64_t next_conn_id_ = 1;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::server
