// The node's entry in the fleet directory on etcd (issue 16; DECISIONS.md
// "Fleet directory on etcd"; docs/FLEET.md).
//
// Key `/gpulease/<fleet>/nodes/<node_id>`, attached to an etcd lease of
// `ttl_s` seconds kept alive every ttl/3; value JSON:
//   {"node_id","fleet","address","backend","version":1,
//    "devices":[{"index","name","compute_capability":[major,minor],
//                "total_vram","free_vram"}],"updated_ms"}
// The device snapshot is read every `debounce` (500 ms) and re-put only when
// it changed, so VRAM changes are published at most once per debounce.
//
// Everything etcd-related runs on the registrar's own thread: nothing here
// blocks a network or lease thread (deregister() and the destructor only
// signal it). When etcd cannot be reached the node keeps serving; the thread
// retries with backoff and registers again (new etcd lease) when it can.
//
// THREAD SAFETY: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gpulease/etcd/client.hpp"
#include "gpulease/wire/result.hpp"
#include "metrics.hpp"

namespace gpulease::server {

struct DeviceRecord {
  uint16_t index = 0;
  std::string name;
  uint8_t cc_major = 0;
  uint8_t cc_minor = 0;
  uint64_t total_vram = 0;
  uint64_t free_vram = 0;
  bool operator==(const DeviceRecord&) const = default;
};

struct RegistrarConfig {
  std::vector<etcd::Endpoint> endpoints;
  std::string fleet = "default";
  std::string node_id;
  std::string address;  // HOST:PORT clients dial (--advertise)
  std::string backend;
  uint32_t ttl_s = 10;
  std::chrono::milliseconds debounce{500};
  std::chrono::milliseconds retry_min{200};
  std::chrono::milliseconds retry_max{5000};
  Metrics* metrics = nullptr;  // gpulease_fleet_* gauges/counters; must outlive the Registrar
};

// `/gpulease/<fleet>/nodes/` and `/gpulease/<fleet>/nodes/<node_id>`.
[[nodiscard]] std::string fleet_nodes_prefix(std::string_view fleet);
[[nodiscard]] std::string fleet_node_key(std::string_view fleet, std::string_view node_id);

// A fleet name or node id usable in a key: 1..128 of [A-Za-z0-9._-] (fleet:
// 1..58, so that "fleet:<name>" fits a token's 64-byte audience). INVALID_ARGUMENT naming `what`
// otherwise.
[[nodiscard]] Result<void> check_fleet_name(std::string_view fleet);
[[nodiscard]] Result<void> check_registry_node_id(std::string_view node_id);

// The record's JSON text.
[[nodiscard]] std::string node_record_json(const RegistrarConfig& cfg,
                                           const std::vector<DeviceRecord>& devices,
                                           uint64_t updated_ms);

class Registrar {
 public:
  using DeviceSnapshot = std::function<std::vector<DeviceRecord>()>;

  // Checks the config (fleet name, node id, address, ttl 1..3600); does not
  // contact etcd. The snapshot function is called on the registrar thread.
  [[nodiscard]] static Result<std::unique_ptr<Registrar>> create(RegistrarConfig cfg,
                                                                 DeviceSnapshot snapshot);
  ~Registrar();  // stop()
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;

  // Starts the background thread (registers as soon as etcd answers).
  void start();
  // The start of a drain: revoke the etcd lease (the record goes at once) and
  // register no more. Returns at once; the thread does the work.
  void deregister();
  // Waits (at most `wait`) for a pending deregistration, then ends the thread.
  void stop(std::chrono::milliseconds wait = std::chrono::milliseconds(3000));

  struct Stats {
    bool registered = false;    // the record is in etcd under a live lease (as last seen)
    bool deregistered = false;  // deregister() done (lease revoked, or found gone)
    int64_t lease_id = 0;
    uint64_t registrations = 0;  // etcd leases granted + record put
    uint64_t updates = 0;        // re-puts after a device change
    uint64_t failures = 0;       // etcd calls that failed
  };
  [[nodiscard]] Stats stats() const;

 private:
  Registrar(RegistrarConfig cfg, DeviceSnapshot snapshot, std::unique_ptr<etcd::Client> client);
  void run();
  // One step each; false when etcd failed (the caller backs off).
  bool register_now();
  bool refresh_if_changed();
  bool keepalive();
  void revoke();
  void wait_for(std::chrono::milliseconds d);
  void set_registered(bool on, int64_t lease);

  const RegistrarConfig cfg_;
  const DeviceSnapshot snapshot_;
  std::unique_ptr<etcd::Client> etcd_;
  const std::string key_;

  // Registrar thread only.
  int64_t lease_ = 0;
  std::vector<DeviceRecord> published_;
  std::chrono::steady_clock::time_point next_keepalive_;
  bool outage_logged_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;        // GUARDED_BY(mu_)
  bool deregister_ = false;  // GUARDED_BY(mu_)
  Stats stats_;              // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace gpulease::server
