#include "fleet/registrar.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "gpulease/wire/host_port.hpp"
#include "log.hpp"
#include "node.hpp"

namespace gpulease::server {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

Result<void> check_name(std::string_view what, std::string_view v, size_t max) {
  if (v.empty() || v.size() > max || !std::all_of(v.begin(), v.end(), name_char) || v == "." ||
      v == "..") {
    return make_error(Status::kInvalidArgument,
                      std::string(what) + " '" + std::string(v.substr(0, 200)) + "' must be 1.." +
                          std::to_string(max) +
                          " of A-Z a-z 0-9 . _ - (it is part of an etcd key)");
  }
  return {};
}

std::string describe(const etcd::Error& e) {
  return std::string(etcd::to_string(e.code)) + ": " + e.message;
}

}  // namespace

std::string fleet_nodes_prefix(std::string_view fleet) {
  return "/gpulease/" + std::string(fleet) + "/nodes/";
}

std::string fleet_node_key(std::string_view fleet, std::string_view node_id) {
  return fleet_nodes_prefix(fleet) + std::string(node_id);
}

// 58: "fleet:" + the name is the fleet audience, and an audience is <= 64 bytes.
Result<void> check_fleet_name(std::string_view fleet) {
  return check_name("fleet name", fleet, 58);
}

Result<void> check_registry_node_id(std::string_view node_id) {
  return check_name("node id", node_id, 128);
}

std::string node_record_json(const RegistrarConfig& cfg, const std::vector<DeviceRecord>& devices,
                             uint64_t updated_ms) {
  nlohmann::json j;
  j["node_id"] = cfg.node_id;
  j["fleet"] = cfg.fleet;
  j["address"] = cfg.address;
  j["backend"] = cfg.backend;
  j["version"] = 1;
  j["devices"] = nlohmann::json::array();
  for (const auto& d : devices) {
    j["devices"].push_back({{"index", d.index},
                            {"name", d.name},
                            {"compute_capability", {d.cc_major, d.cc_minor}},
                            {"total_vram", d.total_vram},
                            {"free_vram", d.free_vram}});
  }
  j["updated_ms"] = updated_ms;
  // Device names come from the driver: never let a bad byte stop the dump.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::unique_ptr<Registrar>> Registrar::create(RegistrarConfig cfg, DeviceSnapshot snapshot) {
  if (cfg.endpoints.empty()) return make_error(Status::kInvalidArgument, "registry: no endpoint");
  if (auto r = check_fleet_name(cfg.fleet); !r) return r.error();
  if (auto r = check_registry_node_id(cfg.node_id); !r) return r.error();
  auto hp = wire::parse_host_port(cfg.address);
  if (!hp) return make_error(Status::kInvalidArgument, "advertise: " + hp.error().message);
  if (cfg.ttl_s < 1 || cfg.ttl_s > 3600) {
    return make_error(Status::kInvalidArgument, "registry_ttl_s must be 1..3600");
  }
  if (!snapshot) return make_error(Status::kInvalidArgument, "registrar: no device snapshot");
  // A call must fit well inside a keep-alive period so a slow or dead member
  // is left for the next one before the lease runs out.
  const auto third = milliseconds(cfg.ttl_s * 1000 / 3);
  etcd::ClientOptions o;
  o.endpoints = cfg.endpoints;
  o.connect_timeout = std::clamp(third / 2, milliseconds(100), milliseconds(1000));
  o.request_timeout = std::clamp(third, milliseconds(200), milliseconds(2000));
  // Back off no longer than half a TTL: a record that expired while etcd
  // was away comes back soon after etcd does.
  cfg.retry_max = std::clamp(milliseconds(cfg.ttl_s * 500), cfg.retry_min, cfg.retry_max);
  auto client = etcd::Client::create(std::move(o));
  if (!client) return make_error(Status::kInvalidArgument, "registry: " + client.error().message);
  return std::unique_ptr<Registrar>(
      new Registrar(std::move(cfg), std::move(snapshot), std::move(client).value()));
}

Registrar::Registrar(RegistrarConfig cfg, DeviceSnapshot snapshot,
                     std::unique_ptr<etcd::Client> client)
    : cfg_(std::move(cfg)),
      snapshot_(std::move(snapshot)),
      etcd_(std::move(client)),
      key_(fleet_node_key(cfg_.fleet, cfg_.node_id)) {}

Registrar::~Registrar() {
  stop();
}

void Registrar::set_registered(bool on, int64_t lease) {
  {
    std::lock_guard lk(mu_);
    stats_.registered = on;
    stats_.lease_id = lease;
    if (on) ++stats_.registrations;
  }
  if (cfg_.metrics != nullptr) {
    cfg_.metrics->fleet_registered.store(on ? 1 : 0, std::memory_order_relaxed);
    if (on) cfg_.metrics->fleet_registrations.fetch_add(1, std::memory_order_relaxed);
  }
}

void Registrar::start() {
  if (cfg_.metrics != nullptr) cfg_.metrics->fleet_registered.store(0, std::memory_order_relaxed);
  std::lock_guard lk(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { run(); });
}

