// Command families of the `gpulease` CLI that talk to a node (the client
// library's commands). main() calls each register_* function.
#pragma once

#include <CLI/CLI.hpp>

namespace gpulease::cli {

// info, ping (cmd_node.cpp).
void register_node_commands(CLI::App& app);
// lease acquire|list|query|renew|release (cmd_lease.cpp).
void register_lease_commands(CLI::App& app);
// run MODULE KERNEL ... (cmd_run.cpp).
void register_run_commands(CLI::App& app);
// nodes (cmd_fleet.cpp).
void register_fleet_commands(CLI::App& app);

}  // namespace gpulease::cli
