#include "gpulease/client/fleet.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <tuple>

#include "gpulease/etcd/client.hpp"
#include "gpulease/wire/host_port.hpp"

namespace gpulease::client {

using wire::Status;

namespace {

Error bad(std::string what) {
  return make_error(Status::kInvalidArgument, "node record: " + std::move(what));
}

// A string field of at most kMaxNodeStringBytes; absent or mistyped -> error.
// `at` names where the field is ("device 2: ") in the error.
Result<std::string> get_string(const nlohmann::json& j, const char* key, const std::string& at,
                               bool required = true) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (!required) return std::string();
    return bad(at + "no \"" + key + "\"");
  }
  if (!it->is_string()) return bad(at + "\"" + key + "\" is not a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > kMaxNodeStringBytes)
    return bad(at + "\"" + key + "\" is longer than " + std::to_string(kMaxNodeStringBytes) +
               " bytes");
  return s;
}

Result<uint64_t> get_u64(const nlohmann::json& j, const char* key, const std::string& at,
                         uint64_t max) {
  auto it = j.find(key);
  if (it == j.end()) return bad(at + "no \"" + key + "\"");
  if (!it->is_number_unsigned())  // nlohmann parses every non-negative integer as unsigned
    return bad(at + "\"" + key + "\" is not a non-negative integer");
  const auto v = it->get<uint64_t>();
  if (v > max) return bad(at + "\"" + key + "\" is over " + std::to_string(max));
  return v;
}

bool fleet_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

uint64_t FleetNode::free_vram() const noexcept {
  uint64_t s = 0;
  for (const auto& d : devices) s += d.free_vram;
  return s;
}

uint64_t FleetNode::total_vram() const noexcept {
  uint64_t s = 0;
  for (const auto& d : devices) s += d.total_vram;
  return s;
}

Result<FleetNode> parse_node_record(std::string_view text) {
  if (text.size() > kMaxNodeRecordBytes)
    return bad("larger than " + std::to_string(kMaxNodeRecordBytes) + " bytes");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("not JSON");
  if (!j.is_object()) return bad("not a JSON object");
  FleetNode n;
  for (auto [field, key] : {std::pair{&n.node_id, "node_id"}, std::pair{&n.fleet, "fleet"},
                            std::pair{&n.address, "address"}, std::pair{&n.backend, "backend"}}) {
    auto s = get_string(j, key, "");
    if (!s) return std::move(s).error();
    *field = std::move(s).value();
  }
  if (n.node_id.empty()) return bad("\"node_id\" is empty");
  if (auto a = wire::parse_host_port(n.address); !a)
    return bad("\"address\": " + a.error().message);
  auto version = get_u64(j, "version", "", UINT32_MAX);
  if (!version) return std::move(version).error();
  if (*version != 1) return bad("version " + std::to_string(*version) + " (this client reads 1)");
  n.version = static_cast<uint32_t>(*version);
  if (j.contains("updated_ms")) {
    auto u = get_u64(j, "updated_ms", "", UINT64_MAX);
    if (!u) return std::move(u).error();
    n.updated_ms = *u;
  }
  auto devs = j.find("devices");
  if (devs == j.end() || !devs->is_array()) return bad("no \"devices\" array");
  if (devs->size() > kMaxNodeDevices)
    return bad("more than " + std::to_string(kMaxNodeDevices) + " devices");
  for (const auto& d : *devs) {
    const std::string at = "device " + std::to_string(n.devices.size()) + ": ";
    if (!d.is_object()) return bad(at + "not an object");
    FleetDevice fd;
    auto index = get_u64(d, "index", at, 0xfffe);
    if (!index) return std::move(index).error();
    fd.index = static_cast<uint16_t>(*index);
    auto name = get_string(d, "name", at, false);
    if (!name) return std::move(name).error();
    fd.name = std::move(name).value();
    auto cc = d.find("compute_capability");
    if (cc == d.end() || !cc->is_array() || cc->size() != 2 || !(*cc)[0].is_number_unsigned() ||
        !(*cc)[1].is_number_unsigned() || (*cc)[0].get<uint64_t>() > 255 ||
        (*cc)[1].get<uint64_t>() > 255)
      return bad(at + "\"compute_capability\" is not [major, minor] (0..255 each)");
    fd.cc_major = static_cast<uint8_t>((*cc)[0].get<uint64_t>());
    fd.cc_minor = static_cast<uint8_t>((*cc)[1].get<uint64_t>());
    auto total = get_u64(d, "total_vram", at, UINT64_MAX);
    if (!total) return std::move(total).error();
    auto free = get_u64(d, "free_vram", at, UINT64_MAX);
    if (!free) return std::move(free).error();
    if (*free > *total) return bad(at + "free_vram is over total_vram");
    fd.total_vram = *total;
    fd.free_vram = *free;
    for (const auto& other : n.devices) {
      if (other.index == fd.index) return bad(at + "index " + std::to_string(fd.index) + " twice");
    }
    n.devices.push_back(std::move(fd));
  }
  return n;
}

std::string node_record_json(const FleetNode& n) {
  nlohmann::json devs = nlohmann::json::array();
  for (const auto& d : n.devices) {
    devs.push_back({{"index", d.index},
                    {"name", d.name},
                    {"compute_capability", {d.cc_major, d.cc_minor}},
                    {"total_vram", d.total_vram},
                    {"free_vram", d.free_vram}});
  }
  nlohmann::json j = {{"node_id", n.node_id},      {"fleet", n.fleet},     {"address", n.address},
                      {"backend", n.backend},      {"version", n.version}, {"devices", devs},
                      {"updated_ms", n.updated_ms}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string fleet_nodes_prefix(std::string_view fleet) {
  return "/gpulease/" + std::string(fleet) + "/nodes/";
}

Result<void> check_fleet_name(std::string_view fleet) {
  // 58: "fleet:<name>" must fit a token's 64-byte audience (the node's
  // check is the same, server/src/fleet/registrar.hpp).
  if (fleet.empty() || fleet.size() > 58 ||
      !std::all_of(fleet.begin(), fleet.end(), fleet_name_char))
    return make_error(Status::kInvalidArgument,
                      "fleet name '" + std::string(fleet.substr(0, 80)) +
                          "': expected 1..58 characters of A-Z a-z 0-9 . _ -");
  return {};
}

Result<std::vector<std::string>> parse_registry_url(std::string_view url) {
  // One parser for the tree's registry URLs: gpulease_etcd's.
  auto eps = etcd::parse_registry_url(url);
  if (!eps) return make_error(Status::kInvalidArgument, eps.error().message);
  std::vector<std::string> out;
  for (const auto& e : *eps) out.push_back(e.to_string());
  return out;
}

// ---- Placement -----------------------------------------------------------------

std::vector<PlacementCandidate> rank_candidates(const std::vector<FleetNode>& nodes,
                                                const PlacementConstraints& c) {
  // One record per node id: the most recent (then the first given).
  std::map<std::string, const FleetNode*> by_id;
  for (const auto& n : nodes) {
    auto [it, fresh] = by_id.emplace(n.node_id, &n);
    if (!fresh && n.updated_ms > it->second->updated_ms) it->second = &n;
  }
  struct Ranked {
    unsigned load;
    PlacementCandidate cand;
  };
  std::vector<Ranked> out;
  for (const auto& [id, n] : by_id) {
    if (c.exclude.count(id) != 0) continue;
    if (!c.backend.empty() && n->backend != c.backend) continue;
    unsigned load = 0;
    if (auto it = c.load.find(id); it != c.load.end()) load = it->second;
    for (const auto& d : n->devices) {
      if (c.device && d.index != *c.device) continue;
      if (c.min_compute_capability && std::pair(d.cc_major, d.cc_minor) < *c.min_compute_capability)
        continue;
      if (d.free_vram < c.min_vram) continue;
      out.push_back({load, {id, n->address, d.index, d.free_vram}});
    }
  }
  std::sort(out.begin(), out.end(), [](const Ranked& a, const Ranked& b) {
    return std::tie(a.load, a.cand.free_vram, a.cand.node_id, a.cand.device) <
           std::tie(b.load, b.cand.free_vram, b.cand.node_id, b.cand.device);
  });
  std::vector<PlacementCandidate> result;
  result.reserve(out.size());
  for (auto& r : out) result.push_back(std::move(r.cand));
  return result;
}

bool placement_skips(const Error& e) noexcept {
  return e.is_node_status(Status::kCapacityExceeded) || e.is_node_status(Status::kBusy) ||
         e.is_connection_lost() || e.is_timeout();
}

// ---- FleetView -------------------------------------------------------------------

void FleetView::reset(std::vector<FleetNode> nodes, int64_t revision) {
  {
    std::lock_guard lock(mu_);
    nodes_.clear();
    for (auto& n : nodes) nodes_[n.node_id] = std::move(n);
    revision_ = revision;
  }
  cv_.notify_all();
}

void FleetView::put(FleetNode node, int64_t revision) {
  {
    std::lock_guard lock(mu_);
    std::string id = node.node_id;
    nodes_[id] = std::move(node);
    revision_ = std::max(revision_, revision);
  }
  cv_.notify_all();
}

void FleetView::remove(const std::string& node_id, int64_t revision) {
  {
    std::lock_guard lock(mu_);
    nodes_.erase(node_id);
    revision_ = std::max(revision_, revision);
  }
  cv_.notify_all();
}

void FleetView::bad_record(const std::string& key, const Error& e) {
  bool first;
  {
    std::lock_guard lock(mu_);
    bad_records_++;
    first = bad_keys_.size() < 1024 && bad_keys_.insert(key).second;
  }
  if (first) {
    std::fprintf(stderr, "gpulease: fleet: ignoring %s: %s\n", key.substr(0, 300).c_str(),
                 e.message().c_str());
  }
}

std::vector<FleetNode> FleetView::nodes() const {
  std::lock_guard lock(mu_);
  std::vector<FleetNode> out;
  out.reserve(nodes_.size());
  for (const auto& [id, n] : nodes_) out.push_back(n);
  return out;
}

std::optional<FleetNode> FleetView::node(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

int64_t FleetView::revision() const {
  std::lock_guard lock(mu_);
  return revision_;
}

uint64_t FleetView::bad_records() const {
  std::lock_guard lock(mu_);
  return bad_records_;
}

bool FleetView::wait_until(const std::function<bool(const std::vector<FleetNode>&)>& pred,
                           std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    std::vector<FleetNode> snapshot;
    snapshot.reserve(nodes_.size());
    for (const auto& [id, n] : nodes_) snapshot.push_back(n);
    lock.unlock();
    if (pred(snapshot)) return true;
    lock.lock();
    // Wakes on a change; re-checked at least every 100 ms (a predicate may
    // look at more than the view).
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    cv_.wait_for(lock, std::min<std::chrono::steady_clock::duration>(
                           deadline - now, std::chrono::milliseconds(100)));
  }
}

// ---- Fleet -----------------------------------------------------------------------

namespace detail {
struct FleetImpl {
  ~FleetImpl() { stop(); }
  void stop() noexcept {
    std::unique_ptr<DirectorySource> s;
    {
      std::lock_guard lock(mu);
      s = std::move(source);
    }
    if (s) s->stop();
  }

  std::string name;
  FleetOptions opts;
  std::shared_ptr<FleetView> view = std::make_shared<FleetView>();
  std::mutex mu;
  std::unique_ptr<DirectorySource> source;  // GUARDED_BY(mu)
  struct Cached {
    std::string address;
    Connection conn;
  };
  std::map<std::string, Cached> conns;  // GUARDED_BY(mu)
};
}  // namespace detail

ConnectOptions FleetOptions::default_connect_options() {
  ConnectOptions o;
  o.client_name = "gpulease-fleet";
  o.connect_timeout = std::chrono::milliseconds(2000);
  o.reconnect_attempts = 2;
  o.reconnect_initial_backoff = std::chrono::milliseconds(20);
  o.reconnect_max_backoff = std::chrono::milliseconds(200);
  return o;
}

namespace {
Result<std::shared_ptr<detail::FleetImpl>> make_impl(FleetOptions o) {
  if (o.fleet.empty()) {
    const char* env = std::getenv("GPULEASE_FLEET");
    o.fleet = env != nullptr && *env != '\0' ? env : "default";
  }
  if (auto ok = check_fleet_name(o.fleet); !ok) return std::move(ok).error();
  auto impl = std::make_shared<detail::FleetImpl>();
  impl->name = o.fleet;
  impl->opts = std::move(o);
  return impl;
}
}  // namespace

Result<Fleet> Fleet::open(FleetOptions options, std::unique_ptr<DirectorySource> source) {
  auto impl = make_impl(std::move(options));
  if (!impl) return std::move(impl).error();
  if (!source) return make_error(Status::kInvalidArgument, "Fleet::open: no directory source");
  if (auto r = source->start((*impl)->view); !r) {
    source->stop();
    return std::move(r).error();
  }
  {
    std::lock_guard lock((*impl)->mu);
    (*impl)->source = std::move(source);
  }
  return Fleet(std::move(impl).value());
}

Fleet Fleet::from_nodes(std::vector<FleetNode> nodes, FleetOptions options) {
  // A fixed list has no keys to read: a name that would be a bad prefix is
  // only a label here.
  if (!options.fleet.empty() && !check_fleet_name(options.fleet)) options.fleet = "default";
  auto impl = make_impl(std::move(options));
  (*impl)->view->reset(std::move(nodes), 0);
  return Fleet(std::move(impl).value());
}

const std::string& Fleet::name() const noexcept {
  return impl_->name;
}

std::vector<FleetNode> Fleet::nodes() const {
  return impl_->view->nodes();
}

std::optional<FleetNode> Fleet::node(const std::string& node_id) const {
  return impl_->view->node(node_id);
}

int64_t Fleet::revision() const {
  return impl_->view->revision();
}

bool Fleet::wait_until(const std::function<bool(const std::vector<FleetNode>&)>& pred,
                       std::chrono::milliseconds timeout) const {
  return impl_->view->wait_until(pred, timeout);
}

const std::shared_ptr<FleetView>& Fleet::view() const noexcept {
  return impl_->view;
}

wire::Bytes Fleet::token_for(const std::string& node_id) const {
  auto it = impl_->opts.node_tokens.find(node_id);
  if (it != impl_->opts.node_tokens.end()) return it->second;
  return impl_->opts.token;
}

Result<Connection> Fleet::connect(const std::string& node_id) const {
  auto n = node(node_id);
  if (!n)
    return Error::connection_lost("node '" + node_id + "' is not registered in fleet '" +
                                  impl_->name + "'");
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->conns.find(node_id);
    if (it != impl_->conns.end()) {
      if (it->second.address == n->address && it->second.conn.connected()) return it->second.conn;
      it->second.conn.close();
      impl_->conns.erase(it);
    }
  }
  auto addr = NodeAddress::parse(n->address);
  if (!addr) return Error::connection_lost("node '" + node_id + "': " + addr.error().message());
  ConnectOptions o = impl_->opts.connect;
  o.node = *addr;
  o.token = token_for(node_id);
  auto c = Connection::connect(std::move(o));
  if (!c) return with_context(std::move(c).error(), "node '" + node_id + "' at " + n->address);
  std::lock_guard lock(impl_->mu);
  auto [it, fresh] = impl_->conns.try_emplace(node_id, detail::FleetImpl::Cached{n->address, *c});
  if (!fresh && !(it->second.address == n->address && it->second.conn.connected())) {
    it->second = detail::FleetImpl::Cached{n->address, *c};
  }
  return it->second.conn;
}

void Fleet::forget(const std::string& node_id) const {
  std::lock_guard lock(impl_->mu);
  impl_->conns.erase(node_id);
}

std::vector<PlacementCandidate> Fleet::candidates(const PlacementConstraints& c) const {
  const std::vector<FleetNode> snapshot = nodes();  // one copy of the view
  PlacementConstraints with = c;
  if (impl_->opts.token.empty()) {
    for (const auto& n : snapshot) {
      if (impl_->opts.node_tokens.count(n.node_id) == 0) with.exclude.insert(n.node_id);
    }
  }
  return rank_candidates(snapshot, with);
}

void Fleet::close() const {
  impl_->stop();
}

}  // namespace gpulease::client
