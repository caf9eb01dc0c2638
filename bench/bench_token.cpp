// Token verification cost, cold (Ed25519 every time: libsodium's cost) and
// warm (verified-signature cache hit; every other check still runs), in the
// same run, with their ratio printed at the end. The raw libsodium verify is
// the baseline the cold path is compared with.
//
//   build/bin/bench_token [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "gpulease/capability/authority.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/capability/verifier.hpp"

namespace cap = gpulease::capability;
using gpulease::wire::Bytes;
using gpulease::wire::Opcode;

namespace {

constexpr int64_t kNow = 1700000000;

cap::SecretKey authority_key() {
  std::array<uint8_t, 32> s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(i);
  return cap::SecretKey::from_seed(s);
}

// A typical session token: bound to one lease, session permissions.
Bytes session_token(const cap::Authority& a, uint8_t id) {
  cap::Claims c;
  c.tenant = "tenant-0042";
  c.audience = "node-a.gpu.example.net";
  c.lease_id = 42;
  c.perms = cap::bits(cap::Permission::kMem) | cap::bits(cap::Permission::kTaskletSubmit);
  c.not_before = kNow - 60;
  c.expires_at = kNow + 3600;
  c.token_id.fill(id);
  return std::move(a.mint(c)).value();
}

std::unique_ptr<cap::Verifier> make_verifier(const cap::Authority& a, size_t cache) {
  cap::VerifierOptions o;
  o.node_id = "node-a.gpu.example.net";
  o.cache_capacity = cache;
  auto v = std::make_unique<cap::Verifier>(o);
  v->key_ring().add(a.public_key());
  v->revocations().revoke_tenant("someone-else");  // a non-empty set, as in production
  return v;
}

const cap::VerifyRequest kReq{Opcode::kLaunch, 42, kNow};

void BM_Ed25519VerifyBaseline(benchmark::State& state) {
  const cap::Authority a(authority_key());
  const Bytes t = session_token(a, 1);
  auto view = cap::parse_token(t);
  const Bytes msg = cap::signing_message(view->body);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cap::verify_signature(a.public_key(), msg, view->signature));
  }
}
BENCHMARK(BM_Ed25519VerifyBaseline)->Unit(benchmark::kNanosecond);

void BM_ParseToken(benchmark::State& state) {
  const cap::Authority a(authority_key());
  const Bytes t = session_token(a, 1);
  for (auto _ : state) benchmark::DoNotOptimize(cap::parse_token(t));
}
BENCHMARK(BM_ParseToken)->Unit(benchmark::kNanosecond);

void BM_VerifyColdCache(benchmark::State& state) {
  const cap::Authority a(authority_key());
  auto v = make_verifier(a, 0);  // cache disabled: every frame pays Ed25519
  const Bytes t = session_token(a, 1);
  for (auto _ : state) {
    auto r = v->verify(t, kReq);
    if (!r) state.SkipWithError("verify failed");
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_VerifyColdCache)->Unit(benchmark::kNanosecond);

void BM_VerifyWarmCache(benchmark::State& state) {
  static cap::Authority* a = new cap::Authority(authority_key());
  static cap::Verifier* v = make_verifier(*a, 65536).release();
  // One token per thread, as with one connection per client.
  const Bytes t = session_token(*a, static_cast<uint8_t>(state.thread_index()));
  if (!v->verify(t, kReq)) state.SkipWithError("verify failed");
  for (auto _ : state) {
    auto r = v->verify(t, kReq);
    benchmark::DoNotOptimize(r);
  }
  if (state.thread_index() == 0) {
    const auto s = v->stats().cache;
    state.counters["hit_rate"] =
        static_cast<double>(s.hits) / static_cast<double>(s.hits + s.misses);
  }
}
BENCHMARK(BM_VerifyWarmCache)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_VerifyWarmCache)->Unit(benchmark::kNanosecond)->Threads(2);

void BM_CacheLookupHit(benchmark::State& state) {
  const cap::Authority a(authority_key());
  cap::SignatureCache cache(65536);
  const Bytes t = session_token(a, 1);
  cache.insert(t);
  for (auto _ : state) benchmark::DoNotOptimize(cache.contains(t));
}
BENCHMARK(BM_CacheLookupHit)->Unit(benchmark::kNanosecond);

void BM_Mint(benchmark::State& state) {
  const cap::Authority a(authority_key());
  uint8_t id = 0;
  for (auto _ : state) benchmark::DoNotOptimize(session_token(a, id++));
}
BENCHMARK(BM_Mint)->Unit(benchmark::kNanosecond);

// Console output as usual, plus the per-iteration real times kept by name so
// the ratios can be printed after the run.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (!r.error_occurred && r.run_type == Run::RT_Iteration) {
        ns_[r.benchmark_name()] = r.GetAdjustedRealTime();
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void print_ratios() const {
    auto get = [&](const char* n) {
      auto it = ns_.find(n);
      return it == ns_.end() ? 0.0 : it->second;
    };
    const double cold = get("BM_VerifyColdCache"), warm = get("BM_VerifyWarmCache");
    const double base = get("BM_Ed25519VerifyBaseline");
    if (cold > 0 && warm > 0) {
      std::printf("\ntoken verify: cold %.0f ns, warm %.0f ns, cold/warm = %.1fx", cold, warm,
                  cold / warm);
      if (base > 0) std::printf(", cold/libsodium = %.2f", cold / base);
      std::printf("\n");
    }
  }

 private:
  std::map<std::string, double> ns_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
