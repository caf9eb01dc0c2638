// Wire codec benchmarks.
//
// - A small frame (a LAUNCH request with three raw arguments and a 160-byte
//   token section, the size of a typical capability token): encode and
//   decode, ns per frame.
// - The checksum of a 16 MiB MEM_WRITE frame against a plain XXH3_64bits of
//   the same bytes measured in the same run: counter `vs_xxh3` is
//   frame_checksum time / XXH3_64bits time (1.00 = no overhead). The
//   baseline must run first (it is registered first; do not filter it out).
// - decode_frame of the 16 MiB frame (header checks + checksum), with the
//   same ratio. Ratios use thread CPU time (see cpu_ns).
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <time.h>

#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"

namespace {

using namespace gpulease::wire;

// Thread CPU time in ns: the ratios compare CPU time, which a machine shared
// with other work disturbs far less than wall time.
double cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

constexpr size_t kBigPayload = 16u << 20;
double g_xxh3_ns_per_frame = 0;  // baseline of the run, set by BM_Xxh3Plain16MiB

LaunchRequest small_launch() {
  LaunchRequest m;
  m.module = 1;
  m.kernel = "scale";
  m.grid = {4, 1, 1};
  m.block = {256, 1, 1};
  m.args.raw_sizes = {8, 4, 4};
  m.args.raw_blob = Bytes(16, std::byte{0x11});
  return m;
}

FrameHeader header(Opcode op) {
  FrameHeader h;
  h.opcode = op;
  h.request_id = 7;
  h.lease_id = 42;
  return h;
}

const Bytes& token() {
  static const Bytes t(160, std::byte{0x5a});
  return t;
}

const Bytes& big_frame() {
  static const Bytes f = [] {
    MemWriteRequest m{0x00007f0000200000, 0, Bytes(kBigPayload)};
    for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = std::byte(i * 131 + 7);
    return encode_frame(header(Opcode::kMemWrite), token(), encode_payload(m));
  }();
  return f;
}

void report_ratio(benchmark::State& state, double elapsed_ns) {
  double ns = elapsed_ns / static_cast<double>(state.iterations());
  if (g_xxh3_ns_per_frame > 0) state.counters["vs_xxh3"] = ns / g_xxh3_ns_per_frame;
}

void BM_EncodeSmallLaunchFrame(benchmark::State& state) {
  const LaunchRequest m = small_launch();
  size_t bytes = 0;
  for (auto _ : state) {
    Bytes payload = encode_payload(m);
    Bytes frame = encode_frame(header(Opcode::kLaunch), token(), payload);
    bytes = frame.size();
    benchmark::DoNotOptimize(frame.data());
  }
  state.counters["frame_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_EncodeSmallLaunchFrame);

void BM_DecodeSmallLaunchFrame(benchmark::State& state) {
  const Bytes frame =
      encode_frame(header(Opcode::kLaunch), token(), encode_payload(small_launch()));
  const Limits limits;
  for (auto _ : state) {
    auto f = decode_frame(frame, limits);
    auto m = decode_payload<LaunchRequest>(f->payload, limits);
    benchmark::DoNotOptimize(m.ok());
    benchmark::DoNotOptimize(m->args.raw_blob.data());
  }
  state.counters["frame_bytes"] = static_cast<double>(frame.size());
}
BENCHMARK(BM_DecodeSmallLaunchFrame);

// The baseline hashes the frame's own buffer (same bytes but for the 8
// checksum bytes, same memory), so cache placement does not bias the ratio.
void BM_Xxh3Plain16MiB(benchmark::State& state) {
  const Bytes& f = big_frame();
  const double t0 = cpu_ns();
  for (auto _ : state) {
    uint64_t h = XXH3_64bits(f.data(), f.size());
    benchmark::DoNotOptimize(h);
  }
  g_xxh3_ns_per_frame = (cpu_ns() - t0) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.size()));
}
BENCHMARK(BM_Xxh3Plain16MiB)->Unit(benchmark::kMicrosecond);

void BM_FrameChecksum16MiB(benchmark::State& state) {
  const ByteSpan f(big_frame());
  const ByteSpan hdr = f.first(kHeaderSize), tok = f.subspan(kHeaderSize, token().size()),
                 payload = f.subspan(kHeaderSize + token().size());
  const double t0 = cpu_ns();
  for (auto _ : state) {
    uint64_t h = frame_checksum(hdr, tok, payload);
    benchmark::DoNotOptimize(h);
  }
  report_ratio(state, cpu_ns() - t0);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.size()));
}
BENCHMARK(BM_FrameChecksum16MiB)->Unit(benchmark::kMicrosecond);

void BM_DecodeFrame16MiB(benchmark::State& state) {
  const Bytes& f = big_frame();
  const Limits limits;
  const double t0 = cpu_ns();
  for (auto _ : state) {
    auto v = decode_frame(f, limits);
    benchmark::DoNotOptimize(v.ok());
  }
  report_ratio(state, cpu_ns() - t0);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.size()));
}
BENCHMARK(BM_DecodeFrame16MiB)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
