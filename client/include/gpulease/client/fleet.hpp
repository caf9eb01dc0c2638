// A fleet: the nodes registered in a directory (etcd), kept current, and
// leases placed on them by best fit. Guide: docs/CLIENT.md (Fleet) and
// docs/FLEET.md (placement).
//
//   auto fleet = Fleet::open({.token = token});   // $GPULEASE_REGISTRY, $GPULEASE_FLEET
//   if (!fleet) return fleet.error();
//   auto lease = LeaseBuilder(*fleet).min_vram(1 << 30).lease_secs(120).acquire();
//   // lease->connection().node_info().node_id says where it landed.
//
// The directory (DECISIONS.md, "Fleet directory on etcd"): one key per node,
// /gpulease/<fleet>/nodes/<node_id>, attached to the node's etcd lease (gone
// within its TTL when the node dies), value a JSON record (FleetNode below).
// A Fleet reads the prefix once and then watches it from the revision it read,
// so nodes() is the directory as of the last event seen; when the watch breaks
// (every endpoint down, history compacted) it reads the prefix again and
// watches from there. The view may lag: a node's free VRAM is re-put at most
// every 500 ms, and a dead node stays listed until its etcd lease expires.
// Placement copes with both: it moves on to the next candidate when a node
// answers CAPACITY_EXCEEDED or BUSY, or cannot be reached.
//
// Tokens: a fleet lease needs a token valid on the node it lands on. A token
// whose audience is `fleet:<name>` works on every node of the fleet started
// with --accept-fleet-audience (one token, FleetOptions::token); tokens for
// individual nodes go in FleetOptions::node_tokens (by node id) and win over
// the fleet token on their node. A node with neither is not a candidate.
//
// THREAD SAFETY: Fleet is a cheap, copyable handle to shared state; every
// member may be called from any thread. The view is updated by the
// directory's watch thread. The last copy's destruction stops the watch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gpulease/client/connection.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::client {

// ---- The directory's records ------------------------------------------------

struct FleetDevice {
  uint16_t index = 0;
  std::string name;
  uint8_t cc_major = 0;
  uint8_t cc_minor = 0;
  uint64_t total_vram = 0;
  uint64_t free_vram = 0;
  bool operator==(const FleetDevice&) const = default;
};

struct FleetNode {
  std::string node_id;
  std::string fleet;
  std::string address;  // HOST:PORT the node advertises
  std::string backend;  // "cuda", "sim"
  uint32_t version = 1;
  std::vector<FleetDevice> devices;
  uint64_t updated_ms = 0;  // Unix ms of the record's last put
  bool operator==(const FleetNode&) const = default;

  [[nodiscard]] uint64_t free_vram() const noexcept;   // summed over devices
  [[nodiscard]] uint64_t total_vram() const noexcept;  // summed over devices
};

// Bounds on a record read from the directory (any process that can write to
// etcd can write one): checked before anything is kept.
inline constexpr size_t kMaxNodeRecordBytes = 64u << 10;
inline constexpr size_t kMaxNodeDevices = 256;
inline constexpr size_t kMaxNodeStringBytes = 256;

// Parses a node record (JSON, DECISIONS.md). INVALID_ARGUMENT naming the
// field when it is not one: a missing or mistyped field, a string over
// kMaxNodeStringBytes, more than kMaxNodeDevices devices, free > total VRAM,
// an address that is not HOST:PORT, a version other than 1.
[[nodiscard]] Result<FleetNode> parse_node_record(std::string_view json);
// The record's JSON text (what a node puts; tests and simulations use it).
[[nodiscard]] std::string node_record_json(const FleetNode& node);

// The key prefix of a fleet's node records: "/gpulease/<fleet>/nodes/".
[[nodiscard]] std::string fleet_nodes_prefix(std::string_view fleet);
// A fleet name: 1..58 of [A-Za-z0-9._-] ("fleet:<name>" fits a token's
// 64-byte audience). INVALID_ARGUMENT otherwise.
[[nodiscard]] Result<void> check_fleet_name(std::string_view fleet);

// `etcd://HOST:PORT[,HOST:PORT...]` (the scheme may be left out) -> the
// endpoints ("HOST:PORT" each; gpulease_etcd's parser). INVALID_ARGUMENT
// naming what is wrong (another scheme, an empty list or endpoint, a bad
// address, more than 32).
[[nodiscard]] Result<std::vector<std::string>> parse_registry_url(std::string_view url);

// ---- Placement (pure) ---------------------------------------------------------

struct PlacementConstraints {
  uint64_t min_vram = 0;
  std::optional<uint16_t> device;  // this device index only
  // At least this compute capability (major, minor).
  std::optional<std::pair<uint8_t, uint8_t>> min_compute_capability;
  std::string backend;  // empty: any
  // Leases the caller already holds per node id: a node with fewer comes
  // first (the JobCoordinator spreads its leases this way). Empty: pure best
  // fit.
  std::map<std::string, unsigned> load;
  // Nodes never to try (by id).
  std::set<std::string> exclude;
};

struct PlacementCandidate {
  std::string node_id;
  std::string address;
  uint16_t device = 0;
  uint64_t free_vram = 0;  // as the directory last said
  bool operator==(const PlacementCandidate&) const = default;
};

// Every device of every node that satisfies `c`, best first. Best fit: the
// device with the least free VRAM that still holds min_vram, so large free
// devices stay free for large leases. Order: the caller's load on the node
// (ascending, only when `c.load` is not empty), then free VRAM ascending,
// then node id, then device index — a total order, so the result does not
// depend on the order of `nodes`. A node listed twice (same id) counts once.
[[nodiscard]] std::vector<PlacementCandidate> rank_candidates(const std::vector<FleetNode>& nodes,
                                                              const PlacementConstraints& c);

