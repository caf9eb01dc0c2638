// Command families of the `gpulease` CLI. Each registers its subcommands on
// the root app; main() calls every register_* function.
//
// Contract for a command callback: print results to stdout and problems to
// stderr (via fail()), and report failure by throwing CLI::RuntimeError with
// the exit code, which main() turns into the process exit status.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string_view>

namespace gpulease::cli {

// keygen; token mint|inspect (cmd_keys.cpp).
void register_key_commands(CLI::App& app);

// Prints "gpulease: error: <message>" to stderr and throws
// CLI::RuntimeError(exit_code).
[[noreturn]] void fail(std::string_view message, int exit_code = 1);

// Seconds since the Unix epoch, from the system clock.
[[nodiscard]] int64_t now_unix_s();

}  // namespace gpulease::cli
