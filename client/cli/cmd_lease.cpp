// gpulease lease acquire|list|query|renew|release.
#include <cinttypes>
#include <cstdio>
#include <optional>

#include "cli_common.hpp"
#include "client_commands.hpp"
#include "commands.hpp"

namespace gpulease::cli {
namespace {

struct AcquireOptions {
  CommonOptions common;
  std::string vram = "64MiB";
  uint32_t ttl_s = 300;
  std::string exclusivity = "shared";
  int device = -1;
};

struct LeaseIdOptions {
  CommonOptions common;
  uint64_t lease_id = 0;
  uint32_t ttl_s = 0;
};

nlohmann::json info_json(const client::LeaseInfo& i) {
  return {{"lease_id", i.lease_id},
          {"state", client::lease_state_name(i.state)},
          {"exclusivity", client::exclusivity_name(i.exclusivity)},
          {"device", i.device},
          {"quota_bytes", i.quota_bytes},
          {"used_bytes", i.used_bytes},
          {"expires_at_ms", i.expires_at_ms},
          {"remaining_ms", i.remaining_ms},
          {"buffers", i.buffers},
          {"modules", i.modules}};
}

void print_info(const client::LeaseInfo& i) {
  std::printf("lease:       %" PRIu64 "\n", i.lease_id);
  std::printf("state:       %s\n", std::string(client::lease_state_name(i.state)).c_str());
  std::printf("exclusivity: %s\n", std::string(client::exclusivity_name(i.exclusivity)).c_str());
  std::printf("device:      %u\n", unsigned{i.device});
  std::printf("memory:      %s used of %s\n", human_bytes(i.used_bytes).c_str(),
              human_bytes(i.quota_bytes).c_str());
  std::printf("buffers:     %u\n", i.buffers);
  std::printf("modules:     %u\n", i.modules);
  std::printf("expires:     %s (in %.1f s)\n", iso_time_ms(i.expires_at_ms).c_str(),
              static_cast<double>(i.remaining_ms) / 1000.0);
}

void run_acquire(const AcquireOptions& o) {
  auto vram = parse_size(o.vram);
  if (!vram || *vram == 0) fail("--vram: expected a byte count such as 64MiB");
  client::Exclusivity excl;
  if (o.exclusivity == "shared") {
    excl = client::Exclusivity::kShared;
  } else if (o.exclusivity == "session") {
    excl = client::Exclusivity::kSessionExclusive;
  } else if (o.exclusivity == "device") {
    excl = client::Exclusivity::kDeviceExclusive;
  } else {
    fail("--exclusivity: shared, session or device");
  }
  const bool fleet = uses_registry(o.common);
  std::optional<client::LeaseBuilder> b;
  if (fleet) {
    b.emplace(open_fleet_or_fail(o.common, true));  // placed by best fit
  } else {
    b.emplace(connect_or_fail(o.common, true));
  }
  b->min_vram(*vram).lease_secs(o.ttl_s).exclusivity(excl);
  if (o.device >= 0) b->device(static_cast<uint16_t>(o.device));
  client::Lease lease = value_or_fail(b->acquire());
  // The lease outlives this process: release it with `gpulease lease release`.
  const uint64_t id = lease.detach();
  const std::string node_id = lease.connection().node_info().node_id;
  const std::string address = lease.connection().address().str();
  if (o.common.json) {
    print_json({{"lease_id", id},
                {"node_id", node_id},
                {"node", address},
                {"device", lease.device()},
                {"granted_bytes", lease.granted_bytes()},
                {"expires_at_ms", lease.expires_at_ms()}});
    return;
  }
  if (fleet) {
    std::printf("lease %" PRIu64 " acquired on node %s (%s): %s on device %u, expires %s\n", id,
                node_id.c_str(), address.c_str(), human_bytes(lease.granted_bytes()).c_str(),
                unsigned{lease.device()}, iso_time_ms(lease.expires_at_ms()).c_str());
    return;
  }
  std::printf("lease %" PRIu64 " acquired: %s on device %u, expires %s\n", id,
              human_bytes(lease.granted_bytes()).c_str(), unsigned{lease.device()},
              iso_time_ms(lease.expires_at_ms()).c_str());
}

// The connection to the node holding `lease_id`: the one named, or found in
// the fleet.
client::Connection lease_node_or_fail(const CommonOptions& o, uint64_t lease_id) {
  if (!uses_registry(o)) return connect_or_fail(o, true);
  client::Fleet fleet = open_fleet_or_fail(o, true);
  return find_lease_or_fail(fleet, lease_id).conn;
}

// lease list over a fleet: every node's leases, with a NODE column.
void run_list_fleet(const CommonOptions& o) {
  client::Fleet fleet = open_fleet_or_fail(o, true);
  nlohmann::json a = nlohmann::json::array();
  nlohmann::json unreachable = nlohmann::json::array();
  std::vector<std::pair<std::string, client::LeaseInfo>> all;
  for (const auto& n : fleet.nodes()) {
    auto conn = fleet.connect(n.node_id);
    Result<std::vector<client::LeaseInfo>> leases =
        conn ? client::list_leases(*conn) : Result<std::vector<client::LeaseInfo>>(conn.error());
    if (!leases) {
      std::fprintf(stderr, "gpulease: warning: node %s: %s\n", n.node_id.c_str(),
                   client::describe(leases.error()).c_str());
      unreachable.push_back(n.node_id);
      continue;
    }
    for (const auto& i : *leases) {
      auto j = info_json(i);
      j["node_id"] = n.node_id;
      a.push_back(j);
      all.emplace_back(n.node_id, i);
    }
  }
  if (o.json) {
    print_json({{"fleet", fleet.name()}, {"leases", a}, {"unreachable", unreachable}});
    return;
  }
  if (all.empty()) {
    std::printf("no leases\n");
    return;
  }
  std::printf("%-20s %-20s %-9s %-6s %-12s %-12s %s\n", "NODE", "LEASE", "STATE", "DEVICE", "USED",
              "QUOTA", "REMAINING");
  for (const auto& [node, i] : all) {
    std::printf("%-20s %-20" PRIu64 " %-9s %-6u %-12s %-12s %.1f s\n", node.c_str(), i.lease_id,
                std::string(client::lease_state_name(i.state)).c_str(), unsigned{i.device},
                human_bytes(i.used_bytes).c_str(), human_bytes(i.quota_bytes).c_str(),
                static_cast<double>(i.remaining_ms) / 1000.0);
  }
}

void run_list(const CommonOptions& o) {
  if (uses_registry(o)) {
    run_list_fleet(o);
    return;
  }
  client::Connection conn = connect_or_fail(o, true);
  auto leases = value_or_fail(client::list_leases(conn));
  if (o.json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& i : leases) a.push_back(info_json(i));
    print_json({{"leases", a}});
    return;
  }
  if (leases.empty()) {
    std::printf("no leases\n");
    return;
  }
  std::printf("%-20s %-9s %-6s %-12s %-12s %s\n", "LEASE", "STATE", "DEVICE", "USED", "QUOTA",
              "REMAINING");
  for (const auto& i : leases) {
    std::printf("%-20" PRIu64 " %-9s %-6u %-12s %-12s %.1f s\n", i.lease_id,
                std::string(client::lease_state_name(i.state)).c_str(), unsigned{i.device},
                human_bytes(i.used_bytes).c_str(), human_bytes(i.quota_bytes).c_str(),
                static_cast<double>(i.remaining_ms) / 1000.0);
  }
}

void run_query(const LeaseIdOptions& o) {
  client::Connection conn = lease_node_or_fail(o.common, o.lease_id);
  client::Lease lease = client::Lease::adopt(conn, o.lease_id);
  auto info = lease.query();
  lease.detach();
  if (!info) fail_error(info.error());
  if (o.common.json) {
    print_json(info_json(*info));
  } else {
    print_info(*info);
  }
}

void run_renew(const LeaseIdOptions& o) {
  if (o.ttl_s == 0) fail("--ttl must be positive");
  client::Connection conn = lease_node_or_fail(o.common, o.lease_id);
  client::Lease lease = client::Lease::adopt(conn, o.lease_id, o.ttl_s);
  auto r = lease.renew(o.ttl_s);
  lease.detach();
  if (!r) fail_error(r.error());
  if (o.common.json) {
    print_json({{"lease_id", o.lease_id}, {"expires_at_ms", lease.expires_at_ms()}});
  } else {
    std::printf("lease %" PRIu64 " renewed: expires %s\n", o.lease_id,
                iso_time_ms(lease.expires_at_ms()).c_str());
  }
}

void run_release(const LeaseIdOptions& o) {
  client::Connection conn = lease_node_or_fail(o.common, o.lease_id);
  client::Lease lease = client::Lease::adopt(conn, o.lease_id);
  ok_or_fail(lease.release());
  if (o.common.json) {
    print_json({{"lease_id", o.lease_id}, {"released", true}});
  } else {
    std::printf("lease %" PRIu64 " released\n", o.lease_id);
  }
}

}  // namespace

