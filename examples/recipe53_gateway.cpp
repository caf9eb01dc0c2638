// Recipe 53: a per-request leased inference gateway.
//
// Each request gets its own short lease, and the gateway asks the node
// (CAP_REQUEST) for a scoped grant bound to that lease with only
// TASKLET_SUBMIT | LEASE_QUERY. The grant is checked before any kernel is
// launched (lease, audience, permissions, time), and the launch and sync go
// out under it. An idempotency store refuses a request id it has already
// completed. Memory, module and lease are released when the request ends, and
// the gateway prints each request's timings.
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>

#include "example_common.hpp"

namespace gl = gpulease::client;
using gl::unwrap;
using gpulease::Status;
using gpulease::wire::Bytes;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kInDim = 32;
constexpr uint32_t kOutDim = 8;

struct InferenceRequest {
  std::string request_id;
  std::string model_id;
  std::vector<float> input;  // kInDim values
  uint32_t lease_ttl_secs = 10;
};

struct InferenceResponse {
  std::string request_id;
  uint64_t lease_id = 0;
  uint64_t token_expires_at = 0;
  std::vector<float> output;
  std::vector<std::pair<const char*, double>> timings_ms;
};

// Remembers which request ids are in progress or completed, so a retried or
// duplicated request cannot have a second effect. (In-memory here; the
// seed's is replicated.)
class IdempotencyStore {
 public:
  enum class Outcome { kReserved, kInProgress, kCompleted };
  Outcome reserve(const std::string& key) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = state_.emplace(key, false);
    if (fresh) return Outcome::kReserved;
    return it->second ? Outcome::kCompleted : Outcome::kInProgress;
  }
  void complete(const std::string& key) {
    std::lock_guard lock(mu_);
    state_[key] = true;
  }
  void abandon(const std::string& key) {
    std::lock_guard lock(mu_);
    state_.erase(key);
  }

 private:
  std::mutex mu_;
  std::map<std::string, bool> state_;  // key -> completed
};

// The model's weights: deterministic from its id.
struct Model {
  std::vector<float> w, b;
};
Model model_for(const std::string& id) {
  Model m{std::vector<float>(kInDim * kOutDim), std::vector<float>(kOutDim)};
  uint32_t x = 0;
  for (char c : id) x = x * 31 + static_cast<uint8_t>(c);
  auto next = [&] {
    x = x * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int>(x >> 20) - 2048) / 2048.0f;
  };
  for (auto& v : m.w) v = next();
  for (auto& v : m.b) v = next() * 0.1f;
  return m;
}

std::vector<float> infer_reference(const Model& m, const std::vector<float>& x) {
  return example::infer_reference(m.w, m.b, x, kInDim, kOutDim);
}

class Gateway {
 public:
  Gateway(gl::Connection conn, std::string ptx) : conn_(std::move(conn)), ptx_(std::move(ptx)) {}

  gl::Result<InferenceResponse> handle(const InferenceRequest& req) {
    if (req.input.size() != kInDim) {  // input bound, before anything is leased
      return gpulease::make_error(Status::kInvalidArgument,
                                  "input must have " + std::to_string(kInDim) + " values");
    }
    const std::string key = "inference:" + req.request_id;
    switch (effects_.reserve(key)) {
      case IdempotencyStore::Outcome::kReserved:
        break;
      case IdempotencyStore::Outcome::kInProgress:
      case IdempotencyStore::Outcome::kCompleted:
        return gpulease::make_error(Status::kInvalidArgument,
                                    "duplicate request " + req.request_id);
    }
    auto r = serve(req);
    if (r) {
      effects_.complete(key);
    } else {
      effects_.abandon(key);  // nothing happened: a retry may run it
    }
    return r;
  }

