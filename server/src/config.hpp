// Node configuration: flags (CLI11) and an optional TOML file (toml++) with
// the same keys; flags override the file. See docs/OPERATING.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpulease/capability/verifier.hpp"
#include "gpulease/wire/limits.hpp"
#include "gpulease/wire/result.hpp"
#include "log.hpp"

namespace gpulease::server {

// Largest tombstones_per_tenant; also the bound on ended leases remembered
// for all tenants together (leases/tombstones.hpp).
inline constexpr uint32_t kMaxTombstonesPerTenant = 65536;

struct NodeConfig {
  // Network
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7070;   // 0 = pick a free port (tests)
  unsigned network_threads = 0;  // 0 = number of cores
  unsigned device_threads = 0;   // 0 = number of cores
  uint32_t max_connections = 1024;
  uint32_t max_connections_per_ip = 64;
  // Connections on which one tenant's token has verified (counted from its
  // first verified token): a tenant cannot take every slot either.
  uint32_t max_connections_per_tenant = 256;
  // Failed token verifications (UNAUTHENTICATED) one client address may
  // cause: a bucket of auth_failure_burst refilled at this rate; past it the
  // address's tokens are not checked (BUSY, closed) unless already verified
  // (net/auth_limiter.hpp). 0 = no limit.
  uint32_t auth_failures_per_second = 20;
  uint32_t auth_failure_burst = 40;
  uint32_t idle_timeout_ms = 300'000;  // no frame started for this long: disconnect
  uint32_t frame_timeout_ms = 30'000;  // a started frame must complete within this
  wire::Limits limits;
  uint64_t frame_bytes_budget = 1ull << 30;  // bytes of frame bodies held at once, all connections
  uint64_t frame_bytes_per_tenant = 256ull << 20;      // ... by the connections of one tenant
  uint64_t frame_bytes_per_connection = 128ull << 20;  // ... by one connection
  uint64_t body_pool_bytes = 64ull << 20;    // large body buffers kept for reuse; the rest freed
  uint64_t reply_queue_bytes = 64ull << 20;  // a connection reads no new frame past this many
                                             // reply bytes queued or owed to MEM_READs in flight
  uint64_t reply_bytes_per_tenant = 256ull << 20;  // ... and no frame of a tenant whose replies
                                                   // on all its connections pass this many
  uint32_t metrics_max_connections = 16;           // metrics endpoint: scrapes served at once
  uint32_t metrics_timeout_ms = 5'000;             // metrics endpoint: a scrape's deadline
  uint32_t drain_timeout_ms = 10'000;              // SIGTERM: the whole drain ends within this

  // Backend
  std::string backend = "auto";  // auto | sim | cuda
  uint32_t sim_devices = 1;
  uint64_t sim_device_bytes = 8ull << 30;
  uint64_t instruction_budget = 0;  // sim: per launch, 0 = backend default
  uint32_t sim_worker_nice = 10;    // sim: interpreter threads' nice levels below the node (0..19)
  uint32_t watchdog_ms = 10'000;    // per launch, both backends; 0 = off

  // Identity and trust
  std::string node_id = "gpulease-node";
  std::vector<std::string> authority_keys;  // .pub files
  std::string node_key;                     // .key file; empty = ephemeral key
  std::string revocation_file;              // empty = none
  uint32_t clock_skew_s = capability::kDefaultClockSkewS;
  uint32_t token_cache_entries = capability::kDefaultSignatureCacheEntries;

  // Leases
  uint32_t min_ttl_s = 1;
  uint32_t max_ttl_s = 24 * 3600;
  uint32_t tenant_max_leases = 64;
  uint64_t tenant_max_bytes = 0;  // 0 = no per-tenant byte cap beyond device capacity
  uint32_t reaper_interval_ms = 100;
  uint32_t replay_window = 64;
  uint32_t max_buffers_per_lease = 65536;
  uint32_t max_modules_per_lease = 256;
  // Ended leases remembered (answered LEASE_EXPIRED, then LEASE_NOT_FOUND)
  // per tenant: one tenant's ended leases never push out another's
  // (leases/tombstones.hpp).
  uint32_t tombstones_per_tenant = 1024;

  // Fleet (issue 16, docs/FLEET.md): registration in an etcd directory.
  std::string registry;                // etcd://HOST:PORT[,HOST:PORT...]; empty = not registered
  std::string advertise;               // HOST:PORT clients dial; empty = the listen address
  std::string fleet = "default";       // the directory prefix and the fleet audience's name
  uint32_t registry_ttl_s = 10;        // the etcd lease of the node's record
  bool accept_fleet_audience = false;  // also accept tokens for audience "fleet:<fleet>"

  // Operations
  std::string metrics_listen;  // "host:port"; empty = no metrics endpoint
  LogLevel log_level = LogLevel::kInfo;
};

// Checks values that came from the file or flags against their domains.
[[nodiscard]] Result<void> validate_node_config(const NodeConfig& cfg);

// Parses argv into cfg (reading --config FILE first if given). Returns
// INVALID_ARGUMENT with a readable message on a bad flag or file; a --help
// request returns OK with `help_shown` set after printing.
[[nodiscard]] Result<void> parse_node_config(int argc, char** argv, NodeConfig& cfg,
                                             bool& help_shown);

}  // namespace gpulease::server
