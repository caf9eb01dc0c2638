// Recipe 5: an inference service that shares GPUs without containers.
//
// The service holds one lease per model with the model's weights uploaded
// once, and serves requests from several client threads: each request
// uploads its input, runs the `infer` kernel on the resident weights, reads
// the output and frees its buffers. Inputs and outputs are bounds-checked.
// The leases are short and deliberately not renewed: when one expires the
// service answers with a clear LEASE_EXPIRED error, reacquires the lease,
// uploads the weights again and goes on serving.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <shared_mutex>
#include <thread>

#include "example_common.hpp"

namespace gl = gpulease::client;
using gl::Error;
using gl::Result;
using gl::unwrap;
using gpulease::Status;
using gpulease::wire::Bytes;

namespace {

struct ModelSpec {
  std::string name;
  uint32_t in_dim = 0, out_dim = 0;
  std::vector<float> w, b;
};

ModelSpec make_model(std::string name, uint32_t in_dim, uint32_t out_dim, uint32_t seed) {
  ModelSpec m{std::move(name), in_dim, out_dim, std::vector<float>(size_t{in_dim} * out_dim),
              std::vector<float>(out_dim)};
  uint32_t x = seed;
  auto next = [&] {
    x = x * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int>(x >> 20) - 2048) / 4096.0f;
  };
  for (auto& v : m.w) v = next();
  for (auto& v : m.b) v = next();
  return m;
}

std::vector<float> reference(const ModelSpec& m, const std::vector<float>& x) {
  return example::infer_reference(m.w, m.b, x, m.in_dim, m.out_dim);
}

// One model instance: a lease with the weights and the module resident.
// THREAD SAFETY: infer() may be called from many threads; each request uses
// its own Session on the shared lease. A reacquire takes the lock exclusively.
class ModelInstance {
 public:
  ModelInstance(gl::Connection conn, ModelSpec spec, std::string ptx, uint32_t lease_secs)
      : conn_(std::move(conn)),
        spec_(std::move(spec)),
        ptx_(std::move(ptx)),
        lease_secs_(lease_secs) {}

  Result<void> load() {
    std::unique_lock lock(mu_);
    return load_locked();
  }

  Result<std::vector<float>> infer(const std::vector<float>& x) {
    if (x.size() != spec_.in_dim) {
      return gpulease::make_error(Status::kInvalidArgument,
                                  spec_.name + ": input must have " + std::to_string(spec_.in_dim) +
                                      " values, got " + std::to_string(x.size()));
    }
    std::shared_lock lock(mu_);
    if (!lease_)
      return gpulease::make_error(Status::kLeaseExpired,
                                  spec_.name + ": no lease (reacquire failed)");
    auto r = run(x);
    if (!r && gl::is_lease_lost(r.error())) {
      const uint64_t lost_id = lease_->lease_id();
      lock.unlock();
      reacquire(lost_id);
      return Error(r.error().status(), spec_.name + ": its lease " + std::to_string(lost_id) +
                                           " ended (" + gl::describe(r.error()) +
                                           "); reacquired, retry the request");
    }
    return r;
  }

  uint64_t reacquisitions() const { return reacquisitions_.load(); }

 private:
  Result<void> load_locked() {
    auto lease = gl::LeaseBuilder(conn_).min_vram(4u << 20).lease_secs(lease_secs_).acquire();
    if (!lease) return std::move(lease).error();
    gl::Session s(*lease);
    auto w = s.mem_alloc(spec_.w.size() * 4);
    if (!w) return std::move(w).error();
    auto b = s.mem_alloc(spec_.b.size() * 4);
    if (!b) return std::move(b).error();
    (void)s.mem_write(*w, 0, example::to_bytes(spec_.w));  // weights: uploaded once per lease
    (void)s.mem_write(*b, 0, example::to_bytes(spec_.b));
    auto m = s.module_load(gpulease::wire::as_bytes(ptx_));
    if (!m) return std::move(m).error();
    if (auto f = s.flush(); !f) return std::move(f).error();
    w_ = *w;
    b_ = *b;
    module_ = *m;
    lease_.emplace(std::move(lease).value());
    return {};
  }

  void reacquire(uint64_t lost_id) {
    std::unique_lock lock(mu_);
    if (lease_ && lease_->lease_id() != lost_id) return;  // another thread did it already
    if (lease_) lease_->detach();  // it is gone on the node; nothing to release
    lease_.reset();
    if (auto r = load_locked(); !r) {
      std::fprintf(stderr, "recipe5: %s: reacquire failed: %s\n", spec_.name.c_str(),
                   gl::describe(r.error()).c_str());
      return;
    }
    reacquisitions_++;
  }

  Result<std::vector<float>> run(const std::vector<float>& x) {
    gl::Session s(*lease_);
    auto xb = s.mem_alloc(x.size() * 4);
    if (!xb) return std::move(xb).error();
    auto yb = s.mem_alloc(size_t{spec_.out_dim} * 4);
    if (!yb) return std::move(yb).error();
    (void)s.mem_write(*xb, 0, example::to_bytes(x));
    (void)s.launch_with_args(module_, "infer", {(spec_.out_dim + 63) / 64, 1, 1}, {64, 1, 1},
                             gl::KernelArgs()
                                 .push_buffer(w_)
                                 .push_buffer(*xb)
                                 .push_buffer(b_)
                                 .push_buffer(*yb)
                                 .push_u32(spec_.in_dim)
                                 .push_u32(spec_.out_dim));
    if (auto r = s.sync(); !r) return std::move(r).error();
    auto out = s.mem_read(*yb, 0, size_t{spec_.out_dim} * 4);  // output bound: out_dim values
    (void)s.mem_free(*xb);
    (void)s.mem_free(*yb);
    if (!out) return std::move(out).error();
    std::vector<float> y(spec_.out_dim);
    std::memcpy(y.data(), out->data(), out->size());
    return y;
  }

