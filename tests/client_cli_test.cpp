// The node-facing `gpulease` commands against a gpuleased process: info,
// ping, the lease life cycle, and run (GPU_SUBMIT with typed arguments and
// files), in both human and --json output; global options before and after
// the subcommand; and every `gpulease` command line the README and docs/*.md
// show, run as written (or, for a synopsis, as a filled-in instance).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <regex>
#include <set>

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

// Every scalar width and structs by value (kernels/params.cu echoes each
// parameter's bits into a buffer of 64-bit words).
TEST(ClientCli, RunPassesEveryScalarWidthAndStructsByValue) {
  NodeProcess node;
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/params.ptx";
  const auto out = node.dir() / "o.bin";
  const auto words = [&](const std::string& args) {
    auto j = run_json(
        node, "run " + ptx_path + " echo_params " + args + " --arg out:136:" + out.string());
    EXPECT_EQ(j["outputs"].size(), 1u) << j.dump();
    std::string b = slurp(out);
    std::vector<uint64_t> w(17);
    EXPECT_EQ(b.size(), 136u);
    if (b.size() == 136u) std::memcpy(w.data(), b.data(), b.size());
    return w;
  };
  // Pair {int a = -2; (4 bytes padding) double b = 3.25;}  Tri {char c = -3; (1 byte) short s =
  // 0x1234; float f = 2.0;}
  const std::string pair =
      " --arg bytes:feffffff00000000000000000000"
      "0a40";
  const std::string tri = " --arg bytes:fd00341200000040";
  auto w = words(
      "--arg i8:-5 --arg u8:250 --arg i16:-30000 --arg u16:65000 --arg i32:-7 --arg u32:0xdeadbeef "
      "--arg i64:-1234567890123 --arg u64:0xfedcba9876543210 --arg f16:0.1 --arg bf16:-2.5 "
      "--arg f32:1.5 --arg f64:0.1" +
      pair + tri);
  const std::vector<uint64_t> want{static_cast<uint64_t>(-5),
                                   250,
                                   static_cast<uint64_t>(-30000),
                                   65000,
                                   static_cast<uint64_t>(-7),
                                   0xdeadbeefull,
                                   static_cast<uint64_t>(-1234567890123ll),
                                   0xfedcba9876543210ull,
                                   0x2e66,  // 0.1 in binary16, rounded to nearest
                                   0xc020,  // -2.5 in bfloat16
                                   0x3fc00000,
                                   0x3fb999999999999aull,
                                   static_cast<uint64_t>(-2),
                                   0x400a000000000000ull,
                                   static_cast<uint64_t>(-3),
                                   0x1234,
                                   0x40000000};
  EXPECT_EQ(w, want);
  // Rounding edges: 65519 -> the largest half (65504), -65520 -> -inf, the
  // smallest subnormals; hex integers; a half written as "half".
  w = words(
      "--arg i8:0x7f --arg u8:0xff --arg i16:-0x8000 --arg u16:0 --arg i32:0 --arg u32:0 "
      "--arg i64:0 --arg u64:0 --arg half:65519 --arg bf16:1e-40 --arg f32:-0 --arg f64:inf" +
      pair + tri);
  EXPECT_EQ(w[0], 0x7fu);
  EXPECT_EQ(w[1], 0xffu);
  EXPECT_EQ(w[2], static_cast<uint64_t>(-0x8000));
  EXPECT_EQ(w[8], 0x7bffu);
  EXPECT_EQ(w[9], 0x0001u);
  EXPECT_EQ(w[10], 0x80000000u);
  EXPECT_EQ(w[11], 0x7ff0000000000000ull);
  w = words(
      "--arg i8:0 --arg u8:0 --arg i16:0 --arg u16:0 --arg i32:0 --arg u32:0 --arg i64:0 "
      "--arg u64:0 --arg f16:-65520 --arg bf16:3.4e38 --arg f32:0 --arg f64:0" +
      pair + tri);
  EXPECT_EQ(w[8], 0xfc00u);
  EXPECT_EQ(w[9], 0x7f80u) << "3.4e38 rounds past the largest bfloat16";
  // Out of range, and a struct of the wrong size (the node: LAUNCH_FAILED).
  auto r = node.run(bin("gpulease") + " run " + ptx_path + " echo_params --arg i8:128");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("bad value '128'"), std::string::npos) << r.err;
  r = node.run(bin("gpulease") + " run " + ptx_path + " echo_params --arg bytes:abc");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("hex"), std::string::npos) << r.err;
  r = node.run(bin("gpulease") + " run " + ptx_path +
               " echo_params --arg i8:0 --arg u8:0 --arg i16:0 --arg u16:0 --arg i32:0 --arg u32:0 "
               "--arg i64:0 --arg u64:0 --arg f16:0 --arg bf16:0 --arg f32:0 --arg f64:0 "
               "--arg bytes:00 " +
               tri + " --arg out:136:" + out.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("LAUNCH_FAILED"), std::string::npos) << r.err;
}