// Whether placement moves on to the next candidate after `e` from a node:
// the node said CAPACITY_EXCEEDED or BUSY, or it could not be reached in
// time (connection lost, timeout). Anything else fails the placement.
[[nodiscard]] bool placement_skips(const Error& e) noexcept;

// ---- Directory sources --------------------------------------------------------

// Where a Fleet's view comes from. The etcd source is made by Fleet::open();
// tests and tools may supply their own (a fixed list: Fleet::from_nodes()).
class FleetView;
class DirectorySource {
 public:
  virtual ~DirectorySource() = default;
  // Fills `view` and keeps it current until stop(). Returns once the first
  // full read is in the view (or failed).
  [[nodiscard]] virtual Result<void> start(std::shared_ptr<FleetView> view) = 0;
  // Stops updating; returns once no callback into the view is running.
  virtual void stop() noexcept = 0;
};

// The current view of the directory: node id -> record.
// THREAD SAFETY: all members may be called from any thread.
class FleetView {
 public:
  // The whole directory as of `revision` (a re-read replaces everything).
  void reset(std::vector<FleetNode> nodes, int64_t revision);
  void put(FleetNode node, int64_t revision);
  void remove(const std::string& node_id, int64_t revision);
  // A record that does not parse: counted and logged once per key, not kept.
  void bad_record(const std::string& key, const Error& e);

  [[nodiscard]] std::vector<FleetNode> nodes() const;  // sorted by node id
  [[nodiscard]] std::optional<FleetNode> node(const std::string& id) const;
  [[nodiscard]] int64_t revision() const;
  [[nodiscard]] uint64_t bad_records() const;
  // Waits until pred(nodes()) holds (checked now and after each change), at
  // most `timeout`. Returns whether it held.
  [[nodiscard]] bool wait_until(const std::function<bool(const std::vector<FleetNode>&)>& pred,
                                std::chrono::milliseconds timeout) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, FleetNode> nodes_;  // GUARDED_BY(mu_)
  int64_t revision_ = 0;                    // GUARDED_BY(mu_)
  uint64_t bad_records_ = 0;                // GUARDED_BY(mu_)
  std::set<std::string> bad_keys_;          // GUARDED_BY(mu_)
};

// ---- Fleet --------------------------------------------------------------------

struct FleetOptions {
  // etcd://HOST:PORT[,...]. Empty: $GPULEASE_REGISTRY (Fleet::open fails
  // without either).
  std::string registry;
  // Empty: $GPULEASE_FLEET, else "default".
  std::string fleet;
  // Token for every node (audience `fleet:<name>`), binary form.
  wire::Bytes token;
  // Tokens for single nodes, by node id; win over `token` on their node.
  std::map<std::string, wire::Bytes> node_tokens;
  // How connections to the nodes are made (`node` and `token` are set per
  // node). The defaults differ from Connection's: a fleet has other nodes to
  // go to, so a dead one is given up on quickly.
  ConnectOptions connect = default_connect_options();
  // Each directory request's deadline (one endpoint; failover tries the next).
  std::chrono::milliseconds registry_timeout{2000};

  [[nodiscard]] static ConnectOptions default_connect_options();
};

namespace detail {
struct FleetImpl;
}

class Fleet {
 public:
  // Reads the directory from etcd and watches it. Errors: local
  // INVALID_ARGUMENT (a bad registry URL or fleet name, no registry given),
  // connection lost or timeout (no endpoint answered in time).
  [[nodiscard]] static Result<Fleet> open(FleetOptions options);
  // A fleet whose directory is `source` (started here).
  [[nodiscard]] static Result<Fleet> open(FleetOptions options,
                                          std::unique_ptr<DirectorySource> source);
  // A fleet whose directory is this fixed list (no registry).
  [[nodiscard]] static Fleet from_nodes(std::vector<FleetNode> nodes, FleetOptions options = {});

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] std::vector<FleetNode> nodes() const;
  [[nodiscard]] std::optional<FleetNode> node(const std::string& node_id) const;
  // The directory revision the view is at (0 for a fixed list).
  [[nodiscard]] int64_t revision() const;
  [[nodiscard]] bool wait_until(const std::function<bool(const std::vector<FleetNode>&)>& pred,
                                std::chrono::milliseconds timeout) const;
  [[nodiscard]] const std::shared_ptr<FleetView>& view() const noexcept;

  // The token this fleet uses on `node_id` (node_tokens, else the fleet
  // token); empty when it has none.
  [[nodiscard]] wire::Bytes token_for(const std::string& node_id) const;

  // A connection to a registered node, shared by every user of this Fleet
  // (one socket per node). A cached connection that has given up
  // reconnecting is replaced. Connection lost when the node is not in the
  // view or cannot be reached; the node's status when its HELLO fails.
  [[nodiscard]] Result<Connection> connect(const std::string& node_id) const;
  // Drops the cached connection to `node_id` (after it failed).
  void forget(const std::string& node_id) const;

  // Candidates for `c` in the current view, best first, leaving out nodes
  // this fleet has no token for.
  [[nodiscard]] std::vector<PlacementCandidate> candidates(const PlacementConstraints& c) const;

  // Stops the watch (nodes() then stays as it was). The last copy's
  // destruction does it too.
  void close() const;

  [[nodiscard]] const std::shared_ptr<detail::FleetImpl>& impl() const noexcept { return impl_; }
  [[nodiscard]] static Fleet from_impl(std::shared_ptr<detail::FleetImpl> impl) {
    return Fleet(std::move(impl));
  }

 private:
  explicit Fleet(std::shared_ptr<detail::FleetImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<detail::FleetImpl> impl_;
};

}  // namespace gpulease::client