  gl::Connection conn_;
  const ModelSpec spec_;
  const std::string ptx_;
  const uint32_t lease_secs_;
  std::shared_mutex mu_;
  std::optional<gl::Lease> lease_;  // GUARDED_BY(mu_)
  gl::DeviceBuffer w_, b_;          // GUARDED_BY(mu_)
  gl::Module module_;               // GUARDED_BY(mu_)
  std::atomic<uint64_t> reacquisitions_{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Recipe 5: an inference service holding one lease per model, serving several client threads"};
  example::Common common;
  example::add_common(app, common);
  unsigned threads = 4, requests = 12;
  uint32_t lease_secs = 3;
  app.add_option("--threads", threads, "Client threads")->capture_default_str();
  app.add_option("--requests", requests, "Requests per client thread per phase")
      ->capture_default_str();
  app.add_option("--lease-secs", lease_secs, "Lease TTL (not renewed, to show expiry)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  return example::run_main("recipe5", [&] {
    gl::Connection conn = example::connect(common);
    const std::string ptx = example::ptx(common, "infer.ptx");
    std::vector<ModelSpec> specs = {make_model("classifier", 64, 10, 5),
                                    make_model("embedder", 128, 32, 7)};
    std::vector<std::unique_ptr<ModelInstance>> models;
    for (const auto& spec : specs) {
      models.push_back(std::make_unique<ModelInstance>(conn, spec, ptx, lease_secs));
      unwrap(models.back()->load());
    }
    std::printf("recipe 5: serving %zu models, one lease each, weights resident\n", models.size());

    // expired: requests answered with a lease-lost error (the service then
    // reacquires); failed: any other error.
    std::atomic<unsigned> served{0}, wrong{0}, expired{0}, failed{0};
    std::mutex lat_mu;
    std::vector<double> latencies;
    auto phase = [&](const char* name) {
      std::vector<std::thread> clients;
      for (unsigned t = 0; t < threads; ++t) {
        clients.emplace_back([&, t] {
          for (unsigned i = 0; i < requests; ++i) {
            const size_t mi = (t + i) % models.size();
            std::vector<float> x(specs[mi].in_dim);
            for (size_t k = 0; k < x.size(); ++k)
              x[k] = std::cos(static_cast<float>(t * 131 + i * 17 + k) * 0.1f);
            const auto start = std::chrono::steady_clock::now();
            auto y = models[mi]->infer(x);
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count();
            if (!y) {
              (gl::is_lease_lost(y.error()) ? expired : failed)++;
              std::fprintf(stderr, "recipe 5: request failed: %s\n",
                           gl::describe(y.error()).c_str());
              continue;
            }
            const auto want = reference(specs[mi], x);
            bool ok = true;
            for (size_t o = 0; o < want.size(); ++o)
              ok = ok && std::fabs((*y)[o] - want[o]) <= 1e-5f;
            if (!ok) wrong++;
            served++;
            std::lock_guard lock(lat_mu);
            latencies.push_back(ms);
          }
        });
      }
      for (auto& c : clients) c.join();
      std::printf(
          "recipe 5: %s: %u requests served so far, %u wrong, %u lease-expired, %u failed\n", name,
          served.load(), wrong.load(), expired.load(), failed.load());
    };

    phase("phase 1");

    // Let the leases expire (they are not renewed), then show the clear error
    // and the reacquire, model by model.
    std::this_thread::sleep_for(std::chrono::seconds(lease_secs) + std::chrono::milliseconds(700));
    for (size_t mi = 0; mi < models.size(); ++mi) {
      std::vector<float> probe(specs[mi].in_dim, 0.5f);
      auto r = models[mi]->infer(probe);
      if (r || !gl::is_lease_lost(r.error())) {
        std::printf("recipe 5: FAILED: expected a lease-expired error after %u s\n", lease_secs);
        return 1;
      }
      std::printf("recipe 5: after expiry: %s\n", gl::describe(r.error()).c_str());
    }
    auto bad = models[0]->infer(std::vector<float>(3, 1.0f));
    std::printf("recipe 5: a malformed request: %s\n",
                bad ? "accepted?!" : gl::describe(bad.error()).c_str());

    phase("phase 2");

    std::sort(latencies.begin(), latencies.end());
    const double p50 = latencies.empty() ? 0 : latencies[latencies.size() / 2];
    const double p99 = latencies.empty()
                           ? 0
                           : latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
    uint64_t reacq = 0;
    for (auto& m : models) reacq += m->reacquisitions();
    std::printf(
        "recipe 5: %u requests served, latency p50 %.2f ms, p99 %.2f ms; %llu leases reacquired\n",
        served.load(), p50, p99, static_cast<unsigned long long>(reacq));
    // On a slow machine a lease may expire again mid-phase: those requests get
    // the clear error and the service reacquires; nothing else may fail.
    if (wrong != 0 || failed != 0 || bad.ok() || reacq < models.size() ||
        served + expired != 2 * threads * requests) {
      std::printf("recipe 5: FAILED\n");
      return 1;
    }
    std::printf(
        "recipe 5: OK: every answer matches the CPU reference; expired leases were reported and "
        "reacquired\n");
    return 0;
  });
}
