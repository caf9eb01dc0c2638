// Shared pieces of the client library's tests: an in-process node (the
// server tests' TestNode) sized for the recipes, a client Connection to it,
// and a TCP proxy that can cut every connection through it (reconnect tests).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gpulease/client/client.hpp"
#include "server_test_util.hpp"

namespace gpulease::testing {

inline server::NodeConfig client_test_config() {
  server::NodeConfig c = TestNode::small_config();
  c.sim_device_bytes = 1ull << 30;
  c.instruction_budget = 0;  // the backend default
  return c;
}

inline client::Connection connect_client(uint16_t port, Bytes token,
                                         client::ConnectOptions o = {}) {
  o.node = client::NodeAddress{"127.0.0.1", port};
  o.token = std::move(token);
  o.request_timeout = std::chrono::seconds(120);
  auto c = client::Connection::connect(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : client::describe(c.error()));
  if (!c) std::abort();
  return std::move(c).value();
}

template <typename T>
Bytes as_byte_vector(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Forwards 127.0.0.1:port() to 127.0.0.1:upstream; cut() drops every
// connection through it at once, as a network failure would.
class TcpProxy {
 public:
  explicit TcpProxy(uint16_t upstream) : upstream_(upstream) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~TcpProxy() {
    stop_ = true;
    cut();
    accept_thread_.join();
    std::vector<std::thread> pumps;
    {
      std::lock_guard lock(mu_);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) t.join();
    ::close(listen_);
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

  void cut() {
    std::lock_guard lock(mu_);
    for (int fd : live_) ::shutdown(fd, SHUT_RDWR);
  }

  // While set, what the node sends is dropped (requests still get through):
  // a reply lost with the connection.
  void drop_replies(bool on) { drop_replies_ = on; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      int c = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(upstream_);
      if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c);
        ::close(u);
        continue;
      }
      accepted_++;
      std::lock_guard lock(mu_);
      live_.push_back(c);
      live_.push_back(u);
      pumps_.emplace_back([this, c, u] { pump(c, u); });
    }
  }

  void pump(int a, int b) {
    std::vector<char> buf(1 << 16);
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    bool open = true;
    while (open && !stop_) {
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        ssize_t n = ::recv(p[i].fd, buf.data(), buf.size(), 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (i == 1 && drop_replies_) continue;
        const int to = p[1 - i].fd;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::send(to, buf.data() + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += w;
        }
      }
    }
    std::lock_guard lock(mu_);
    ::shutdown(a, SHUT_RDWR);
    ::shutdown(b, SHUT_RDWR);
    std::erase(live_, a);
    std::erase(live_, b);
    ::close(a);
    ::close(b);
  }

  uint16_t upstream_;
  int listen_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<bool> drop_replies_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<int> live_;           // GUARDED_BY(mu_)
  std::vector<std::thread> pumps_;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::testing
