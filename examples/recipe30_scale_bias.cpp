// Recipe 30: lease a slice of a GPU for a multi-kernel workload.
//
// Leases 64 MiB for two minutes, uploads 1024 floats once, loads
// transform.ptx once, launches scale(x2) then bias(+10) without waiting
// (pipelined; the same stream orders them), syncs once, reads back and checks
// every element: out[i] = 2i + 10. Dropping the lease frees everything.
#include <cstring>

#include "example_common.hpp"

namespace gl = gpulease::client;
using gl::unwrap;

int main(int argc, char** argv) {
  CLI::App app{"Recipe 30: scale then bias on 1024 floats in one leased session"};
  example::Common common;
  example::add_common(app, common);
  CLI11_PARSE(app, argc, argv);

  return example::run_main("recipe30", [&] {
    gl::Connection conn = example::connect(common);
    gl::Lease lease =
        unwrap(gl::LeaseBuilder(conn).min_vram(64 * 1024 * 1024).lease_secs(120).acquire());
    gl::Session session(lease);
    std::printf("recipe 30: lease %llu on %s (%s backend)\n",
                static_cast<unsigned long long>(lease.lease_id()), conn.address().str().c_str(),
                conn.node_info().backend.c_str());

    // Upload data once.
    const uint32_t n = 1024;
    std::vector<float> input(n);
    for (uint32_t i = 0; i < n; ++i) input[i] = static_cast<float>(i);
    gl::DeviceBuffer buf = unwrap(session.mem_alloc(uint64_t{n} * 4));
    unwrap(session.mem_write_span(buf, 0, std::span<const float>(input)));
    std::printf("recipe 30: mem_alloc %u bytes -> buffer 0x%llx; mem_write 0, 1, ..., %u\n", n * 4,
                static_cast<unsigned long long>(buf.address()), n - 1);

    // Load the module once.
    const std::string ptx = example::ptx(common, "transform.ptx");
    gl::Module module = unwrap(session.module_load(gpulease::wire::as_bytes(ptx)));
    std::printf("recipe 30: module_load transform.ptx (%zu bytes)\n", ptx.size());

    // Launch both kernels, then sync once. Arguments (float* data, int n,
    // float param) in the raw form: the buffer's device address, n, param.
    const gl::Dim3 grid{(n + 255) / 256, 1, 1}, block{256, 1, 1};
    const uint32_t arg_sizes[] = {8, 4, 4};
    auto args = [&](float param) {
      gpulease::wire::Bytes a(16);
      gpulease::wire::store_le64(a.data(), buf.address());
      gpulease::wire::store_le32(a.data() + 8, n);
      uint32_t bits;
      std::memcpy(&bits, &param, 4);
      gpulease::wire::store_le32(a.data() + 12, bits);
      return a;
    };
    unwrap(session.launch(module, "scale", grid, block, args(2.0f), arg_sizes));
    unwrap(session.launch(module, "bias", grid, block, args(10.0f), arg_sizes));
    unwrap(session.sync());
    std::printf("recipe 30: launch scale(x2), launch bias(+10), sync: both kernels done\n");

    // Read results and check every element: (i * 2.0) + 10.0.
    gpulease::wire::Bytes bytes = unwrap(session.mem_read(buf, 0, uint64_t{n} * 4));
    std::vector<float> out(n);
    std::memcpy(out.data(), bytes.data(), bytes.size());
    uint32_t bad = 0;
    for (uint32_t i = 0; i < n; ++i) {
      if (out[i] != 2.0f * static_cast<float>(i) + 10.0f) ++bad;
    }
    std::printf(
        "recipe 30: results[0] = %g, results[1] = %g, results[100] = %g, results[1023] = %g\n",
        out[0], out[1], out[100], out[1023]);
    unwrap(session.mem_free(buf));  // optional: releasing the lease frees it anyway
    unwrap(lease.release());
    std::printf("recipe 30: mem_read %u bytes, mem_free, lease released\n", n * 4);
    if (bad != 0) {
      std::printf("recipe 30: FAILED: %u of %u elements differ from 2i + 10\n", bad, n);
      return 1;
    }
    std::printf("recipe 30: OK: all %u elements equal 2i + 10\n", n);
    return 0;
  });
}
