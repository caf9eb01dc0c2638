// gpulease nodes: the nodes registered in a fleet's directory (etcd), with
// their address, backend, devices and free VRAM.
#include <cinttypes>
#include <cstdio>

#include "cli_common.hpp"
#include "client_commands.hpp"
#include "commands.hpp"

namespace gpulease::cli {

nlohmann::json fleet_node_json(const client::FleetNode& n) {
  nlohmann::json devs = nlohmann::json::array();
  for (const auto& d : n.devices) {
    devs.push_back(
        {{"index", d.index},
         {"name", d.name},
         {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)},
         {"total_vram", d.total_vram},
         {"free_vram", d.free_vram}});
  }
  return {{"node_id", n.node_id},      {"address", n.address},       {"backend", n.backend},
          {"devices", devs},           {"free_vram", n.free_vram()}, {"total_vram", n.total_vram()},
          {"updated_ms", n.updated_ms}};
}

namespace {

void run_nodes(const CommonOptions& o) {
  if (!o.node.empty()) fail("nodes: reads the fleet's directory; give --registry, not --node");
  CommonOptions with = o;
  if (with.registry.empty() && std::getenv("GPULEASE_REGISTRY") == nullptr)
    fail("nodes: no registry: pass --registry etcd://HOST:PORT or set GPULEASE_REGISTRY");
  // Listing needs no token: the directory is read from etcd, not the nodes.
  client::Fleet fleet = open_fleet_or_fail(with, false);
  const auto nodes = fleet.nodes();
  fleet.close();
  if (o.json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& n : nodes) a.push_back(fleet_node_json(n));
    print_json({{"fleet", fleet.name()}, {"revision", fleet.revision()}, {"nodes", a}});
    return;
  }
  if (nodes.empty()) {
    std::printf("no nodes registered in fleet '%s'\n", fleet.name().c_str());
    return;
  }
  std::printf("%-20s %-22s %-8s %-8s %-12s %s\n", "NODE", "ADDRESS", "BACKEND", "DEVICES", "FREE",
              "TOTAL");
  for (const auto& n : nodes) {
    std::printf("%-20s %-22s %-8s %-8zu %-12s %s\n", n.node_id.c_str(), n.address.c_str(),
                n.backend.c_str(), n.devices.size(), human_bytes(n.free_vram()).c_str(),
                human_bytes(n.total_vram()).c_str());
    for (const auto& d : n.devices) {
      std::printf("  [%u] %s (cc %u.%u): %s free of %s\n", unsigned{d.index}, d.name.c_str(),
                  unsigned{d.cc_major}, unsigned{d.cc_minor}, human_bytes(d.free_vram).c_str(),
                  human_bytes(d.total_vram).c_str());
    }
  }
}

}  // namespace

void register_fleet_commands(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "nodes",
      "List the nodes registered in a fleet (--registry): address, backend, devices, free VRAM");
  uses_common_options(cmd);
  cmd->callback([] { run_nodes(common_options()); });
}

}  // namespace gpulease::cli
