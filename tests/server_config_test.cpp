// gpuleased's flags and config file: values are read, flags override the
// file, and out-of-domain values are refused with a message, not a crash.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
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

}  // namespace
}  // namespace gpulease::server
