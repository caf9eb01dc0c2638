// Shared pieces of the node-facing CLI commands: the common flags (--node,
// --token, --token-file, --json), connecting, byte-size parsing, output and
// a stderr progress bar.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "gpulease/client/client.hpp"

namespace gpulease::cli {

// The client's result and error types (client/errors.hpp) are the CLI's.
using client::Error;
using client::Result;

inline constexpr const char* kDefaultNode = "127.0.0.1:7070";

struct CommonOptions {
  std::string node;   // empty: $GPULEASE_NODE, else kDefaultNode
  std::string token;  // empty: --token-file, else $GPULEASE_TOKEN
  std::string token_file;
  bool json = false;
  double timeout_s = 0;  // > 0: connect timeout and each request's timeout
};

// Global options: --node, --token, --token-file, --timeout and --json, accepted before
// or after the subcommand (`gpulease --node H:P info`, `gpulease info --node
// H:P`). add_global_options() adds them to the root app and lets every
// subcommand pass options it does not know up to it (CLI11 fallthrough); call
// it before registering subcommands. common_options() holds their values
// once parsing is done (in a subcommand's callback).
void add_global_options(CLI::App& app);
[[nodiscard]] const CommonOptions& common_options();
// Notes in `cmd`'s help that it uses the global options.
void uses_common_options(CLI::App* cmd);

// Connects to the node the options name. `need_token`: fail with a clear
// message when no token is given at all.
[[nodiscard]] client::Connection connect_or_fail(const CommonOptions& o, bool need_token);

// Exit statuses of a failed command: 1 for a node's refusal (its status is
// named on stderr) and for bad input, local errors included; kExitConnection
// when the node cannot be reached or the connection was lost; kExitTimeout
// when the node did not answer in time.
inline constexpr int kExitError = 1;
inline constexpr int kExitConnection = 3;
inline constexpr int kExitTimeout = 4;

// The exit status for `e` (see above).
[[nodiscard]] int exit_code_for(const client::Error& e) noexcept;

// Prints "gpulease: error: NAME: message" (NAME: the node's status, TIMEOUT,
// CONNECTION_LOST or "STATUS (local)", see client::Error::to_string) and
// exits with exit_code_for(e) (via CLI::RuntimeError, like fail()).
[[noreturn]] void fail_error(const client::Error& e);

template <typename T>
T value_or_fail(client::Result<T> r) {
  if (!r) fail_error(r.error());
  return std::move(r).value();
}
template <typename T>
T value_or_fail(gpulease::Result<T> r) {
  return value_or_fail(client::Result<T>(std::move(r)));
}
inline void ok_or_fail(client::Result<void> r) {
  if (!r) fail_error(r.error());
}

// "123", "64KiB", "512MiB", "2G": binary multiples. nullopt otherwise.
[[nodiscard]] std::optional<uint64_t> parse_size(std::string_view s);
// "1.5 GiB"
[[nodiscard]] std::string human_bytes(uint64_t n);
// "2026-05-06T12:00:00Z"
[[nodiscard]] std::string iso_time_ms(uint64_t unix_ms);

void print_json(const nlohmann::json& j);

// A progress bar on stderr for one transfer: drawn only when stderr is a
// terminal and the transfer has taken more than a second.
// THREAD SAFETY: update() may be called from any thread. The function fn()
// returns may outlive the bar (a late reply's progress): it then does nothing.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  void update(uint64_t done, uint64_t total);
  client::ProgressFn fn();

 private:
  struct State {
    void update(uint64_t done, uint64_t total);
    std::string label;
    std::chrono::steady_clock::time_point start;
    bool tty = false;
    std::mutex mu;
    bool drawn = false;     // GUARDED_BY(mu)
    bool detached = false;  // GUARDED_BY(mu): the bar is gone
  };
  std::shared_ptr<State> state_;
};

}  // namespace gpulease::cli
