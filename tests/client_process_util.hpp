// A real gpuleased process (sim backend) on a free port with a fresh
// authority key, and running programs against it: for the tests of the
// examples and of the CLI.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/token.hpp"

namespace gpulease::testing {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct ProcessResult {
  int status = -1;  // exit status; -1 when killed or not run
  std::string out;
  std::string err;
};

class NodeProcess {
 public:
  explicit NodeProcess(const std::string& node_id = "example-node") : node_id_(node_id) {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("gpulease-client-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto key = capability::SecretKey::generate();
    EXPECT_TRUE(capability::write_key_pair(dir_ / "authority", key).ok());
    authority_.emplace(std::move(key));
    const std::string log = (dir_ / "node.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::freopen(log.c_str(), "w", stderr);
      std::freopen("/dev/null", "w", stdout);
      const std::string bin = std::string(GPULEASE_BIN_DIR) + "/gpuleased";
      const std::string pub = (dir_ / "authority.pub").string();
      ::execl(bin.c_str(), bin.c_str(), "--backend", "sim", "--listen", "127.0.0.1:0", "--node-id",
              node_id_.c_str(), "--authority-key", pub.c_str(), "--sim-device-bytes", "1073741824",
              "--reaper-interval-ms", "50", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    // The node logs msg=listening addr=HOST:PORT once it accepts.
    const std::regex re("msg=listening addr=127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::smatch m;
      std::string text = slurp(log);
      if (std::regex_search(text, m, re)) port_ = static_cast<uint16_t>(std::stoi(m[1]));
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_NE(port_, 0) << "gpuleased did not start:\n" << slurp(log);
  }

  ~NodeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      for (int i = 0; i < 200; ++i) {
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::filesystem::path& dir() const { return dir_; }

  std::string token(const std::string& tenant = "tenant-a", int64_t ttl_s = 3600) const {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    capability::Claims c;
    c.tenant = tenant;
    c.audience = node_id_;
    c.perms = capability::kAllPermissions;
    c.not_before = static_cast<uint64_t>(now - 5);
    c.expires_at = static_cast<uint64_t>(now + ttl_s);
    c.token_id = capability::random_token_id();
    auto t = authority_->mint(c);
    EXPECT_TRUE(t.ok());
    return t.ok() ? capability::encode_token_text(*t) : std::string();
  }

  // Runs `command` through the shell with GPULEASE_NODE / GPULEASE_TOKEN set
  // for this node, within `timeout_s`.
  ProcessResult run(const std::string& command, int timeout_s = 240) const {
    static int n = 0;
    const auto out = dir_ / ("out" + std::to_string(n) + ".txt");
    const auto err = dir_ / ("err" + std::to_string(n++) + ".txt");
    const std::string cmd = "GPULEASE_NODE=" + address() + " GPULEASE_TOKEN=" + token() +
                            " timeout " + std::to_string(timeout_s) + " " + command + " > " +
                            out.string() + " 2> " + err.string();
    int st = std::system(cmd.c_str());
    ProcessResult r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string node_id_;
  std::filesystem::path dir_;
  std::optional<capability::Authority> authority_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

inline std::string bin(const std::string& name) {
  return std::string(GPULEASE_BIN_DIR) + "/" + name;
}

}  // namespace gpulease::testing
