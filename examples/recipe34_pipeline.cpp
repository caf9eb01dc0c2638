// Recipe 34: parallel GPU sessions for a multi-kernel burst.
//
// 100 segments go through decode -> denoise -> encode (kernels/pipeline.cu)
// over several leases at once with the JobCoordinator: each lease keeps its
// module loaded and runs the three kernels per segment on buffers that stay
// in device memory. Mid-run one lease is released behind the coordinator's
// back (as an expiry or an operator would); the chunk that was to run on it
// is retried on a fresh lease and the job still finishes. Every output is
// checked against a CPU reference.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>

#include "example_common.hpp"

namespace gl = gpulease::client;
using gl::unwrap;
using gpulease::wire::Bytes;
using gpulease::wire::ByteSpan;

namespace {

constexpr float kThreshold = 0.1f;

// CPU reference of pipeline.cu, operation for operation (encode's
// v * 255 + 0.5 is one fused multiply-add in the PTX).
Bytes reference(ByteSpan raw) {
  const size_t n = raw.size();
  std::vector<float> d(n), s(n);
  for (size_t i = 0; i < n; ++i)
    d[i] = static_cast<float>(std::to_integer<uint8_t>(raw[i])) / 255.0f;
  for (size_t i = 0; i < n; ++i) {
    const float c = d[i], l = i > 0 ? d[i - 1] : c, r = i + 1 < n ? d[i + 1] : c;
    const float v = (l + c + r) / 3.0f;
    s[i] = v > kThreshold ? v : 0.0f;
  }
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(s[i], 0.0f), 1.0f);
    out[i] = std::byte(static_cast<uint8_t>(std::fma(v, 255.0f, 0.5f)));
  }
  return out;
}

// One segment on one session: upload, three kernels, one sync, read back.
gl::Result<Bytes> run_pipeline(gl::ChunkContext& c, const std::string& ptx) {
  gl::Session& s = c.session();
  auto module = c.module("pipeline", gpulease::wire::as_bytes(ptx));  // once per lease
  if (!module) return std::move(module).error();
  const auto n = static_cast<uint32_t>(c.input().size());
  gl::DeviceBuffer bufs[4];
  const uint64_t sizes[4] = {n, n * 4ull, n * 4ull, n};  // raw u8, float a, float b, out u8
  for (int i = 0; i < 4; ++i) {
    auto b = s.mem_alloc(sizes[i]);
    if (!b) return std::move(b).error();
    bufs[i] = *b;
  }
  auto& [raw, a, b, out] = bufs;
  (void)s.mem_write(raw, 0, c.input());
  const gl::Dim3 grid{(n + 255) / 256, 1, 1}, block{256, 1, 1};
  (void)s.launch_with_args(*module, "decode", grid, block,
                           gl::KernelArgs().push_buffer(raw).push_buffer(a).push_u32(n));
  (void)s.launch_with_args(
      *module, "denoise", grid, block,
      gl::KernelArgs().push_buffer(a).push_buffer(b).push_u32(n).push_f32(kThreshold));
  (void)s.launch_with_args(*module, "encode", grid, block,
                           gl::KernelArgs().push_buffer(b).push_buffer(out).push_u32(n));
  if (auto r = s.sync(); !r) return std::move(r).error();  // a pipelined error surfaces here
  auto result = s.mem_read(out, 0, n);
  for (const auto& buf : bufs) (void)s.mem_free(buf);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Recipe 34: 100 segments through decode/denoise/encode over parallel leased sessions"};
  example::Common common;
  example::add_common(app, common);
  unsigned segments = 100, leases = 4, kill_after = 10;
  size_t segment_bytes = 4096;
  app.add_option("--segments", segments, "Number of segments")->capture_default_str();
  app.add_option("--segment-bytes", segment_bytes, "Bytes per segment")->capture_default_str();
  app.add_option("--leases", leases, "Leases (sessions) in parallel")->capture_default_str();
  app.add_option(
         "--kill-after", kill_after,
         "Release one lease behind the coordinator's back after this many segments (0 = never)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  return example::run_main("recipe34", [&] {
    gl::Connection conn = example::connect(common);
    // A second connection plays the outside party that ends a lease.
    gl::Connection saboteur = example::connect(common);
    const std::string ptx = example::ptx(common, "pipeline.ptx");

    std::mt19937 rng(34);
    std::vector<Bytes> inputs(segments, Bytes(segment_bytes));
    for (auto& in : inputs) {
      for (auto& byte : in) byte = std::byte(rng() & 0xff);
    }

    gl::JobCoordinator::Options o;
    o.nodes = {conn};
    o.workers = leases;
    o.lease.min_vram = std::max<uint64_t>(16u << 20, segment_bytes * 10);
    o.lease.ttl_s = 60;  // renewed in the background while held
    o.retry.max_retries = 3;
    o.retry.initial_backoff = std::chrono::milliseconds(20);
    std::atomic<unsigned> done{0};
    std::atomic<uint64_t> killed{0};
    o.on_chunk_done = [&](size_t, uint64_t lease_id) {
      if (kill_after != 0 && done.fetch_add(1) + 1 == kill_after) {
        killed = lease_id;
        auto victim = gl::Lease::adopt(saboteur, lease_id);
        auto r = victim.release();
        std::printf("recipe 34: released lease %llu behind the coordinator's back: %s\n",
                    static_cast<unsigned long long>(lease_id),
                    r ? "ok" : gl::describe(r.error()).c_str());
      }
    };
    o.on_retry = [](size_t index, const gl::Error& e) {
      std::printf("recipe 34: segment %zu will be retried on a fresh lease (%s)\n", index,
                  gl::describe(e).c_str());
    };
    gl::JobCoordinator jobs(o);
    const auto start = std::chrono::steady_clock::now();
    std::vector<Bytes> outputs =
        unwrap(jobs.run(inputs, [&](gl::ChunkContext& c) { return run_pipeline(c, ptx); }));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    unsigned mismatches = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (outputs[i] != reference(inputs[i])) ++mismatches;
    }
    const auto st = jobs.stats();
    std::printf("recipe 34: %u segments of %zu bytes over %u parallel leases in %.0f ms\n",
                segments, segment_bytes, leases, ms);
    std::printf("recipe 34: leases acquired %llu, chunk retries %llu, leases lost %llu\n",
                static_cast<unsigned long long>(st.leases_acquired),
                static_cast<unsigned long long>(st.retries),
                static_cast<unsigned long long>(st.leases_lost));
    const auto left = unwrap(gl::list_leases(conn));
    if (mismatches != 0) {
      std::printf("recipe 34: FAILED: %u of %u segments differ from the CPU reference\n",
                  mismatches, segments);
      return 1;
    }
    if (kill_after != 0 && kill_after < segments && (killed == 0 || st.retries == 0)) {
      std::printf("recipe 34: FAILED: the killed lease was not noticed and retried\n");
      return 1;
    }
    if (!left.empty()) {
      std::printf("recipe 34: FAILED: %zu leases still held after the job\n", left.size());
      return 1;
    }
    std::printf("recipe 34: OK: all %u segments match the CPU reference; every lease released\n",
                segments);
    return 0;
  });
}
