// gpuleased's flags and config file: values are read, flags override the
// file, and out-of-domain values are refused with a message, not a crash.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "config.hpp"

namespace gpulease::server {
namespace {

struct Argv {
  explicit Argv(std::vector<std::string> a) : args(std::move(a)) {
    args.insert(args.begin(), "gpuleased");
    for (auto& s : args) ptrs.push_back(s.data());
  }
  int argc() { return static_cast<int>(ptrs.size()); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> args;
  std::vector<char*> ptrs;
};

Result<void> parse(std::vector<std::string> args, NodeConfig& cfg) {
  Argv a(std::move(args));
  bool help = false;
  return parse_node_config(a.argc(), a.argv(), cfg, help);
}

std::string write_toml(const std::string& text) {
  auto path =
      std::filesystem::temp_directory_path() /
      ("gpulease-config-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
       "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(ServerConfig, FlagsSetTheirFields) {
  NodeConfig c;
  ASSERT_TRUE(parse({"--listen", "0.0.0.0:9000", "--node-id", "n1", "--backend", "sim",
                     "--max-inflight", "8", "--authority-key", "a.pub", "--authority-key", "b.pub"},
                    c)
                  .ok());
  EXPECT_EQ(c.listen_host, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 9000);
  EXPECT_EQ(c.node_id, "n1");
  EXPECT_EQ(c.limits.max_inflight, 8u);
  EXPECT_EQ(c.authority_keys, (std::vector<std::string>{"a.pub", "b.pub"}));
}

TEST(ServerConfig, TheFileIsReadAndFlagsOverrideIt) {
  std::string path =
      write_toml("listen = \"127.0.0.1:7100\"\nnode_id = \"from-file\"\nmax_ttl_s = 600\n");
  NodeConfig c;
  ASSERT_TRUE(parse({"--config", path, "--node-id", "from-flag"}, c).ok());
  EXPECT_EQ(c.listen_port, 7100);
  EXPECT_EQ(c.max_ttl_s, 600u);
  EXPECT_EQ(c.node_id, "from-flag");
  std::filesystem::remove(path);
}

TEST(ServerConfig, BadValuesAreRefusedWithAMessage) {
  NodeConfig c;
  EXPECT_EQ(parse({"--listen", "nohost"}, c).status(), Status::kInvalidArgument);
  EXPECT_EQ(parse({"--listen", "h:99999"}, c).status(), Status::kInvalidArgument);
  NodeConfig c2;
  EXPECT_EQ(parse({"--max-inflight", "0"}, c2).status(), Status::kInvalidArgument);
  NodeConfig c3;
  EXPECT_EQ(parse({"--backend", "quantum"}, c3).status(), Status::kInvalidArgument);
  NodeConfig c4;
  EXPECT_EQ(parse({"--sim-worker-nice", "20"}, c4).status(), Status::kInvalidArgument);
  NodeConfig c5;
  ASSERT_TRUE(parse({"--sim-worker-nice", "0"}, c5).ok());
  EXPECT_EQ(c5.sim_worker_nice, 0u);
  for (const char* toml :
       {"listen = \"h:notaport\"\n", "max_inflight = -1\n", "reaper_interval_ms = 0\n",
        "max_payload_bytes = 999999999\n", "this is not toml\n"}) {
    std::string path = write_toml(toml);
    NodeConfig cf;
    auto r = parse({"--config", path}, cf);
    EXPECT_EQ(r.status(), Status::kInvalidArgument) << toml;
    if (!r) {
      EXPECT_FALSE(r.error().message.empty());
    }
    std::filesystem::remove(path);
  }
}

TEST(ServerConfig, AuthFailureLimitAndTombstonesAreReadAndChecked) {
  std::string path = write_toml(
      "auth_failures_per_second = 5\nauth_failure_burst = 9\ntombstones_per_tenant = 64\n");
  NodeConfig c;
  ASSERT_TRUE(parse({"--config", path, "--auth-failure-burst", "12"}, c).ok());
  EXPECT_EQ(c.auth_failures_per_second, 5u);
  EXPECT_EQ(c.auth_failure_burst, 12u);
  EXPECT_EQ(c.tombstones_per_tenant, 64u);
  std::filesystem::remove(path);
  NodeConfig off;
  ASSERT_TRUE(parse({"--auth-failures-per-second", "0", "--auth-failure-burst", "0"}, off).ok());
  NodeConfig c2;
  EXPECT_EQ(parse({"--auth-failure-burst", "0"}, c2).status(), Status::kInvalidArgument);
  NodeConfig c3;
  EXPECT_EQ(parse({"--tombstones-per-tenant", "0"}, c3).status(), Status::kInvalidArgument);
  NodeConfig c4;
  EXPECT_EQ(parse({"--tombstones-per-tenant", "65537"}, c4).status(), Status::kInvalidArgument);
}

}  // namespace
}  // namespace gpulease::server

namespace gpulease::server {
namespace {

// docs/OPERATING.md and --help agree: every flag --help lists is documented,
// and the network limits' documented defaults are the config struct's.
TEST(ConfigDoc, HelpAndOperatingMdAgree) {
  std::ostringstream captured;
  auto* old = std::cout.rdbuf(captured.rdbuf());
  NodeConfig cfg;
  bool help = false;
  Argv a({"--help"});
  auto r = parse_node_config(a.argc(), a.argv(), cfg, help);
  std::cout.rdbuf(old);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(help);
  const std::string text = captured.str();
  std::ifstream f(std::string(GPULEASE_SOURCE_DIR) + "/docs/OPERATING.md");
  std::stringstream doc;
  doc << f.rdbuf();
  const std::string md = doc.str();
  ASSERT_FALSE(md.empty());
  size_t pos = 0, flags = 0;
  while ((pos = text.find("--", pos)) != std::string::npos) {
    size_t end = pos + 2;
    while (end < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-'))
      ++end;
    std::string flag = text.substr(pos, end - pos);
    pos = end;
    if (flag == "--" || flag == "--help") continue;
    ++flags;
    EXPECT_NE(md.find("`" + flag), std::string::npos) << flag << " is not in OPERATING.md";
  }
  EXPECT_GT(flags, 20u);
  // The documented default of each network limit, in the doc's units.
  const NodeConfig d;
  auto row = [&](const std::string& flag) {
    size_t at = md.find("| `" + flag + "` |");
    EXPECT_NE(at, std::string::npos) << flag;
    if (at == std::string::npos) return std::string();
    size_t start = md.find('|', at + 3 + flag.size()) + 1;
    size_t stop = md.find('|', start);
    std::string cell = md.substr(start, stop - start);
    cell.erase(0, cell.find_first_not_of(' '));
    cell.erase(cell.find_last_not_of(' ') + 1);
    return cell;
  };
  auto mib = [](uint64_t v) { return std::to_string(v >> 20) + " MiB"; };
  EXPECT_EQ(row("--frame-bytes-per-tenant"), mib(d.frame_bytes_per_tenant));
  EXPECT_EQ(row("--frame-bytes-per-connection"), mib(d.frame_bytes_per_connection));
  EXPECT_EQ(row("--body-pool-bytes"), mib(d.body_pool_bytes));
  EXPECT_EQ(row("--reply-queue-bytes"), mib(d.reply_queue_bytes));
  EXPECT_EQ(row("--reply-bytes-per-tenant"), mib(d.reply_bytes_per_tenant));
  EXPECT_EQ(row("--drain-timeout-ms"), std::to_string(d.drain_timeout_ms));
  EXPECT_EQ(row("--metrics-max-connections"), std::to_string(d.metrics_max_connections));
  EXPECT_EQ(row("--metrics-timeout-ms"), std::to_string(d.metrics_timeout_ms));
  EXPECT_EQ(row("--auth-failures-per-second"), std::to_string(d.auth_failures_per_second));
  EXPECT_EQ(row("--auth-failure-burst"), std::to_string(d.auth_failure_burst));
  EXPECT_EQ(row("--tombstones-per-tenant"), std::to_string(d.tombstones_per_tenant));
  EXPECT_EQ(row("--frame-bytes-budget"), "1 GiB");
  EXPECT_EQ(d.frame_bytes_budget, 1ull << 30);
}

TEST(ConfigDoc, NetworkSharesAreCheckedAgainstEachOther) {
  NodeConfig cfg;
  EXPECT_FALSE(parse({"--frame-bytes-per-tenant", "0"}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_FALSE(parse({"--frame-bytes-per-tenant", std::to_string(2ull << 30)}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_FALSE(parse({"--frame-bytes-per-connection", std::to_string(512ull << 20)}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_FALSE(parse({"--metrics-max-connections", "0"}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_TRUE(
      parse({"--frame-bytes-per-connection", "1048576", "--reply-queue-bytes", "65536"}, cfg).ok());
  EXPECT_EQ(cfg.frame_bytes_per_connection, 1u << 20);
  EXPECT_EQ(cfg.reply_queue_bytes, 65536u);
  // The tenant's reply bound covers at least one connection's.
  cfg = NodeConfig{};
  EXPECT_FALSE(parse({"--reply-bytes-per-tenant", std::to_string(32ull << 20)}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_TRUE(
      parse({"--reply-queue-bytes", "1048576", "--reply-bytes-per-tenant", "4194304"}, cfg).ok());
  EXPECT_EQ(cfg.reply_bytes_per_tenant, 4u << 20);
  cfg = NodeConfig{};
  EXPECT_FALSE(parse({"--drain-timeout-ms", "0"}, cfg).ok());
  cfg = NodeConfig{};
  EXPECT_TRUE(parse({"--drain-timeout-ms", "2500"}, cfg).ok());
  EXPECT_EQ(cfg.drain_timeout_ms, 2500u);
}

}  // namespace
}  // namespace gpulease::server
