// The fleet's directory on etcd: read the node prefix, then watch it from
// the revision read (DECISIONS.md "Fleet directory on etcd").
#include <cstdlib>
#include <mutex>

#include "etcd_util.hpp"
#include "gpulease/client/fleet.hpp"

namespace gpulease::client {

using wire::Status;

namespace {

class EtcdDirectory final : public DirectorySource {
 public:
  EtcdDirectory(std::shared_ptr<etcd::Client> client, std::string fleet)
      : client_(std::move(client)), fleet_(std::move(fleet)), prefix_(fleet_nodes_prefix(fleet_)) {}
  ~EtcdDirectory() override { stop(); }

  Result<void> start(std::shared_ptr<FleetView> view) override {
    view_ = std::move(view);
    auto rev = read_all();
    if (!rev) return std::move(rev).error();
    etcd::WatchOptions wo;
    wo.key = prefix_;
    wo.range_end = etcd::prefix_end(prefix_);
    wo.start_revision = *rev + 1;
    wo.reconnect_min = std::chrono::milliseconds(50);
    wo.reconnect_max = std::chrono::milliseconds(1000);
    auto w = client_->watch(
        wo, [this](const etcd::WatchResponse& r) { on_events(r); },
        [](const etcd::Error&) {
          // The watch reconnects by itself (next endpoint, from the revision
          // after the last event delivered): nothing is lost but time.
        });
    if (!w) return detail::from_etcd(std::move(w).error(), "registry: watching " + prefix_);
    std::lock_guard lock(mu_);
    watch_ = std::move(w).value();
    return {};
  }

  void stop() noexcept override {
    std::unique_ptr<etcd::Watch> w;
    {
      std::lock_guard lock(mu_);
      w = std::move(watch_);
    }
    if (w) w->stop();  // joins the watch thread: no callback runs after this
  }

 private:
  // The whole prefix into the view; the revision it was read at.
  Result<int64_t> read_all() {
    auto r = client_->range_prefix(prefix_);
    if (!r) return detail::from_etcd(std::move(r).error(), "registry: reading " + prefix_);
    std::vector<FleetNode> nodes;
    for (const auto& kv : r->kvs) {
      auto n = parse(kv);
      if (n) nodes.push_back(std::move(n).value());
    }
    view_->reset(std::move(nodes), r->revision);
    return r->revision;
  }

  // A record, checked against its key and fleet; a bad one is reported to
  // the view and left out.
  std::optional<FleetNode> parse(const etcd::KeyValue& kv) {
    auto n = parse_node_record(kv.value);
    if (!n) {
      view_->bad_record(kv.key, n.error());
      return std::nullopt;
    }
    const std::string id = kv.key.substr(prefix_.size());
    if (n->node_id != id) {
      view_->bad_record(
          kv.key, make_error(Status::kInvalidArgument, "node record: node_id '" + n->node_id +
                                                           "' under the key of '" + id + "'"));
      return std::nullopt;
    }
    if (n->fleet != fleet_) {
      view_->bad_record(
          kv.key, make_error(Status::kInvalidArgument,
                             "node record: fleet '" + n->fleet + "' under fleet '" + fleet_ + "'"));
      return std::nullopt;
    }
    return std::move(n).value();
  }

  void on_events(const etcd::WatchResponse& r) {
    if (r.compacted) {
      // Events were lost: read everything again (the watch goes on from
      // the compact revision; replaying events after our read is harmless).
      (void)read_all();
      return;
    }
    for (const auto& e : r.events) {
      if (e.kv.key.size() <= prefix_.size()) continue;
      if (e.type == etcd::WatchEvent::Type::kDelete) {
        view_->remove(e.kv.key.substr(prefix_.size()), e.kv.mod_revision);
        continue;
      }
      if (auto n = parse(e.kv)) {
        view_->put(std::move(*n), e.kv.mod_revision);
      } else {
        // A record that no longer parses: the node is not placeable.
        view_->remove(e.kv.key.substr(prefix_.size()), e.kv.mod_revision);
      }
    }
  }

  std::shared_ptr<etcd::Client> client_;
  std::string fleet_;
  std::string prefix_;
  std::shared_ptr<FleetView> view_;
  std::mutex mu_;
  std::unique_ptr<etcd::Watch> watch_;  // GUARDED_BY(mu_)
};

}  // namespace

Result<Fleet> Fleet::open(FleetOptions options) {
  if (options.registry.empty()) {
    const char* env = std::getenv("GPULEASE_REGISTRY");
    if (env != nullptr) options.registry = env;
  }
  if (options.registry.empty())
    return make_error(Status::kInvalidArgument,
                      "no registry: give one (etcd://HOST:PORT[,...]) or set GPULEASE_REGISTRY");
  if (options.fleet.empty()) {
    const char* env = std::getenv("GPULEASE_FLEET");
    options.fleet = env != nullptr && *env != '\0' ? env : "default";
  }
  if (auto ok = check_fleet_name(options.fleet); !ok) return std::move(ok).error();
  auto client = detail::etcd_client(options.registry, options.registry_timeout);
  if (!client) return std::move(client).error();
  auto source = std::make_unique<EtcdDirectory>(std::move(client).value(), options.fleet);
  return open(std::move(options), std::move(source));
}

}  // namespace gpulease::client
