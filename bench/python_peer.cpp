// The C++ side of the Python client's benchmark (client/python/bench/
// bench_client.py): the same four measurements, through the C++ client
// library, against a node given on the command line, so that both clients
// are measured in the same run against the same gpuleased process.
//
//   client_bench_peer NODE TOKEN PTX_DIR BULK_BYTES BATCH PINGS ROUNDS
//
// Prints one JSON object per round on stdout:
//   {"write_s": ..., "read_s": ..., "launch_s": ..., "ping_s": ...}
// write_s / read_s: one mem_write (+ flush) / mem_read of BULK_BYTES;
// launch_s: BATCH pipelined one-thread launches (+ flush; kernels synced
// outside the timed region); ping_s: PINGS sequential empty PINGs.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gpulease/client/client.hpp"

namespace gl = gpulease::client;
using gl::unwrap;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: %s NODE TOKEN PTX_DIR BULK_BYTES BATCH PINGS ROUNDS\n", argv[0]);
    return 2;
  }
  try {
    const uint64_t bulk = std::strtoull(argv[4], nullptr, 10);
    const int batch = std::atoi(argv[5]);
    const int pings = std::atoi(argv[6]);
    const int rounds = std::atoi(argv[7]);
    if (bulk == 0 || batch <= 0 || pings <= 0 || rounds <= 0) {
      std::fprintf(stderr, "client_bench_peer: sizes and counts must be > 0\n");
      return 2;
    }
    gl::ConnectOptions o;
    o.node = unwrap(gl::NodeAddress::parse(argv[1]));
    o.token = unwrap(gl::token_from_text(argv[2]));
    gl::Connection conn = unwrap(gl::Connection::connect(o));
    gl::Lease lease =
        unwrap(gl::LeaseBuilder(conn).min_vram(bulk + (16u << 20)).lease_secs(600).acquire());
    gl::Session s(lease);
    gl::DeviceBuffer big = unwrap(s.mem_alloc(bulk));
    gl::DeviceBuffer one = unwrap(s.mem_alloc(4));
    const std::string ptx = slurp(std::string(argv[3]) + "/transform.ptx");
    gl::Module mod = unwrap(s.module_load(gpulease::wire::as_bytes(ptx)));
    const auto args = gl::KernelArgs().push_buffer(one).push_i32(1).push_f32(1.0f);
    gpulease::wire::Bytes data(bulk, std::byte{7});
    for (int r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      (void)s.mem_write(big, 0, data);
      unwrap(s.flush());
      const double w = since(t0);
      t0 = Clock::now();
      auto back = unwrap(s.mem_read(big, 0, bulk));
      const double rd = since(t0);
      if (back.size() != bulk) throw std::runtime_error("short read");
      t0 = Clock::now();
      for (int i = 0; i < batch; ++i)
        (void)s.launch_with_args(mod, "scale", {1, 1, 1}, {1, 1, 1}, args);
      unwrap(s.flush());
      const double l = since(t0);
      unwrap(s.sync());
      t0 = Clock::now();
      for (int i = 0; i < pings; ++i) (void)unwrap(conn.ping());
      const double p = since(t0);
      std::printf("{\"write_s\": %.9f, \"read_s\": %.9f, \"launch_s\": %.9f, \"ping_s\": %.9f}\n",
                  w, rd, l, p);
      std::fflush(stdout);
    }
    unwrap(lease.release());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "client_bench_peer: %s\n", e.what());
    return 1;
  }
}
