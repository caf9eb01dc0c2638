// A real etcd for tests: one member or a cluster of N, on free loopback
// ports, data in a temp dir, started as child processes and killed (SIGKILL)
// when the fixture goes. Shared by the fleet tests (fleetnode, fleetclient).
//
//   gpulease::test::EtcdCluster etcd;
//   GPULEASE_SKIP_WITHOUT_ETCD();                 // GTEST_SKIP with the reason
//   ASSERT_TRUE(etcd.start(3)) << etcd.last_error();
//   etcd.registry_url()      // "etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
//   etcd.kill(i); etcd.restart(i); etcd.leader_index();
//
// The etcd binary: $GPULEASE_ETCD, else `etcd` on PATH, else /usr/bin/etcd
// (Debian's etcd-server, installed by scripts/install-deps). Short raft timers
// (heartbeat 50 ms, election 500 ms) so a leader's death costs under a second.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gpulease/etcd/client.hpp"

namespace gpulease::test {

// The etcd binary to run, or nullopt when there is none.
inline std::optional<std::string> etcd_binary() {
  if (const char* env = std::getenv("GPULEASE_ETCD"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) == 0) return std::string(env);
    return std::nullopt;
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (dir.empty()) continue;
      std::string cand = dir + "/etcd";
      if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
  }
  if (::access("/usr/bin/etcd", X_OK) == 0) return std::string("/usr/bin/etcd");
  return std::nullopt;
}

inline constexpr const char* kNoEtcdReason =
    "etcd binary not found (Debian package etcd-server; scripts/install-deps installs it, "
    "or set GPULEASE_ETCD)";

// N distinct free loopback TCP ports (held open together while picked).
inline std::vector<uint16_t> free_loopback_ports(size_t n) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

class EtcdCluster {
 public:
  EtcdCluster() = default;
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster() { stop(); }

  static bool available() { return etcd_binary().has_value(); }

  // Starts `members` members and waits (bounded) until every one answers and
  // a leader is elected. False (see last_error()) otherwise; a port race is
  // retried with fresh ports.
  bool start(size_t members = 1) {
    auto bin = etcd_binary();
    if (!bin) {
      error_ = kNoEtcdReason;
      return false;
    }
    bin_ = *bin;
    for (int attempt = 0; attempt < 3; ++attempt) {
      stop();
      if (try_start(members)) return true;
    }
    return false;
  }

  // SIGKILL and reap every member, remove the data dir.
  void stop() {
    for (size_t i = 0; i < members_.size(); ++i) kill(i);
    members_.clear();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  size_t size() const { return members_.size(); }
  const std::string& last_error() const { return error_; }
  const std::string& data_dir() const { return dir_; }
  uint16_t client_port(size_t i) const { return members_.at(i).client_port; }
  std::string endpoint(size_t i) const { return "127.0.0.1:" + std::to_string(client_port(i)); }
  bool running(size_t i) const { return members_.at(i).pid > 0; }

  // "H:P,H:P,..." and "etcd://H:P,..."
  std::string endpoints() const {
    std::string s;
    for (size_t i = 0; i < members_.size(); ++i) {
      if (i) s += ',';
      s += endpoint(i);
    }
    return s;
  }
  std::string registry_url() const { return "etcd://" + endpoints(); }

  // A client over every member (short timeouts: tests).
  std::unique_ptr<etcd::Client> client(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) const {
    etcd::ClientOptions o;
    for (size_t i = 0; i < members_.size(); ++i) {
      o.endpoints.push_back(etcd::Endpoint{"127.0.0.1", client_port(i)});
    }
    o.connect_timeout = std::chrono::milliseconds(500);
    o.request_timeout = timeout;
    auto c = etcd::Client::create(std::move(o));
    return c ? std::move(c).value() : nullptr;
  }

  // SIGKILL member i (no-op when it is not running).
  void kill(size_t i) {
    auto& m = members_.at(i);
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGKILL);
    int st = 0;
    ::waitpid(m.pid, &st, 0);
    m.pid = -1;
  }

  // SIGSTOP / SIGCONT member i: a member that hangs (connections accepted by
  // the kernel, never answered) rather than one that is gone.
  void pause(size_t i) {
    if (members_.at(i).pid > 0) ::kill(members_.at(i).pid, SIGSTOP);
  }
  void resume(size_t i) {
    if (members_.at(i).pid > 0) ::kill(members_.at(i).pid, SIGCONT);
  }

  // Restarts a killed member with its data dir (it rejoins the cluster).
  bool restart(size_t i) {
    if (running(i)) return true;
    if (!spawn(i, "existing")) return false;
    return wait_ready({i});
  }

