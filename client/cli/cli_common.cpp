#include "cli_common.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "commands.hpp"

namespace gpulease::cli {

namespace {
CommonOptions& global_options() {
  static CommonOptions o;
  return o;
}
}  // namespace

void add_global_options(CLI::App& app) {
  CommonOptions& o = global_options();
  const char* group = "Global options (before or after the command)";
  app.add_option("--node,-n", o.node,
                 "Node HOST:PORT (default: $GPULEASE_NODE, else 127.0.0.1:7070)")
      ->group(group);
  app.add_option("--token", o.token, "Capability token text glt1.... (default: $GPULEASE_TOKEN)")
      ->group(group);
  app.add_option("--token-file", o.token_file, "File holding the token text")->group(group);
  app.add_option("--timeout", o.timeout_s,
                 "Seconds to wait for the node to connect and for each reply (default: 5 to "
                 "connect, 300 per reply); running out exits with status 4 and says TIMEOUT")
      ->check(CLI::PositiveNumber)
      ->group(group);
  app.add_flag("--json", o.json, "Print machine-readable JSON on stdout")->group(group);
  // Subcommands created from now on inherit it: an option a subcommand does
  // not know is tried on its parent, up to the root.
  app.fallthrough();
}

const CommonOptions& common_options() {
  return global_options();
}

void uses_common_options(CLI::App* cmd) {
  cmd->footer(
      "Global options, before or after the command: --node HOST:PORT, --token TEXT, "
      "--token-file FILE, --timeout SECONDS, --json (see `gpulease --help`).");
}

int exit_code_for(const client::Error& e) noexcept {
  if (e.is_timeout()) return kExitTimeout;
  if (e.is_connection_lost()) return kExitConnection;
  return kExitError;
}

void fail_error(const client::Error& e) {
  fail(e.to_string(), exit_code_for(e));
}

client::Connection connect_or_fail(const CommonOptions& o, bool need_token) {
  std::string node = o.node;
  if (node.empty()) {
    const char* env = std::getenv("GPULEASE_NODE");
    node = env != nullptr && *env != '\0' ? env : kDefaultNode;
  }
  auto addr = client::NodeAddress::parse(node);
  if (!addr) fail("--node: " + addr.error().message());
  std::string token_text = o.token;
  if (token_text.empty() && !o.token_file.empty()) {
    std::ifstream f(o.token_file);
    if (!f) fail("--token-file: cannot read " + o.token_file);
    std::stringstream ss;
    ss << f.rdbuf();
    token_text = ss.str();
  }
  if (token_text.empty()) {
    const char* env = std::getenv("GPULEASE_TOKEN");
    if (env != nullptr) token_text = env;
  }
  client::ConnectOptions co;
  co.node = *addr;
  co.client_name = "gpulease-cli";
  co.reconnect_attempts = 3;
  if (o.timeout_s > 0) {
    const auto ms = std::chrono::milliseconds(
        static_cast<int64_t>(std::min(o.timeout_s, 86400.0 * 365) * 1000.0 + 0.5));
    co.connect_timeout = co.request_timeout = std::max(ms, std::chrono::milliseconds(1));
  }
  if (!token_text.empty()) {
    auto t = client::token_from_text(token_text);
    if (!t) fail("token: " + t.error().message());
    co.token = std::move(t).value();
  } else if (need_token) {
    fail(
        "no token: pass --token or --token-file, or set GPULEASE_TOKEN (mint one with `gpulease "
        "token mint`)");
  }
  auto c = client::Connection::connect(std::move(co));
  if (!c) fail_error(c.error());
  return std::move(c).value();
}

std::optional<uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  if (i == 0) return std::nullopt;
  std::string_view suffix = s.substr(i);
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix.front()) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      case 'b':
      case 'B':
        shift = 0;
        break;
      default:
        return std::nullopt;
    }
    if (shift != 0) suffix.remove_prefix(1);
    if (!(suffix.empty() || suffix == "B" || suffix == "iB")) return std::nullopt;
  }
  if (shift != 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::string human_bytes(uint64_t n) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char b[32];
  if (u == 0) {
    std::snprintf(b, sizeof b, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(b, sizeof b, "%.1f %s", v, kUnits[u]);
  }
  return b;
}

std::string iso_time_ms(uint64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  char b[32];
  if (gmtime_r(&t, &tm) == nullptr || std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(unix_ms);
  }
  return b;
}

void print_json(const nlohmann::json& j) {
  // Paths and names need not be UTF-8: print invalid bytes as U+FFFD rather
  // than throwing.
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

ProgressBar::ProgressBar(std::string label) : state_(std::make_shared<State>()) {
  state_->label = std::move(label);
  state_->start = std::chrono::steady_clock::now();
  state_->tty = ::isatty(2) == 1;
}

ProgressBar::~ProgressBar() {
  std::lock_guard lock(state_->mu);
  state_->detached = true;  // a late callback from the reader thread draws nothing
  if (state_->drawn) std::fprintf(stderr, "\n");
}

void ProgressBar::update(uint64_t done, uint64_t total) {
  state_->update(done, total);
}

void ProgressBar::State::update(uint64_t done, uint64_t total) {
  if (!tty || total == 0) return;
  std::lock_guard lock(mu);
  if (detached) return;
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (!drawn && elapsed < std::chrono::seconds(1)) return;
  drawn = true;
  constexpr int kWidth = 30;
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  const int fill = static_cast<int>(frac * kWidth);
  const double secs = std::chrono::duration<double>(elapsed).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::string bar(static_cast<size_t>(fill), '#');
  bar.append(static_cast<size_t>(kWidth - fill), '.');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s of %s, %s/s   ", label.c_str(), bar.c_str(),
               static_cast<int>(frac * 100), human_bytes(done).c_str(), human_bytes(total).c_str(),
               human_bytes(static_cast<uint64_t>(rate)).c_str());
  std::fflush(stderr);
}

client::ProgressFn ProgressBar::fn() {
  // Shares the state, so the callback stays valid after the bar is gone.
  return [s = state_](uint64_t done, uint64_t total) { s->update(done, total); };
}

}  // namespace gpulease::cli
