#include "config.hpp"

#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "fleet/registrar.hpp"
#include "gpulease/etcd/client.hpp"
#include "gpulease/wire/host_port.hpp"

namespace gpulease::server {
namespace {

// Reads the TOML config file into cfg. Keys match the long flag names with
// '-' written as '_' (see docs/OPERATING.md).
Result<void> apply_toml(const std::string& path, NodeConfig& c) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return make_error(Status::kInvalidArgument,
                      "config " + path + ": " + std::string(e.description()));
  }
  auto str = [&](const char* k, std::string& v) {
    if (auto x = t[k].value<std::string>()) v = *x;
  };
  std::string bad;  // first out-of-range key
  auto u32 = [&](const char* k, uint32_t& v) {
    if (auto x = t[k].value<int64_t>()) {
      if (*x < 0 || *x > int64_t{UINT32_MAX}) {
        if (bad.empty()) bad = k;
      } else {
        v = static_cast<uint32_t>(*x);
      }
    }
  };
  auto u64 = [&](const char* k, uint64_t& v) {
    if (auto x = t[k].value<int64_t>()) {
      if (*x < 0) {
        if (bad.empty()) bad = k;
      } else {
        v = static_cast<uint64_t>(*x);
      }
    }
  };
  std::string listen;
  str("listen", listen);
  if (!listen.empty()) {
    auto hp = wire::parse_host_port(listen, /*allow_port_zero=*/true);
    if (!hp) return make_error(Status::kInvalidArgument, "config listen: " + hp.error().message);
    c.listen_host = std::move(hp->host);
    c.listen_port = hp->port;
  }
  str("backend", c.backend);
  str("node_id", c.node_id);
  str("node_key", c.node_key);
  str("revocation_file", c.revocation_file);
  str("metrics", c.metrics_listen);
  str("registry", c.registry);
  str("advertise", c.advertise);
  str("fleet", c.fleet);
  if (auto x = t["accept_fleet_audience"].value<bool>()) c.accept_fleet_audience = *x;
  if (auto keys = t["authority_keys"].as_array()) {
    for (auto& k : *keys) {
      if (auto s = k.value<std::string>()) c.authority_keys.push_back(*s);
    }
  }
  std::string level;
  str("log_level", level);
  if (!level.empty() && !parse_log_level(level, c.log_level)) {
    return make_error(Status::kInvalidArgument, "config log_level: unknown level " + level);
  }
  uint32_t nt = c.network_threads, dt = c.device_threads;
  u32("network_threads", nt);
  u32("device_threads", dt);
  c.network_threads = nt;
  c.device_threads = dt;
  u32("max_connections", c.max_connections);
  u32("max_connections_per_ip", c.max_connections_per_ip);
  u32("max_connections_per_tenant", c.max_connections_per_tenant);
  u32("auth_failures_per_second", c.auth_failures_per_second);
  u32("auth_failure_burst", c.auth_failure_burst);
  u32("max_inflight", c.limits.max_inflight);
  u32("idle_timeout_ms", c.idle_timeout_ms);
  u32("frame_timeout_ms", c.frame_timeout_ms);
  u32("max_payload_bytes", c.limits.max_payload_bytes);
  u32("sim_devices", c.sim_devices);
  u64("sim_device_bytes", c.sim_device_bytes);
  u64("instruction_budget", c.instruction_budget);
  u32("sim_worker_nice", c.sim_worker_nice);
  u32("watchdog_ms", c.watchdog_ms);
  u32("clock_skew_s", c.clock_skew_s);
  u32("token_cache_entries", c.token_cache_entries);
  u32("min_ttl_s", c.min_ttl_s);
  u32("max_ttl_s", c.max_ttl_s);
  u32("tenant_max_leases", c.tenant_max_leases);
  u64("tenant_max_bytes", c.tenant_max_bytes);
  u32("reaper_interval_ms", c.reaper_interval_ms);
  u64("frame_bytes_budget", c.frame_bytes_budget);
  u64("frame_bytes_per_tenant", c.frame_bytes_per_tenant);
  u64("frame_bytes_per_connection", c.frame_bytes_per_connection);
  u64("body_pool_bytes", c.body_pool_bytes);
  u64("reply_queue_bytes", c.reply_queue_bytes);
  u64("reply_bytes_per_tenant", c.reply_bytes_per_tenant);
  u32("metrics_max_connections", c.metrics_max_connections);
  u32("metrics_timeout_ms", c.metrics_timeout_ms);
  u32("drain_timeout_ms", c.drain_timeout_ms);
  u32("max_buffers_per_lease", c.max_buffers_per_lease);
  u32("max_modules_per_lease", c.max_modules_per_lease);
  u32("tombstones_per_tenant", c.tombstones_per_tenant);
  u32("registry_ttl_s", c.registry_ttl_s);
  if (!bad.empty())
    return make_error(Status::kInvalidArgument, "config " + bad + ": value out of range");
  return {};
}

}  // namespace

