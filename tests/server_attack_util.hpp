// Shared by the node's attack tests (server_attack_test, server_hostile_test):
// the well-behaved tenant that runs alongside each attack, and the process's
// resident memory. Internal to tests/.
#pragma once

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "server_test_util.hpp"

namespace gpulease::testing {

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