void register_lease_commands(CLI::App& app) {
  CLI::App* lease = app.add_subcommand("lease", "Acquire, list, query, renew and release leases");
  lease->require_subcommand(1);
  {
    auto o = std::make_shared<AcquireOptions>();
    CLI::App* cmd =
        lease->add_subcommand("acquire", "Acquire a lease; it stays until released or expired");
    uses_common_options(cmd);
    cmd->add_option("--vram", o->vram, "VRAM quota, e.g. 512MiB")->capture_default_str();
    cmd->add_option("--ttl", o->ttl_s, "Seconds the lease lives unless renewed")
        ->capture_default_str();
    cmd->add_option("--exclusivity", o->exclusivity, "shared | session | device")
        ->capture_default_str();
    cmd->add_option("--device", o->device, "Device index 0..65534 (default: any)")
        ->check(CLI::Range(0, 65534));
    cmd->callback([o] {
      o->common = common_options();
      run_acquire(*o);
    });
  }
  {
    CLI::App* cmd = lease->add_subcommand("list", "List the token's leases on the node");
    uses_common_options(cmd);
    cmd->callback([] { run_list(common_options()); });
  }
  auto by_id = [&](const char* name, const char* help, void (*fn)(const LeaseIdOptions&),
                   bool ttl) {
    auto o = std::make_shared<LeaseIdOptions>();
    CLI::App* cmd = lease->add_subcommand(name, help);
    uses_common_options(cmd);
    cmd->add_option("lease", o->lease_id, "Lease id")->required();
    if (ttl) cmd->add_option("--ttl", o->ttl_s, "New TTL in seconds from now")->required();
    cmd->callback([o, fn] {
      o->common = common_options();
      fn(*o);
    });
  };
  by_id("query", "Show a lease's state, memory and remaining time", run_query, false);
  by_id("renew", "Extend a lease", run_renew, true);
  by_id("release", "Release a lease now (its memory and modules are freed)", run_release, false);
}

}  // namespace gpulease::cli
