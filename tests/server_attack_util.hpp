// Shared by the node's attack tests (server_attack_test, server_hostile_test):
// the attacker's plain socket, the well-behaved tenant that runs alongside
// each attack, and the process's resident memory. Internal to tests/.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "server_test_util.hpp"

namespace gpulease::testing {

// An attacker's connection: a plain socket, so a test can send part of a
// frame, stop reading, half-close, and wait for the node's close with a bound.
class Sock {
 public:
  // `source`: an address of 127/8 to connect from (the default: any).
  explicit Sock(uint16_t port, const char* source = nullptr)
      : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    const bool bound =
        source == nullptr || (::inet_pton(AF_INET, source, &src.sin_addr) == 1 &&
                              ::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
    ok_ = fd_ >= 0 && bound && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    int one = 1;
    if (ok_) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Sock() {
    if (fd_ >= 0) ::close(fd_);
  }
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }

  bool send_all(wire::ByteSpan b) {
    size_t off = 0;
    while (off < b.size()) {
      ssize_t n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  void shut_wr() { ::shutdown(fd_, SHUT_WR); }

  // Reads exactly n bytes within `timeout`; false on close, error or timeout.
  bool read_exact(std::byte* out, size_t n, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    size_t off = 0;
    while (off < n) {
      if (!wait_readable(until)) return false;
      ssize_t got = ::recv(fd_, out + off, n - off, 0);
      if (got <= 0) return false;
      off += static_cast<size_t>(got);
    }
    return true;
  }

  // One reply frame, or nullopt (closed, or nothing within `timeout`).
  std::optional<RawReply> recv_reply(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    wire::HeaderBytes hb;
    if (!read_exact(hb.data(), hb.size(), timeout)) return std::nullopt;
    auto h = wire::decode_header(hb, wire::Limits{});
    if (!h) return std::nullopt;
    RawReply r{*h, Bytes(h->payload_len)};
    if (!read_exact(r.payload.data(), r.payload.size(), timeout)) return std::nullopt;
    return r;
  }

  // True once the node has closed the connection (EOF or reset) within
  // `timeout`; whatever it sent before is read and dropped.
  bool closed_within(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    std::array<std::byte, 16384> scratch;
    for (;;) {
      if (!wait_readable(until)) return false;
      ssize_t got = ::recv(fd_, scratch.data(), scratch.size(), 0);
      if (got <= 0) return true;
    }
  }

 private:
  bool wait_readable(std::chrono::steady_clock::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r > 0) return true;
      if (r == 0) return false;
    }
  }
  int fd_;
  bool ok_ = false;
};

inline size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Under AddressSanitizer RSS says nothing about the node (freed memory sits
// in ASan's quarantine), nor under ThreadSanitizer (the shadow of every
// range touched, about four times its size, stays resident: 38-58 MiB of RSS
// for the 8 MiB the unread-replies test holds), so only the frame-bytes
// counters are checked there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kRssTellsTheNodesMemory = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kRssTellsTheNodesMemory = false;
#else
inline constexpr bool kRssTellsTheNodesMemory = true;
#endif
#else
inline constexpr bool kRssTellsTheNodesMemory = true;
#endif

// The well-behaved tenant: acquire, alloc, write, load, launch, sync, read,
// release, checking every result. Returns how long it took.
inline std::chrono::milliseconds good_session(TestNode& node, const std::string& tenant = "alice") {
  auto t0 = std::chrono::steady_clock::now();
  RawClient c(node.port());
  Bytes tok = node.token(tenant);
  uint64_t lease = acquire(c, tok, 256 << 10);
  EXPECT_NE(lease, 0u);
  const int n = 1024;
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>(i);
  uint64_t buf = alloc(c, lease, tok, n * 4);
  EXPECT_EQ(
      c.call(Opcode::kMemWrite, lease, tok, wire::MemWriteRequest{buf, 0, pod_bytes(in)}).status(),
      Status::kOk);
  uint64_t mod = load_module(c, lease, tok, ptx("transform.ptx"));
  auto l = c.call(Opcode::kLaunch, lease, tok,
                  launch_req(mod, "scale", (n + 255) / 256, 256,
                             Args().buf(buf).scalar<int32_t>(n).scalar(3.0f)));
  EXPECT_EQ(l.status(), Status::kOk) << l.message();
  auto s = c.call(Opcode::kSync, lease, tok, wire::Empty{});
  EXPECT_EQ(s.status(), Status::kOk) << s.message();
  auto r = c.call(Opcode::kMemRead, lease, tok, wire::MemReadRequest{buf, 0, n * 4});
  EXPECT_EQ(r.status(), Status::kOk);
  auto out = from_bytes<float>(r.payload);
  EXPECT_EQ(out.size(), static_cast<size_t>(n));
  for (int i = 0; i < n && i < static_cast<int>(out.size()); ++i) {
    if (out[i] != 3.0f * static_cast<float>(i)) {
      ADD_FAILURE() << "wrong result at " << i;
      break;
    }
  }
  EXPECT_EQ(c.call(Opcode::kLeaseRelease, lease, tok, wire::Empty{}).status(), Status::kOk);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

}  // namespace gpulease::testing