// Module variables from the command line (kernels/globals.cu): a __constant__
// table and its length set, __device__ counters read back.
TEST(ClientCli, RunSetsAndReadsModuleGlobals) {
  NodeProcess node;
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/globals.ptx";
  const auto in = node.dir() / "x.bin";
  const auto out = node.dir() / "y.bin";
  const auto calls = node.dir() / "calls.bin";
  std::vector<float> x(256);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5f * static_cast<float>(i);
  {
    std::ofstream f(in, std::ios::binary);
    f.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * 4));
  }
  auto j = run_json(node, "run " + ptx_path + " poly_table --grid 1 --block 256 --arg in:" +
                              in.string() + " --arg out:1024:" + out.string() +
                              " --arg i32:256 --set-global kTable=f32:1,0.5,0.25 "
                              "--set-global kTerms=i32:3 --get-global gCount --get-global gCalls=" +
                              calls.string());
  ASSERT_EQ(j["globals"].size(), 2u) << j.dump();
  EXPECT_EQ(j["globals"][0]["name"], "gCount");
  EXPECT_EQ(j["globals"][0]["hex"], "00010000");                // 256, little-endian
  EXPECT_EQ(slurp(calls), std::string("\x08\x00\x00\x00", 4));  // initialised 7, one launch
  std::string y = slurp(out);
  ASSERT_EQ(y.size(), 1024u);
  std::vector<float> v(256);
  std::memcpy(v.data(), y.data(), y.size());
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_EQ(v[i], 1.0f + 0.5f * x[i] + 0.25f * x[i] * x[i]) << i;
  // The temporary lease is gone.
  EXPECT_TRUE(run_json(node, "lease list")["leases"].empty());
  // Human output prints the bytes.
  auto h = node.run(bin("gpulease") + " run " + ptx_path + " bump --arg u64:0 --arg u32:1 " +
                    "--get-global gCalls");
  EXPECT_NE(h.status, 0) << "a null pointer faults: " << h.out;
  h = node.run(bin("gpulease") + " run " + ptx_path + " poly_table --arg in:" + in.string() +
               " --arg out:4:" + out.string() + " --arg i32:1 --get-global gCalls");
  EXPECT_EQ(h.status, 0) << h.err;
  EXPECT_NE(h.out.find("gCalls = 08000000"), std::string::npos) << h.out;
  // Too many values for the variable; a name the module does not declare.
  auto r = node.run(bin("gpulease") + " run " + ptx_path +
                    " poly_table --arg u64:0 --arg u64:0 --arg i32:0 --set-global kTerms=i32:1,2");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  r = node.run(bin("gpulease") + " run " + ptx_path +
               " poly_table --arg u64:0 --arg u64:0 --arg i32:0 --set-global nope=i32:1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  r = node.run(bin("gpulease") + " run " + ptx_path +
               " poly_table --arg u64:0 --arg u64:0 --arg i32:0 --set-global kTerms=x32:1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("unknown type"), std::string::npos) << r.err;
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

TEST(ClientCli, ATimeoutSaysTimeoutAndAnUnreachableNodeSaysSoWithTheirOwnExitStatus) {
  NodeProcess node;
  const std::string g = bin("gpulease");
  // Listens and never accepts: the handshake completes, HELLO gets no reply.
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string silent = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  auto slow = node.run(g + " --node " + silent + " --timeout 0.1 info");
  EXPECT_EQ(slow.status, 4) << slow.err;
  EXPECT_NE(slow.err.find("TIMEOUT"), std::string::npos) << slow.err;
  EXPECT_EQ(slow.err.find("BUSY"), std::string::npos) << slow.err;
  ::close(l);
  // Nothing listens there any more: the node cannot be reached.
  auto gone = node.run(g + " --node " + silent + " info");
  EXPECT_EQ(gone.status, 3) << gone.err;
  EXPECT_NE(gone.err.find("CONNECTION_LOST"), std::string::npos) << gone.err;
  // A refusal by the node stays exit status 1, named by its status.
  auto refused = node.run(g + " lease query 12345");
  EXPECT_EQ(refused.status, 1) << refused.err;
  EXPECT_NE(refused.err.find("LEASE_NOT_FOUND"), std::string::npos) << refused.err;
  auto bad = node.run(g + " --timeout -1 info");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("--timeout"), std::string::npos) << bad.err;
}