 private:
  gl::Result<InferenceResponse> serve(const InferenceRequest& req) {
    InferenceResponse resp;
    resp.request_id = req.request_id;
    auto t = Clock::now();
    auto lap = [&](const char* what) {
      auto now = Clock::now();
      resp.timings_ms.emplace_back(what,
                                   std::chrono::duration<double, std::milli>(now - t).count());
      t = now;
    };
    // One short lease per request. SessionExclusive where the node's backend
    // can partition SMs (cuda); the sim backend offers shared leases only.
    auto lease = gl::LeaseBuilder(conn_)
                     .min_vram(4u << 20)
                     .lease_secs(req.lease_ttl_secs)
                     .exclusivity(gl::Exclusivity::kSessionExclusive)
                     .release_on_disconnect()
                     .acquire();
    if (!lease && lease.status() == Status::kUnsupported) {
      lease = gl::LeaseBuilder(conn_)
                  .min_vram(4u << 20)
                  .lease_secs(req.lease_ttl_secs)
                  .release_on_disconnect()
                  .acquire();
    }
    if (!lease) return std::move(lease).error();
    resp.lease_id = lease->lease_id();
    lap("acquire");

    // A grant for this lease with only what inference needs, checked before use.
    auto grant =
        gl::request_scoped_token(*lease, gl::kDefaultScopedPermissions, req.lease_ttl_secs);
    if (!grant) return std::move(grant).error();
    const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    if (auto ok = gl::check_scoped_token(*grant, lease->lease_id(), conn_.node_info().node_id,
                                         gl::Permission::kTaskletSubmit, now_s);
        !ok) {
      return std::move(ok).error();
    }
    resp.token_expires_at = grant->expires_at_unix_secs();
    gl::Session submit_only(*lease, grant->token);
    // Fail closed: the node refuses the grant anything beyond submit and query.
    if (auto probe = submit_only.mem_alloc(16);
        probe.ok() || probe.status() != Status::kPermissionDenied) {
      return gpulease::make_error(Status::kInternal,
                                  "the scoped grant was allowed to allocate memory");
    }
    lap("grant");

    // Upload weights and input, load the module (the gateway's own rights).
    const Model model = model_for(req.model_id);
    gl::Session s(*lease);
    auto w = s.mem_alloc(model.w.size() * 4);
    auto x = s.mem_alloc(kInDim * 4);
    auto b = s.mem_alloc(kOutDim * 4);
    auto y = s.mem_alloc(kOutDim * 4);
    for (auto* r : {&w, &x, &b, &y}) {
      if (!*r) return std::move(*r).error();
    }
    (void)s.mem_write(*w, 0, example::to_bytes(model.w));
    (void)s.mem_write(*x, 0, example::to_bytes(req.input));
    (void)s.mem_write(*b, 0, example::to_bytes(model.b));
    auto module = s.module_load(gpulease::wire::as_bytes(ptx_));
    if (!module) return std::move(module).error();
    if (auto f = s.flush(); !f) return std::move(f).error();
    lap("upload+load");

    // Launch and sync under the scoped grant.
    (void)submit_only.launch_with_args(*module, "infer", {1, 1, 1}, {kOutDim, 1, 1},
                                       gl::KernelArgs()
                                           .push_buffer(*w)
                                           .push_buffer(*x)
                                           .push_buffer(*b)
                                           .push_buffer(*y)
                                           .push_u32(kInDim)
                                           .push_u32(kOutDim));
    if (auto r = submit_only.sync(); !r) return std::move(r).error();
    lap("launch+sync");

    auto out = s.mem_read(*y, 0, kOutDim * 4);  // output bound: exactly kOutDim values
    if (!out) return std::move(out).error();
    resp.output.resize(kOutDim);
    std::memcpy(resp.output.data(), out->data(), out->size());
    lap("read");

    // Explicit teardown: module, memory, lease.
    if (auto r = s.module_unload(*module); !r) return std::move(r).error();
    for (auto* r : {&w, &x, &b, &y}) {
      if (auto f = s.mem_free(**r); !f) return std::move(f).error();
    }
    if (auto r = lease->release(); !r) return std::move(r).error();
    lap("teardown");
    return resp;
  }

  gl::Connection conn_;
  std::string ptx_;
  IdempotencyStore effects_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Recipe 53: per-request leases with scoped grants, an idempotency store, full teardown"};
  example::Common common;
  example::add_common(app, common);
  CLI11_PARSE(app, argc, argv);

  return example::run_main("recipe53", [&] {
    gl::Connection conn = example::connect(common);
    Gateway gateway(conn, example::ptx(common, "infer.ptx"));
    auto input = [](float seed) {
      std::vector<float> v(kInDim);
      for (uint32_t i = 0; i < kInDim; ++i) v[i] = std::sin(seed + static_cast<float>(i) * 0.37f);
      return v;
    };
    const std::vector<InferenceRequest> requests = {
        {"req-2026-05-06-1", "embedder-v3", input(1.0f)},
        {"req-2026-05-06-2", "embedder-v3", input(2.0f)},
        {"req-2026-05-06-1", "embedder-v3", input(1.0f)},  // a duplicate: refused
        {"req-2026-05-06-3", "ranker-v1", input(3.0f)},
    };
    int failures = 0, refused = 0;
    for (const auto& req : requests) {
      auto r = gateway.handle(req);
      if (!r) {
        const bool duplicate = r.error().message().rfind("duplicate request", 0) == 0;
        std::printf("recipe 53: %s: %s%s\n", req.request_id.c_str(),
                    gl::describe(r.error()).c_str(),
                    duplicate ? " (refused by the idempotency store, as expected)" : "");
        if (duplicate) {
          ++refused;
        } else {
          ++failures;
        }
        continue;
      }
      const auto want = infer_reference(model_for(req.model_id), req.input);
      float worst = 0;
      for (uint32_t o = 0; o < kOutDim; ++o)
        worst = std::max(worst, std::fabs(r->output[o] - want[o]));
      const bool ok = worst <= 1e-5f;
      std::printf(
          "recipe 53: %s on lease %llu (grant expires %llu): y[0..3] = %.4f %.4f %.4f %.4f, %s\n",
          req.request_id.c_str(), static_cast<unsigned long long>(r->lease_id),
          static_cast<unsigned long long>(r->token_expires_at), r->output[0], r->output[1],
          r->output[2], r->output[3], ok ? "matches the CPU reference" : "MISMATCH");
      std::printf("recipe 53:   timings:");
      for (auto [what, ms] : r->timings_ms) std::printf(" %s %.2f ms;", what, ms);
      std::printf("\n");
      if (!ok) ++failures;
    }
    const auto left = unwrap(gl::list_leases(conn));
    std::printf("recipe 53: leases held after all requests: %zu\n", left.size());
    if (failures != 0 || refused != 1 || !left.empty()) {
      std::printf("recipe 53: FAILED\n");
      return 1;
    }
    std::printf(
        "recipe 53: OK: 3 requests served on their own leases, 1 duplicate refused, everything "
        "freed\n");
    return 0;
  });
}