Result<void> parse_node_config(int argc, char** argv, NodeConfig& c, bool& help_shown) {
  help_shown = false;
  // The config file is read first so flags override it.
  std::string config_path;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string_view(argv[i]) == "--config") config_path = argv[i + 1];
  }
  if (!config_path.empty()) {
    if (auto r = apply_toml(config_path, c); !r) return r;
  }
  CLI::App app{"gpuleased: leases slices of this host's GPUs to remote tenants"};
  std::string listen = c.listen_host + ":" + std::to_string(c.listen_port);
  std::string level = "info";
  app.add_option("--config", config_path, "TOML config file (keys as the long flags, '_' for '-')");
  app.add_option("--listen", listen, "HOST:PORT to serve the protocol on (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--backend", c.backend, "auto | sim | cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "sim", "cuda"}));
  app.add_option("--node-id", c.node_id, "this node's identity: the audience tokens must name")
      ->capture_default_str();
  app.add_option("--authority-key", c.authority_keys,
                 "trusted authority public key file (.pub); repeatable");
  app.add_option("--node-key", c.node_key,
                 "node secret key (.key) for CAP_REQUEST tokens; default: ephemeral");
  app.add_option("--revocation-file", c.revocation_file,
                 "revoked tokens and tenants; reloaded on SIGHUP");
  app.add_option("--metrics", c.metrics_listen,
                 "HOST:PORT for the Prometheus /metrics and /healthz endpoint");
  app.add_option("--log-level", level, "debug | info | warn | error")->capture_default_str();
  app.add_option("--network-threads", c.network_threads, "network threads (0 = cores)")
      ->capture_default_str();
  app.add_option("--device-threads", c.device_threads, "device worker threads (0 = cores)")
      ->capture_default_str();
  app.add_option("--max-connections", c.max_connections, "global connection limit")
      ->capture_default_str();
  app.add_option("--max-connections-per-ip", c.max_connections_per_ip,
                 "connections per client address")
      ->capture_default_str();
  app.add_option("--max-connections-per-tenant", c.max_connections_per_tenant,
                 "connections on which one tenant's token has verified")
      ->capture_default_str();
  app.add_option("--auth-failures-per-second", c.auth_failures_per_second,
                 "failed token verifications a client address may cause per second, past its "
                 "burst (0 = no limit)")
      ->capture_default_str();
  app.add_option("--auth-failure-burst", c.auth_failure_burst,
                 "failed token verifications a client address may cause at once")
      ->capture_default_str();
  app.add_option("--max-inflight", c.limits.max_inflight,
                 "requests in flight per connection before BUSY")
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", c.idle_timeout_ms, "disconnect a client idle this long")
      ->capture_default_str();
  app.add_option("--frame-timeout-ms", c.frame_timeout_ms,
                 "disconnect a client stalled mid-frame this long")
      ->capture_default_str();
  app.add_option("--max-payload-bytes", c.limits.max_payload_bytes,
                 "largest frame payload accepted")
      ->capture_default_str()
      ->check(CLI::Range(uint32_t{4096}, uint32_t{64u << 20}));
  app.add_option("--min-ttl-s", c.min_ttl_s, "shortest lease TTL granted")->capture_default_str();
  app.add_option("--max-ttl-s", c.max_ttl_s, "longest lease TTL granted")->capture_default_str();
  app.add_option("--tenant-max-leases", c.tenant_max_leases, "leases one tenant may hold")
      ->capture_default_str();
  app.add_option("--tenant-max-bytes", c.tenant_max_bytes, "VRAM one tenant may hold (0 = no cap)")
      ->capture_default_str();
  app.add_option("--clock-skew-s", c.clock_skew_s, "token time-window tolerance")
      ->capture_default_str();
  app.add_option("--token-cache-entries", c.token_cache_entries, "verified-signature cache size")
      ->capture_default_str();
  app.add_option("--sim-devices", c.sim_devices, "sim backend: number of devices")
      ->capture_default_str();
  app.add_option("--sim-device-bytes", c.sim_device_bytes, "sim backend: memory per device")
      ->capture_default_str();
  app.add_option("--instruction-budget", c.instruction_budget,
                 "sim backend: instructions per launch (0 = default)")
      ->capture_default_str();
  app.add_option("--sim-worker-nice", c.sim_worker_nice,
                 "sim backend: nice levels (0..19) the interpreter threads run below the "
                 "node's other threads, so the network threads preempt tenants' kernels")
      ->capture_default_str();
  app.add_option("--watchdog-ms", c.watchdog_ms,
                 "fault a lease whose launch runs longer (both backends; 0 = off)")
      ->capture_default_str();
  app.add_option("--reaper-interval-ms", c.reaper_interval_ms,
                 "how often expired leases are reaped")
      ->capture_default_str();
  app.add_option("--max-buffers-per-lease", c.max_buffers_per_lease,
                 "live buffers one lease may hold")
      ->capture_default_str();
  app.add_option("--max-modules-per-lease", c.max_modules_per_lease,
                 "loaded modules one lease may hold")
      ->capture_default_str();
  app.add_option("--tombstones-per-tenant", c.tombstones_per_tenant,
                 "ended leases remembered per tenant (LEASE_EXPIRED, then LEASE_NOT_FOUND)")
      ->capture_default_str();
  app.add_option("--frame-bytes-budget", c.frame_bytes_budget,
                 "frame bodies held at once across connections; readers wait past it")
      ->capture_default_str();
  app.add_option("--frame-bytes-per-tenant", c.frame_bytes_per_tenant,
                 "share of the frame-bytes budget one tenant's connections may hold")
      ->capture_default_str();
  app.add_option("--frame-bytes-per-connection", c.frame_bytes_per_connection,
                 "share of the frame-bytes budget one connection may hold")
      ->capture_default_str();
  app.add_option("--body-pool-bytes", c.body_pool_bytes,
                 "large frame-body buffers kept for reuse; beyond it they are freed")
      ->capture_default_str();
  app.add_option("--reply-queue-bytes", c.reply_queue_bytes,
                 "a connection reads no new frame while this many reply bytes wait")
      ->capture_default_str();
  app.add_option("--reply-bytes-per-tenant", c.reply_bytes_per_tenant,
                 "no frame of a tenant is dispatched while this many of its reply bytes wait, "
                 "all its connections together")
      ->capture_default_str();
  app.add_option("--metrics-max-connections", c.metrics_max_connections,
                 "metrics endpoint: scrapes served at once; more are closed")
      ->capture_default_str();
  app.add_option("--metrics-timeout-ms", c.metrics_timeout_ms,
                 "metrics endpoint: a scrape is closed after this long")
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", c.drain_timeout_ms,
                 "SIGTERM: the drain (in-flight frames, lease teardown, last replies) ends "
                 "within this long")
      ->capture_default_str();
  app.add_option("--registry", c.registry,
                 "etcd://HOST:PORT[,HOST:PORT...]: register this node in the fleet directory")
      ->envname("GPULEASE_REGISTRY");
  app.add_option("--advertise", c.advertise,
                 "HOST:PORT clients of the fleet dial (default: the listen address)");
  app.add_option("--fleet", c.fleet, "fleet name: the directory prefix and the fleet audience")
      ->capture_default_str()
      ->envname("GPULEASE_FLEET");
  app.add_option("--registry-ttl-s", c.registry_ttl_s,
                 "etcd lease TTL of the node's record: gone this long after the node dies")
      ->capture_default_str();
  app.add_flag("--accept-fleet-audience", c.accept_fleet_audience,
               "also accept tokens whose audience is fleet:<fleet> (docs/TOKENS.md)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    help_shown = true;
    return {};
  } catch (const CLI::ParseError& e) {
    return make_error(Status::kInvalidArgument, e.what());
  }
  auto hp = wire::parse_host_port(listen, /*allow_port_zero=*/true);
  if (!hp) return make_error(Status::kInvalidArgument, "--listen: " + hp.error().message);
  c.listen_host = std::move(hp->host);
  c.listen_port = hp->port;
  if (app.count("--log-level") && !parse_log_level(level, c.log_level)) {
    return make_error(Status::kInvalidArgument, "--log-level: unknown level " + level);
  }
  return validate_node_config(c);
}

