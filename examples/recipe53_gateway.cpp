// Recipe 53: a per-request leased inference gateway.
//
// Each request gets its own short lease, and the gateway asks the node
// (CAP_REQUEST) for a scoped grant bound to that lease with only
// TASKLET_SUBMIT | LEASE_QUERY. The grant is checked before any kernel is
// launched (lease, audience, permissions, time), and the launch and sync go
// out under it. An idempotency store refuses a request id it has already
// seen: in memory by default; with a registry (--registry or
// $GPULEASE_REGISTRY) the replicated one on etcd, shared by every gateway
// process, so two gateways racing on one request id run it once. Memory,
// module and lease are released when the request ends, and the gateway
// prints each request's timings.
//
// --request ID serves that one request (the race test runs two gateways
// with the same ID): it prints "ran the kernel" or, for a duplicate, the
// first run's answer from the store.
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

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

// The output values as the bytes the store keeps (this host's order, as the
// kernel writes them).
Bytes output_bytes(const std::vector<float>& y) {
  return example::to_bytes(y);
}
std::vector<float> output_floats(const Bytes& b) {
  std::vector<float> y(b.size() / 4);
  if (!y.empty()) std::memcpy(y.data(), b.data(), y.size() * 4);
  return y;
}

// Where leases come from: one node (--node), or the fleet (--registry
// without --node: placed by best fit; the token must be valid on every node,
// audience fleet:NAME).
struct LeaseSource {
  std::optional<gl::Connection> node;
  std::optional<gl::Fleet> fleet;
  gl::LeaseBuilder builder() const {
    return fleet ? gl::LeaseBuilder(*fleet) : gl::LeaseBuilder(*node);
  }
};

class Gateway {
 public:
  Gateway(LeaseSource leases, std::string ptx, gl::IdempotencyStore& effects)
      : leases_(std::move(leases)), ptx_(std::move(ptx)), effects_(effects) {}

  gl::Result<InferenceResponse> handle(const InferenceRequest& req) {
    if (req.input.size() != kInDim) {  // input bound, before anything is leased
      return gpulease::make_error(Status::kInvalidArgument,
                                  "input must have " + std::to_string(kInDim) + " values");
    }
    const std::string key = "inference:" + req.request_id;
    auto reservation = effects_.reserve(key);
    if (!reservation) return std::move(reservation).error();  // the store is down: run nothing
    if (reservation->state != gl::IdempotencyRecord::State::kReservedByUs) {
      return gpulease::make_error(
          Status::kInvalidArgument,
          "duplicate request " + req.request_id +
              (reservation->state == gl::IdempotencyRecord::State::kCompleted ? " (completed"
                                                                              : " (in progress") +
              " by " + reservation->owner + ")");
    }
    auto r = serve(req);
    if (r) {
      if (auto c = effects_.complete(key, reservation->fence, output_bytes(r->output)); !c)
        return std::move(c).error();
    } else {
      (void)effects_.abandon(key, reservation->fence);  // nothing happened: a retry may run it
    }
    return r;
  }