TEST(ClientCli, GlobalOptionsWorkBeforeOrAfterTheSubcommand) {
  NodeProcess node("cli-node");
  const std::string g = bin("gpulease");
  // No $GPULEASE_NODE / $GPULEASE_TOKEN: only the flags say where and who.
  const std::string bare = "env -u GPULEASE_NODE -u GPULEASE_TOKEN ";
  const std::string at = " --node " + node.address();
  const std::string tok = " --token " + node.token();
  for (const std::string& args :
       {at + " info", " info" + at, at + " --json info", " --json info" + at, at + " info --json",
        at + tok + " lease list", " lease list" + at + tok, at + " lease" + tok + " list --json",
        " --json" + tok + " lease list" + at, at + " ping -c 1 -i 0"}) {
    auto r = node.run(bare + g + args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.out << r.err;
    if (args.find("--json") != std::string::npos) {
      json j;
      EXPECT_NO_THROW(j = json::parse(r.out)) << args << ": " << r.out;
      EXPECT_FALSE(j.is_null()) << args;
    }
  }
  // An unknown option is still an error, wherever it is.
  auto bad = node.run(bare + g + at + " info --no-such-flag");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("no-such-flag"), std::string::npos) << bad.err;
  // A bad address names the flag and what is wrong.
  auto port = node.run(bare + g + " --node 127.0.0.1:abc info");
  EXPECT_EQ(port.status, 1);
  EXPECT_NE(port.err.find("bad port"), std::string::npos) << port.err;
}

// Every `gpulease ...` line in a fenced code block of README.md and
// docs/*.md (continuation lines joined, `build/bin/` and `$(...)` taken off,
// comments dropped, whitespace collapsed), except Python blocks and the
// Python package's `python3 -m gpulease` lines.
std::set<std::string> documented_command_lines() {
  std::set<std::string> lines;
  std::vector<std::filesystem::path> files = {std::filesystem::path(GPULEASE_SOURCE_DIR) /
                                              "README.md"};
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(GPULEASE_SOURCE_DIR) / "docs")) {
    if (e.path().extension() == ".md") files.push_back(e.path());
  }
  const std::regex invocation(R"((?:^|[\s(/])(gpulease\s+(?:-|[a-z]).*)$)");
  for (const auto& f : files) {
    std::istringstream in(slurp(f));
    std::string line, joined;
    bool code = false, python = false;
    while (std::getline(in, line)) {
      if (line.rfind("```", 0) == 0) {
        code = !code;
        python = code && line.rfind("```py", 0) == 0;
        continue;
      }
      // Python code and the Python package's own command line
      // (`python3 -m gpulease ...`, docs/PYTHON.md) are not this CLI.
      if (!code || python || line.find("-m gpulease") != std::string::npos) continue;
      if (!line.empty() && line.back() == '\\') {
        joined += line.substr(0, line.size() - 1) + " ";
        continue;
      }
      joined += line;
      std::string l = std::exchange(joined, {});
      if (auto hash = l.find(" #"); hash != std::string::npos) l.resize(hash);
      std::smatch m;
      if (!std::regex_search(l, m, invocation)) continue;
      std::string cmd = m[1];
      if (auto close = cmd.find(')');
          close != std::string::npos && cmd.find('(') == std::string::npos)
        cmd.resize(close);  // the end of $(...)
      std::istringstream words(cmd);
      std::string w, norm;
      while (words >> w) norm += (norm.empty() ? "" : " ") + w;
      lines.insert(norm);
    }
  }
  return lines;
}

