// gpulease info, gpulease ping: what a node is and whether it answers.
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "cli_common.hpp"
#include "client_commands.hpp"
#include "commands.hpp"

namespace gpulease::cli {
namespace {

struct PingOptions {
  CommonOptions common;
  unsigned count = 4;
  std::string size = "0";
  double interval_s = 0.2;
};

std::string uuid_hex(const wire::Uuid& u) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += kHex[u[i] >> 4];
    s += kHex[u[i] & 15];
  }
  return s;
}

void run_info(const CommonOptions& o) {
  client::Connection conn = connect_or_fail(o, false);
  const wire::HelloReply h = conn.node_info();
  if (o.json) {
    nlohmann::json devs = nlohmann::json::array();
    for (const auto& d : h.devices) {
      devs.push_back(
          {{"index", d.index},
           {"name", d.name},
           {"uuid", uuid_hex(d.uuid)},
           {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)},
           {"sm_count", d.sm_count},
           {"total_bytes", d.total_bytes},
           {"free_bytes", d.free_bytes}});
    }
    const auto& L = h.limits;
    print_json({{"node", conn.address().str()},
                {"node_id", h.node_id},
                {"backend", h.backend},
                {"protocol_version", h.version},
                {"limits",
                 {{"max_token_bytes", L.max_token_bytes},
                  {"max_payload_bytes", L.max_payload_bytes},
                  {"max_inflight", L.max_inflight},
                  {"max_kernel_args", L.max_kernel_args},
                  {"max_arg_bytes", L.max_arg_bytes},
                  {"max_name_bytes", L.max_name_bytes},
                  {"max_lease_ttl_s", L.max_lease_ttl_s}}},
                {"devices", devs}});
    return;
  }
  std::printf("node:      %s\n", conn.address().str().c_str());
  std::printf("node id:   %s\n", h.node_id.c_str());
  std::printf("backend:   %s\n", h.backend.c_str());
  std::printf("protocol:  %u\n", unsigned{h.version});
  std::printf("limits:    payload %s, %u requests in flight, lease TTL up to %u s\n",
              human_bytes(h.limits.max_payload_bytes).c_str(), h.limits.max_inflight,
              h.limits.max_lease_ttl_s);
  std::printf("devices:   %zu\n", h.devices.size());
  for (const auto& d : h.devices) {
    std::printf("  [%u] %s (cc %u.%u, %u SMs): %s free of %s\n", unsigned{d.index}, d.name.c_str(),
                unsigned{d.cc_major}, unsigned{d.cc_minor}, d.sm_count,
                human_bytes(d.free_bytes).c_str(), human_bytes(d.total_bytes).c_str());
  }
}

void run_ping(const PingOptions& o) {
  auto size = parse_size(o.size);
  if (!size || *size > (64u << 10)) fail("--size: expected a byte count up to 64KiB");
  client::Connection conn = connect_or_fail(o.common, false);
  wire::Bytes data(*size);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i & 0xff);
  nlohmann::json rtts = nlohmann::json::array();
  double min_us = 1e300, max_us = 0, sum_us = 0;
  for (unsigned i = 0; i < o.count; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::duration<double>(o.interval_s));
    auto rtt = value_or_fail(conn.ping(data));
    const double us = static_cast<double>(rtt.count());
    min_us = std::min(min_us, us);
    max_us = std::max(max_us, us);
    sum_us += us;
    rtts.push_back(us);
    if (!o.common.json) {
      std::printf("%zu bytes from %s: seq=%u time=%.3f ms\n", data.size(),
                  conn.address().str().c_str(), i, us / 1000.0);
    }
  }
  if (o.common.json) {
    print_json({{"node", conn.address().str()},
                {"bytes", data.size()},
                {"rtt_us", rtts},
                {"min_us", min_us},
                {"avg_us", o.count ? sum_us / o.count : 0},
                {"max_us", max_us}});
  } else if (o.count > 0) {
    std::printf("rtt min/avg/max = %.3f/%.3f/%.3f ms\n", min_us / 1000.0, sum_us / o.count / 1000.0,
                max_us / 1000.0);
  }
}

}  // namespace

void register_node_commands(CLI::App& app) {
  {
    CLI::App* cmd = app.add_subcommand(
        "info", "Show a node's identity, backend, limits, devices and free VRAM");
    uses_common_options(cmd);
    cmd->callback([] { run_info(common_options()); });
  }
  {
    auto o = std::make_shared<PingOptions>();
    CLI::App* cmd =
        app.add_subcommand("ping", "Measure round trips to a node (PING, no token needed)");
    uses_common_options(cmd);
    cmd->add_option("--count,-c", o->count, "Number of pings")->capture_default_str();
    cmd->add_option("--size,-s", o->size, "Echo payload size, e.g. 1KiB")->capture_default_str();
    cmd->add_option("--interval,-i", o->interval_s, "Seconds between pings")->capture_default_str();
    cmd->callback([o] {
      o->common = common_options();
      run_ping(*o);
    });
  }
}

}  // namespace gpulease::cli