  // The first run's answer to a request id, once it is complete (bounded).
  gl::Result<std::vector<float>> first_answer(const std::string& request_id) {
    auto rec = effects_.wait_settled("inference:" + request_id, std::chrono::seconds(30));
    if (!rec) return std::move(rec).error();
    if (!*rec)
      return gpulease::make_error(Status::kInternal,
                                  "request " + request_id + " was given up by its owner");
    return output_floats((*rec)->result);
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
    auto lease = leases_.builder()
                     .min_vram(4u << 20)
                     .lease_secs(req.lease_ttl_secs)
                     .exclusivity(gl::Exclusivity::kSessionExclusive)
                     .release_on_disconnect()
                     .acquire();
    if (!lease && lease.status() == Status::kUnsupported) {
      lease = leases_.builder()
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
    if (auto ok = gl::check_scoped_token(*grant, lease->lease_id(),
                                         lease->connection().node_info().node_id,
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

  LeaseSource leases_;
  std::string ptx_;
  gl::IdempotencyStore& effects_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Recipe 53: per-request leases with scoped grants, an idempotency store, full teardown"};
  example::Common common;
  example::add_common(app, common);
  std::string registry, fleet_name, request_id, owner;
  int64_t start_at_ms = 0;
  app.add_option("--registry", registry,
                 "etcd://HOST:PORT[,...]: the replicated idempotency store (and, without --node, "
                 "the fleet leases are placed on) (default: $GPULEASE_REGISTRY)");
  app.add_option("--fleet", fleet_name, "Fleet name (default: $GPULEASE_FLEET, else default)");
  app.add_option("--request", request_id, "Serve only this request id (the race test)");
  app.add_option("--owner", owner, "This gateway's name in the store (default: host/pid)");
  app.add_option("--start-at-ms", start_at_ms,
                 "With --request: wait until this Unix time in ms (gateways start together)");
  CLI11_PARSE(app, argc, argv);
  if (registry.empty() && std::getenv("GPULEASE_REGISTRY") != nullptr)
    registry = std::getenv("GPULEASE_REGISTRY");

  return example::run_main("recipe53", [&]() -> int {
    // The store: replicated on etcd with a registry, else this process's memory.
    std::unique_ptr<gl::IdempotencyStore> store;
    LeaseSource leases;
    if (!registry.empty()) {
      gl::EtcdIdempotencyOptions so;
      so.registry = registry;
      so.fleet = fleet_name;
      so.owner = owner;
      so.reservation_ttl = std::chrono::seconds(30);
      so.result_ttl = std::chrono::seconds(3600);
      store = unwrap(gl::EtcdIdempotencyStore::open(so));
      std::printf("recipe 53: idempotency store: etcd %s (owner %s)\n", registry.c_str(),
                  static_cast<gl::EtcdIdempotencyStore&>(*store).owner().c_str());
    } else {
      store = std::make_unique<gl::MemoryIdempotencyStore>(owner.empty() ? "gateway" : owner);
      std::printf("recipe 53: idempotency store: in memory\n");
    }
    if (!registry.empty() && common.node.empty() && std::getenv("GPULEASE_NODE") == nullptr) {
      gl::FleetOptions fo;
      fo.registry = registry;
      fo.fleet = fleet_name;
      fo.token = example::connect_options(common).token;
      leases.fleet = unwrap(gl::Fleet::open(fo));
    } else {
      leases.node = example::connect(common);
    }
    auto lease_list = [&]() {
      std::vector<gl::LeaseInfo> all;
      if (leases.node) return unwrap(gl::list_leases(*leases.node));
      for (const auto& n : leases.fleet->nodes()) {
        auto c = leases.fleet->connect(n.node_id);
        if (!c) continue;
        for (auto& i : unwrap(gl::list_leases(*c))) all.push_back(i);
      }
      return all;
    };
    Gateway gateway(leases, example::ptx(common, "infer.ptx"), *store);
    auto input = [](float seed) {
      std::vector<float> v(kInDim);
      for (uint32_t i = 0; i < kInDim; ++i) v[i] = std::sin(seed + static_cast<float>(i) * 0.37f);
      return v;
    };

    if (!request_id.empty()) {
      // One request, maybe raced by another gateway with the same id.
      const InferenceRequest req{request_id, "embedder-v3", input(1.0f)};
      if (start_at_ms > 0) {
        const auto at =
            std::chrono::system_clock::time_point(std::chrono::milliseconds(start_at_ms));
        if (at - std::chrono::system_clock::now() < std::chrono::seconds(30))
          std::this_thread::sleep_until(at);
      }
      auto r = gateway.handle(req);
      std::vector<float> y;
      if (r) {
        y = r->output;
        std::printf("recipe 53: %s: ran the kernel on lease %llu\n", request_id.c_str(),
                    static_cast<unsigned long long>(r->lease_id));
      } else if (r.error().message().rfind("duplicate request", 0) == 0) {
        std::printf("recipe 53: %s: %s: refused by the idempotency store\n", request_id.c_str(),
                    gl::describe(r.error()).c_str());
        y = unwrap(gateway.first_answer(request_id));
        std::printf("recipe 53: %s: duplicate answer from the store\n", request_id.c_str());
      } else {
        throw gl::ClientError(r.error());
      }
      const auto want = infer_reference(model_for(req.model_id), req.input);
      float worst = y.size() == kOutDim ? 0.0f : 1e30f;
      for (uint32_t o = 0; o < kOutDim && o < y.size(); ++o)
        worst = std::max(worst, std::fabs(y[o] - want[o]));
      std::printf("recipe 53: %s: y[0..3] = %.4f %.4f %.4f %.4f, %s\n", request_id.c_str(),
                  y.size() > 3 ? y[0] : 0.f, y.size() > 3 ? y[1] : 0.f, y.size() > 3 ? y[2] : 0.f,
                  y.size() > 3 ? y[3] : 0.f,
                  worst <= 1e-5f ? "matches the CPU reference" : "MISMATCH");
      return worst <= 1e-5f ? 0 : 1;
    }

    // A replicated store outlives this run: tag the ids so that a second run
    // of the demo is not all duplicates.
    const std::string tag =
        registry.empty()
            ? ""
            : "." + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    const std::vector<InferenceRequest> requests = {
        {"req-2026-05-06-1" + tag, "embedder-v3", input(1.0f)},
        {"req-2026-05-06-2" + tag, "embedder-v3", input(2.0f)},
        {"req-2026-05-06-1" + tag, "embedder-v3", input(1.0f)},  // a duplicate: refused
        {"req-2026-05-06-3" + tag, "ranker-v1", input(3.0f)},
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
    const auto left = lease_list();
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
