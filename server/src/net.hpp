// The TCP front end of the node: standalone Asio with C++20 coroutines.
//
// One io_context run by N network threads. Each connection is three
// coroutines on its own strand: a reader (header first, checked before any
// allocation; then token and payload), a writer (replies gathered into one
// write), and a watchdog (idle and mid-frame deadlines). A connection lives
// exactly as long as these coroutines. Replies are matched by request id, so
// clients may pipeline up to max_inflight requests; past that the node
// answers BUSY.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "config.hpp"
#include "node.hpp"

namespace gpulease::server {

class Connection;

// Recycles the buffers large frame bodies (MEM_WRITE chunks, module images)
// are read into, so a bulk transfer does not map and fault in fresh pages for
// every chunk. A taken buffer may be larger than asked for: readers use the
// frame's declared lengths, never the buffer's size.
// THREAD SAFETY: take() and the buffers' release may run on any thread.
// LIFETIME: buffers may outlive the pool (their deleter shares its state).
class BodyPool {
 public:
  static constexpr size_t kMinPooledBytes = 256u << 10;
  static constexpr size_t kMaxPooled = 16;
  explicit BodyPool(size_t budget_bytes) : budget_(budget_bytes) {}
  [[nodiscard]] std::shared_ptr<wire::Bytes> take(size_t n);
  // Whether a body of n more bytes fits the budget of bytes held by frames
  // read but not yet done with (across all connections).
  [[nodiscard]] bool within_budget(size_t n) const;

 private:
  struct State {
    std::mutex mu;
    std::vector<std::unique_ptr<wire::Bytes>> free;  // GUARDED_BY(mu)
    std::atomic<size_t> outstanding{0};
  };
  const size_t budget_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

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

  asio::io_context& io() noexcept { return io_; }

  // Connection bookkeeping (called by connections).
  void connection_ended(const std::shared_ptr<Connection>& c);
  BodyPool& body_pool() noexcept { return body_pool_; }
  [[nodiscard]] bool draining() const noexcept { return draining_.load(); }
  std::atomic<int64_t> inflight_total{0};

 private:
  void accept_loop();
  void metrics_loop();

  Node& node_;
  const NodeConfig& cfg_;
  BodyPool body_pool_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::acceptor metrics_acceptor_;
  uint16_t port_ = 0;
  uint16_t metrics_port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::once_flag drain_once_;
  std::thread drain_thread_;

  std::mutex mu_;
  std::map<Connection*, std::weak_ptr<Connection>> conns_;  // GUARDED_BY(mu_)
  std::map<std::string, uint32_t> per_ip_;                  // GUARDED_BY(mu_)
  uint64_t next_conn_id_ = 1;                               // GUARDED_BY(mu_)
};

}  // namespace gpulease::server
