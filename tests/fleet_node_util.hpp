// Fleet tests' pieces: gpuleased processes (sim backend) that register in an
// etcd directory, one authority key trusted by all of them, and tokens for a
// node or for the fleet audience. Shared by the fleet tests (fleetnode,
// fleetclient); the etcd side is tests/etcd_cluster.hpp.
//
//   gpulease::test::FleetAuthority auth;                 // key pair in a temp dir
//   gpulease::test::FleetNodeProcess n({.node_id = "n1", .registry = etcd.registry_url(),
//                                       .fleet = "f", .authority_pub = auth.pub_path()});
//   ASSERT_TRUE(n.start()) << n.log();
//   n.address(); n.kill9(); n.terminate();
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/token.hpp"

namespace gpulease::test {

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::filesystem::path make_temp_dir(const char* stem) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(stem) + "-XXXXXX"));
  if (::mkdtemp(tmpl.data()) == nullptr) return {};
  return tmpl;
}

// An authority key pair on disk (the nodes' --authority-key) and tokens it signs.
class FleetAuthority {
 public:
  FleetAuthority() : dir_(make_temp_dir("gpulease-fleet-auth")) {
    auto key = capability::SecretKey::generate();
    ok_ = capability::write_key_pair(dir_ / "authority", key).ok();
    authority_.emplace(std::move(key));
  }
  ~FleetAuthority() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return ok_; }
  std::string pub_path() const { return (dir_ / "authority.pub").string(); }
  std::string key_path() const { return (dir_ / "authority.key").string(); }

  // A token with every permission for `audience` (a node id or "fleet:NAME").
  wire::Bytes token(const std::string& audience, const std::string& tenant = "tenant-a",
                    int64_t ttl_s = 3600) const {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    capability::Claims c;
    c.tenant = tenant;
    c.audience = audience;
    c.perms = capability::kAllPermissions;
    c.not_before = static_cast<uint64_t>(now - 5);
    c.expires_at = static_cast<uint64_t>(now + ttl_s);
    c.token_id = capability::random_token_id();
    auto t = authority_->mint(c);
    return t ? std::move(t).value() : wire::Bytes{};
  }
  std::string token_text(const std::string& audience,
                         const std::string& tenant = "tenant-a") const {
    return capability::encode_token_text(token(audience, tenant));
  }

 private:
  std::filesystem::path dir_;
  std::optional<capability::Authority> authority_;
  bool ok_ = false;
};

struct FleetNodeOptions {
  std::string node_id = "node";
  std::string registry;  // etcd://...; empty = no --registry
  std::string fleet = "default";
  std::string listen = "127.0.0.1:0";
  uint32_t registry_ttl_s = 2;
  std::string authority_pub;
  uint32_t sim_devices = 1;
  uint64_t sim_device_bytes = 1ull << 30;
  std::vector<std::string> extra;  // more flags
};

// A gpuleased process on 127.0.0.1:<free port>.
class FleetNodeProcess {
 public:
  explicit FleetNodeProcess(FleetNodeOptions o) : o_(std::move(o)) {
    dir_ = make_temp_dir("gpulease-fleet-node");
  }
  ~FleetNodeProcess() {
    terminate();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  FleetNodeProcess(const FleetNodeProcess&) = delete;
  FleetNodeProcess& operator=(const FleetNodeProcess&) = delete;

  // Starts the process and waits (bounded, 30 s) for its "listening" log line.
  bool start() {
    if (pid_ > 0) return true;
    port_ = 0;
    const std::string bin = std::string(GPULEASE_BIN_DIR) + "/gpuleased";
    std::vector<std::string> args = {bin,
                                     "--backend=sim",
                                     "--listen=" + o_.listen,
                                     "--node-id=" + o_.node_id,
                                     "--fleet=" + o_.fleet,
                                     "--registry-ttl-s=" + std::to_string(o_.registry_ttl_s),
                                     "--sim-devices=" + std::to_string(o_.sim_devices),
                                     "--sim-device-bytes=" + std::to_string(o_.sim_device_bytes),
                                     "--reaper-interval-ms=50",
                                     "--network-threads=2",
                                     "--device-threads=2"};
    if (!o_.registry.empty()) args.push_back("--registry=" + o_.registry);
    if (!o_.authority_pub.empty()) args.push_back("--authority-key=" + o_.authority_pub);
    for (const auto& e : o_.extra) args.push_back(e);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      if (log_fd >= 0) {
        ::dup2(log_fd, 2);
        ::dup2(log_fd, 1);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
    pid_ = pid;
    const std::regex re("msg=listening addr=127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = log();
      if (std::regex_search(text, m, re)) port_ = static_cast<uint16_t>(std::stoi(m[1]));
      if (port_ != 0) break;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return port_ != 0;
  }

  // SIGKILL: no drain, no deregistration.
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  // SIGTERM and wait (bounded, 30 s; then SIGKILL). The exit status, or -1.
  int terminate() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int st = 0;
    for (int i = 0; i < 600; ++i) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill9();
    return -1;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& node_id() const { return o_.node_id; }
  std::string log_path() const { return (dir_ / "node.log").string(); }
  std::string log() const { return read_text(log_path()); }

 private:
  FleetNodeOptions o_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace gpulease::test