TEST(ClientCli, EveryCommandLineInTheDocsRuns) {
  NodeProcess node("node-a");
  const std::string ptx_path = std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/transform.ptx";
  // A directory of its own (the node's authority key is in node.dir()).
  const auto dir = node.dir() / "docs";
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "data.bin", std::ios::binary);
    const std::string zeros(4096, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  // Each documented line, in the order they are run here, with the concrete
  // command lines run for it ({node}: this node; {lease}: the lease the
  // first `lease acquire` made; {ptx}: kernels/ptx/transform.ptx). Commands
  // run in the test's directory, with $GPULEASE_NODE and $GPULEASE_TOKEN set.
  const std::vector<std::pair<std::string, std::vector<std::string>>> table = {
      {"gpulease keygen --out authority", {"keygen --out authority"}},
      {"gpulease token mint --key authority.key --tenant alice --audience node-a --perms all --ttl "
       "3600",
       {"token mint --key authority.key --tenant alice --audience node-a --perms all --ttl 3600"}},
      {"gpulease --node 127.0.0.1:7070 info", {"--node {node} info"}},
      {"gpulease info", {"info"}},
      {"gpulease ping [-c N] [-s SIZE]", {"ping -c 2 -i 0", "ping -c 2 -s 1KiB -i 0"}},
      {"gpulease lease acquire --vram 512MiB --ttl 300 [--exclusivity shared|session|device] "
       "[--device I]",
       {"lease acquire --vram 512MiB --ttl 300 --exclusivity shared --device 0",
        "lease acquire --vram 64MiB --ttl 300"}},
      {"gpulease lease list", {"lease list"}},
      {"gpulease lease renew LEASE_ID --ttl SECONDS", {"lease renew {lease} --ttl 600"}},
      {"gpulease lease query|release LEASE_ID", {"lease query {lease}", "lease release {lease}"}},
      {"gpulease run MODULE.ptx KERNEL --grid 4 --block 256 --arg inout:data.bin[:out.bin] --arg "
       "i32:1024 --arg f32:2.0 [--arg in:FILE] [--arg out:SIZE:FILE]",
       {"run {ptx} scale --grid 4 --block 256 --arg inout:data.bin:out.bin --arg i32:1024 --arg "
        "f32:2.0",
        "run {ptx} scale --grid 4 --block 256 --arg inout:data.bin --arg i32:1024 --arg f32:2.0"}},
      {"gpulease run MODULE.ptx KERNEL --arg in:x.bin --arg out:SIZE:y.bin --arg i32:N "
       "--set-global NAME=TYPE:V[,V...] [--get-global NAME[=FILE]]",
       {"run {gptx} poly_table --grid 4 --block 256 --arg in:data.bin --arg out:4096:y.bin --arg "
        "i32:1024 --set-global kTable=f32:1.5,2 --set-global kTerms=i32:2 --get-global gCount",
        "run {gptx} poly_table --grid 4 --block 256 --arg in:data.bin --arg out:4096:y.bin --arg "
        "i32:1024 --set-global kTable=bytes:0000c03f --set-global kTerms=i32:1 --get-global "
        "gCalls=calls.bin"}},
  };
  const std::set<std::string> documented = documented_command_lines();
  std::set<std::string> covered;
  for (const auto& [doc, runs] : table) covered.insert(doc);
  for (const auto& d : documented) {
    EXPECT_TRUE(covered.count(d)) << "the docs show a command line this test does not run: " << d;
  }
  for (const auto& c : covered) {
    EXPECT_TRUE(documented.count(c)) << "this test runs a line the docs no longer show: " << c;
  }

  std::string lease;
  auto fill = [&](std::string s) {
    for (const auto& [key, value] : std::map<std::string, std::string>{
             {"{node}", node.address()},
             {"{lease}", lease},
             {"{ptx}", ptx_path},
             {"{gptx}", std::string(GPULEASE_SOURCE_DIR) + "/kernels/ptx/globals.ptx"}}) {
      for (size_t at; (at = s.find(key)) != std::string::npos;) s.replace(at, key.size(), value);
    }
    return s;
  };
  for (const auto& [doc, runs] : table) {
    for (const auto& args : runs) {
      const std::string cmd =
          "sh -c 'cd " + dir.string() + " && " + bin("gpulease") + " " + fill(args) + "'";
      auto r = node.run(cmd);
      EXPECT_EQ(r.status, 0) << doc << "\nran: " << fill(args) << "\n" << r.out << r.err;
      if (lease.empty() && args.rfind("lease acquire", 0) == 0) {
        std::smatch m;
        if (std::regex_search(r.out, m, std::regex("lease ([0-9]+) acquired"))) lease = m[1];
        ASSERT_FALSE(lease.empty()) << r.out;
      }
    }
  }
  EXPECT_EQ(slurp(dir / "out.bin").size(), 4096u);
}

}  // namespace
}  // namespace gpulease::testing