Result<void> validate_node_config(const NodeConfig& c) {
  auto bad = [](const std::string& m) { return make_error(Status::kInvalidArgument, m); };
  if (c.min_ttl_s == 0 || c.min_ttl_s > c.max_ttl_s) return bad("min_ttl_s must be 1..max_ttl_s");
  if (c.limits.max_payload_bytes < 4096 ||
      c.limits.max_payload_bytes > wire::Limits{}.max_payload_bytes) {
    return bad("max_payload_bytes must be 4096.." +
               std::to_string(wire::Limits{}.max_payload_bytes));
  }
  if (c.limits.max_inflight == 0) return bad("max_inflight must be >= 1");
  if (c.reaper_interval_ms < 10) return bad("reaper_interval_ms must be >= 10");
  if (c.idle_timeout_ms == 0 || c.frame_timeout_ms == 0) return bad("timeouts must be > 0");
  if (c.max_connections == 0 || c.max_connections_per_ip == 0 || c.max_connections_per_tenant == 0)
    return bad("connection limits must be >= 1");
  if (c.tenant_max_leases == 0) return bad("tenant_max_leases must be >= 1");
  if (c.auth_failures_per_second != 0 && c.auth_failure_burst == 0)
    return bad("auth_failure_burst must be >= 1");
  if (c.tombstones_per_tenant == 0 || c.tombstones_per_tenant > kMaxTombstonesPerTenant)
    return bad("tombstones_per_tenant must be 1.." + std::to_string(kMaxTombstonesPerTenant));
  if (c.frame_bytes_budget < c.limits.max_payload_bytes)
    return bad("frame_bytes_budget must be >= max_payload_bytes");
  // A share smaller than one frame would still admit it alone; a share
  // larger than the one above it means nothing.
  if (c.frame_bytes_per_tenant == 0 || c.frame_bytes_per_tenant > c.frame_bytes_budget)
    return bad("frame_bytes_per_tenant must be 1..frame_bytes_budget");
  if (c.frame_bytes_per_connection == 0 || c.frame_bytes_per_connection > c.frame_bytes_per_tenant)
    return bad("frame_bytes_per_connection must be 1..frame_bytes_per_tenant");
  if (c.reply_queue_bytes == 0) return bad("reply_queue_bytes must be >= 1");
  if (c.reply_bytes_per_tenant < c.reply_queue_bytes)
    return bad("reply_bytes_per_tenant must be >= reply_queue_bytes");
  if (c.drain_timeout_ms < 100) return bad("drain_timeout_ms must be >= 100");
  if (c.metrics_max_connections == 0 || c.metrics_timeout_ms == 0)
    return bad("metrics_max_connections and metrics_timeout_ms must be >= 1");
  if (c.sim_devices == 0 || c.sim_devices > wire::Limits{}.max_devices)
    return bad("sim_devices must be 1..64");
  if (c.sim_worker_nice > 19) return bad("sim_worker_nice must be 0..19");
  if (auto r = check_fleet_name(c.fleet); !r) return r;
  if (c.registry_ttl_s < 1 || c.registry_ttl_s > 3600) return bad("registry_ttl_s must be 1..3600");
  if (!c.registry.empty()) {
    auto eps = etcd::parse_registry_url(c.registry);
    if (!eps) return bad(eps.error().message);
    if (auto r = check_registry_node_id(c.node_id); !r) return r;
  }
  if (!c.advertise.empty()) {
    auto hp = wire::parse_host_port(c.advertise);
    if (!hp) return bad("advertise: " + hp.error().message);
  }
  return {};
}

}  // namespace gpulease::server
