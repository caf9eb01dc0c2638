// gpulease: the command-line client. Subcommands are registered by the
// families in commands.hpp.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "cli_common.hpp"
#include "client_commands.hpp"
#include "commands.hpp"

namespace gpulease::cli {

void fail(std::string_view message, int exit_code) {
  std::fprintf(stderr, "gpulease: error: %.*s\n", static_cast<int>(message.size()), message.data());
  throw CLI::RuntimeError(exit_code);
}

int64_t now_unix_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace gpulease::cli

int main(int argc, char** argv) {
  CLI::App app{"gpulease: client and key tooling for gpuleased nodes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("gpulease 0.1.0"));
  gpulease::cli::add_global_options(app);
  gpulease::cli::register_key_commands(app);
  gpulease::cli::register_node_commands(app);
  gpulease::cli::register_lease_commands(app);
  gpulease::cli::register_run_commands(app);
  gpulease::cli::register_fleet_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpulease: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