void Registrar::deregister() {
  {
    std::lock_guard lk(mu_);
    deregister_ = true;
  }
  cv_.notify_all();
}

void Registrar::stop(milliseconds wait) {
  {
    std::unique_lock lk(mu_);
    if (deregister_ && thread_.joinable()) {
      cv_.wait_for(lk, wait, [&] { return stats_.deregistered; });
    }
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Registrar::Stats Registrar::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void Registrar::wait_for(milliseconds d) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, d, [&] { return stop_ || deregister_; });
}

bool Registrar::register_now() {
  auto grant = etcd_->lease_grant(cfg_.ttl_s);
  if (!grant) {
    if (!outage_logged_) {
      log_warn("fleet registry unreachable: serving on, registering when it answers",
               {{"key", key_}, {"error", describe(grant.error())}});
      outage_logged_ = true;
    }
    return false;
  }
  auto devices = snapshot_();
  auto put = etcd_->put(key_, node_record_json(cfg_, devices, now_unix_ms()), grant->id);
  if (!put) {
    // The granted lease has nothing attached; it expires on its own.
    if (!outage_logged_) {
      log_warn("fleet registration failed: serving on, retrying",
               {{"key", key_}, {"error", describe(put.error())}});
      outage_logged_ = true;
    }
    return false;
  }
  lease_ = grant->id;
  published_ = std::move(devices);
  next_keepalive_ = Clock::now() + milliseconds(cfg_.ttl_s * 1000 / 3);
  outage_logged_ = false;
  log_info("registered in the fleet directory", {{"key", key_},
                                                 {"address", cfg_.address},
                                                 {"etcd_lease", std::to_string(lease_)},
                                                 {"ttl_s", std::to_string(cfg_.ttl_s)}});
  set_registered(true, lease_);
  return true;
}

bool Registrar::keepalive() {
  auto r = etcd_->lease_keepalive(lease_);
  if (r) {
    next_keepalive_ = Clock::now() + milliseconds(cfg_.ttl_s * 1000 / 3);
    if (outage_logged_) {
      log_info("fleet registry answering again", {{"key", key_}});
      outage_logged_ = false;
    }
    return true;
  }
  if (r.error().code == etcd::ErrorCode::kNotFound) {
    // Expired while etcd was out of reach (or revoked by someone): the
    // record went with it. Register again now.
    log_warn("fleet registration lost (etcd lease expired): registering again", {{"key", key_}});
    lease_ = 0;
    set_registered(false, 0);
    return true;
  }
  if (!outage_logged_) {
    log_warn("fleet registry unreachable: serving on, retrying",
             {{"key", key_}, {"error", describe(r.error())}});
    outage_logged_ = true;
  }
  return false;
}

bool Registrar::refresh_if_changed() {
  auto devices = snapshot_();
  if (devices == published_) return true;
  auto put = etcd_->put(key_, node_record_json(cfg_, devices, now_unix_ms()), lease_);
  if (!put) {
    if (put.error().code == etcd::ErrorCode::kNotFound) {  // the lease is gone
      lease_ = 0;
      set_registered(false, 0);
      return true;
    }
    return false;
  }
  published_ = std::move(devices);
  std::lock_guard lk(mu_);
  ++stats_.updates;
  return true;
}

void Registrar::revoke() {
  if (lease_ != 0) {
    auto r = etcd_->lease_revoke(lease_);
    if (r || r.error().code == etcd::ErrorCode::kNotFound) {
      log_info("deregistered from the fleet directory", {{"key", key_}});
    } else {
      log_warn(
          "fleet deregistration failed: the record expires with its etcd lease",
          {{"key", key_}, {"ttl_s", std::to_string(cfg_.ttl_s)}, {"error", describe(r.error())}});
    }
    lease_ = 0;
  }
  set_registered(false, 0);
  std::lock_guard lk(mu_);
  stats_.deregistered = true;
}

void Registrar::run() {
  auto backoff = cfg_.retry_min;
  while (true) {
    bool dereg = false;
    {
      std::lock_guard lk(mu_);
      if (stop_) break;
      dereg = deregister_;
    }
    if (dereg) {
      revoke();
      cv_.notify_all();
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_; });
      break;
    }
    bool ok = true;
    if (lease_ == 0) {
      ok = register_now();
    } else {
      if (Clock::now() >= next_keepalive_) ok = keepalive();
      if (ok && lease_ != 0) ok = refresh_if_changed();
    }
    if (!ok) {
      {
        std::lock_guard lk(mu_);
        ++stats_.failures;
      }
      if (cfg_.metrics != nullptr) {
        cfg_.metrics->fleet_errors.fetch_add(1, std::memory_order_relaxed);
      }
      wait_for(backoff);
      backoff = std::min(backoff * 2, cfg_.retry_max);
      continue;
    }
    backoff = cfg_.retry_min;
    if (lease_ == 0) continue;  // lost: register again at once
    const auto until_keepalive =
        std::chrono::duration_cast<milliseconds>(next_keepalive_ - Clock::now());
    wait_for(std::clamp(until_keepalive, milliseconds(1), cfg_.debounce));
  }
}

}  // namespace gpulease::server