  // The index of the member that is leader (as the running members agree),
  // or -1 when none is (bounded wait up to `wait`).
  int leader_index(std::chrono::milliseconds wait = std::chrono::milliseconds(5000)) const {
    auto c = client();
    if (!c) return -1;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      for (size_t i = 0; i < members_.size(); ++i) {
        if (!running(i)) continue;
        auto s = c->member_status(i);
        if (s && s->is_leader()) return static_cast<int>(i);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    pid_t pid = -1;
  };

  bool try_start(size_t n) {
    char tmpl[] = "/tmp/gpulease-etcd-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      error_ = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    auto ports = free_loopback_ports(2 * n);
    if (ports.size() != 2 * n) {
      error_ = "no free loopback ports";
      return false;
    }
    members_.clear();
    initial_cluster_.clear();
    for (size_t i = 0; i < n; ++i) {
      Member m;
      m.name = "m" + std::to_string(i);
      m.client_port = ports[2 * i];
      m.peer_port = ports[2 * i + 1];
      if (i) initial_cluster_ += ',';
      initial_cluster_ += m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
      members_.push_back(m);
    }
    token_ = "gpulease-test-" + std::to_string(::getpid()) + "-" + std::to_string(ports[0]);
    std::vector<size_t> all;
    for (size_t i = 0; i < n; ++i) {
      if (!spawn(i, "new")) return false;
      all.push_back(i);
    }
    return wait_ready(all);
  }

  bool spawn(size_t i, const char* state) {
    auto& m = members_.at(i);
    const std::string data = dir_ + "/" + m.name;
    const std::string log = dir_ + "/" + m.name + ".log";
    const std::string curl = "http://127.0.0.1:" + std::to_string(m.client_port);
    const std::string purl = "http://127.0.0.1:" + std::to_string(m.peer_port);
    std::vector<std::string> args = {bin_,
                                     "--name=" + m.name,
                                     "--data-dir=" + data,
                                     "--listen-client-urls=" + curl,
                                     "--advertise-client-urls=" + curl,
                                     "--listen-peer-urls=" + purl,
                                     "--initial-advertise-peer-urls=" + purl,
                                     "--initial-cluster=" + initial_cluster_,
                                     "--initial-cluster-state=" + std::string(state),
                                     "--initial-cluster-token=" + token_,
                                     "--heartbeat-interval=50",
                                     "--election-timeout=500",
                                     "--logger=zap",
                                     "--log-level=warn",
                                     "--log-outputs=stderr"};
    // Everything the child needs is made before fork (the test process has
    // threads): the child only redirects, execs or exits.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = ::fork();
    if (pid < 0) {
      if (log_fd >= 0) ::close(log_fd);
      error_ = "fork failed";
      return false;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      if (log_fd >= 0) {
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
    m.pid = pid;
    return true;
  }

  // Every listed member answers a read (linearizable: needs a leader).
  bool wait_ready(const std::vector<size_t>& which) {
    etcd::ClientOptions o;
    o.connect_timeout = std::chrono::milliseconds(200);
    o.request_timeout = std::chrono::milliseconds(1000);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (size_t i : which) {
      etcd::ClientOptions one = o;
      one.endpoints = {etcd::Endpoint{"127.0.0.1", members_[i].client_port}};
      auto c = etcd::Client::create(one);
      if (!c) {
        error_ = c.error().message;
        return false;
      }
      while (true) {
        int st = 0;
        if (::waitpid(members_[i].pid, &st, WNOHANG) == members_[i].pid) {
          members_[i].pid = -1;
          error_ = "etcd member " + members_[i].name + " exited at start; log: " + dir_ + "/" +
                   members_[i].name + ".log";
          return false;
        }
        if ((*c)->range("gpulease-ready-probe")) break;
        if (std::chrono::steady_clock::now() > deadline) {
          error_ = "etcd member " + members_[i].name + " not ready within 20 s";
          return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    return true;
  }

  std::string bin_;
  std::string dir_;
  std::string initial_cluster_;
  std::string token_;
  std::string error_;
  std::vector<Member> members_;
};

}  // namespace gpulease::test

// In a TEST body: skip with the reason when there is no etcd binary.
#define GPULEASE_SKIP_WITHOUT_ETCD()                   \
  do {                                                 \
    if (!::gpulease::test::EtcdCluster::available()) { \
      GTEST_SKIP() << ::gpulease::test::kNoEtcdReason; \
    }                                                  \
  } while (0)
