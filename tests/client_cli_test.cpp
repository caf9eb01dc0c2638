// The node-facing `gpulease` commands against a gpuleased process: info,
// ping, the lease life cycle, and run (GPU_SUBMIT with typed arguments and
// files), in both human and --json output.
#include <nlohmann/json.hpp>

#include <cstring>

#include "client_process_util.hpp"

namespace gpulease::testing {
namespace {

using nlohmann::json;

json run_json(const NodeProcess& node, const std::string& args) {
  auto r = node.run(bin("gpulease") + " " + args + " --json");
  EXPECT_EQ(r.status, 0) << args << "\n" << r.out << r.err;
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << args << ": not JSON: " << r.out;
    return json();
  }
}

TEST(ClientCli, InfoShowsTheNodeAndItsDevices) {
  NodeProcess node("cli-node");
  auto j = run_json(node, "info");
  EXPECT_EQ(j["node_id"], "cli-node");
  EXPECT_EQ(j["backend"], "sim");
  ASSERT_EQ(j["devices"].size(), 1u);
  EXPECT_GT(j["devices"][0]["free_bytes"].get<uint64_t>(), 0u);
  auto human = node.run(bin("gpulease") + " info");
  EXPECT_EQ(human.status, 0);
  EXPECT_NE(human.out.find("backend:   sim"), std::string::npos) << human.out;
}

TEST(ClientCli, PingNeedsNoToken) {
  NodeProcess node;
  auto r = node.run("env -u GPULEASE_TOKEN " + bin("gpulease") + " ping -c 2 -i 0 -s 1KiB");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rtt min/avg/max"), std::string::npos) << r.out;
}

TEST(ClientCli, LeaseAcquireListQueryRenewRelease) {
  NodeProcess node;
  auto acquired = run_json(node, "lease acquire --vram 16MiB --ttl 60");
  const uint64_t id = acquired["lease_id"].get<uint64_t>();
  EXPECT_EQ(acquired["granted_bytes"].get<uint64_t>(), 16u << 20);
  auto list = run_json(node, "lease list");
  ASSERT_EQ(list["leases"].size(), 1u);
  EXPECT_EQ(list["leases"][0]["lease_id"].get<uint64_t>(), id);
  auto q = run_json(node, "lease query " + std::to_string(id));
  EXPECT_EQ(q["state"], "active");
  auto renewed = run_json(node, "lease renew " + std::to_string(id) + " --ttl 600");
  EXPECT_GT(renewed["expires_at_ms"].get<uint64_t>(), q["expires_at_ms"].get<uint64_t>());
  auto released = node.run(bin("gpulease") + " lease release " + std::to_string(id));
  EXPECT_EQ(released.status, 0) << released.err;
  EXPECT_NE(released.out.find("released"), std::string::npos);
  EXPECT_TRUE(run_json(node, "lease list")["leases"].empty());
  auto again = node.run(bin("gpulease") + " lease query " + std::to_string(id));
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("LEASE_EXPIRED"), std::string::npos) << again.err;
}

TEST(ClientCli, RunSubmitsAKernelWithTypedArgumentsAndFiles) {
  NodeProcess node;
  const auto in = node.dir() / "data.bin";
  const auto out = node.dir() / "out.bin";
  {
    std::vector<float> v(1000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
    std::ofstream f(in, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  }
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/transform.ptx";
  auto j =
      run_json(node, "run " + ptx_path + " scale --grid 4 --block 256 --arg inout:" + in.string() +
                         ":" + out.string() + " --arg i32:1000 --arg f32:0.5");
  ASSERT_EQ(j["outputs"].size(), 1u);
  EXPECT_EQ(j["outputs"][0]["bytes"].get<uint64_t>(), 4000u);
  std::string bytes = slurp(out);
  ASSERT_EQ(bytes.size(), 4000u);
  std::vector<float> v(1000);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], 0.5f * static_cast<float>(i));
  // The temporary lease is gone.
  EXPECT_TRUE(run_json(node, "lease list")["leases"].empty());
}

TEST(ClientCli, RunReportsANodeErrorWithItsStatus) {
  NodeProcess node;
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/transform.ptx";
  auto r = node.run(bin("gpulease") + " run " + ptx_path + " nope --arg u32:1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("LAUNCH_FAILED"), std::string::npos) << r.err;
  auto bad = node.run(bin("gpulease") + " run " + ptx_path + " scale --arg x32:1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("unknown type"), std::string::npos) << bad.err;
}

TEST(ClientCli, CommandsThatNeedATokenSaySoWithoutOne) {
  NodeProcess node;
  auto r = node.run("env -u GPULEASE_TOKEN " + bin("gpulease") + " lease list");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no token"), std::string::npos) << r.err;
}

TEST(ClientCli, RunRefusesInputsThatAreNotRegularFilesOrTooLarge) {
  NodeProcess node;
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/transform.ptx";
  auto r = node.run(bin("gpulease") + " run " + ptx_path + " scale --arg in:/dev/zero");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
}

TEST(ClientCli, LeaseAcquireRejectsADeviceIndexOutOfRange) {
  NodeProcess node;
  auto r = node.run(bin("gpulease") + " lease acquire --device 70000");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace gpulease::testing
