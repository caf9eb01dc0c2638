// gpulease run MODULE.ptx KERNEL --grid G --block B --arg TYPE:VALUE ...
// One GPU_SUBMIT from the command line: the node loads the module, creates
// the argument buffers, runs the kernel once and returns the outputs.
//
// Argument forms (in kernel parameter order):
//   u32:N i32:N u64:N i64:N f32:X f64:X   scalars (integers decimal, or hex with 0x)
//   in:FILE                               buffer initialised from FILE
//   out:SIZE:FILE                         zero-filled buffer of SIZE bytes, written to FILE
//   inout:FILE[:OUTFILE]                  buffer from FILE, written back to OUTFILE (default FILE)
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "cli_common.hpp"
#include "client_commands.hpp"
#include "commands.hpp"

namespace gpulease::cli {
namespace {

struct RunOptions {
  CommonOptions common;
  std::string module;
  std::string kernel;
  std::string grid = "1";
  std::string block = "1";
  uint32_t shared = 0;
  std::vector<std::string> args;
  std::string vram;  // empty: sized from the buffers
  uint32_t ttl_s = 60;
  uint64_t lease_id = 0;
};

struct OutputFile {
  uint16_t arg_index;
  std::string path;
};

// Reads a file of at most `limit` bytes (the node's max_payload_bytes: a
// larger one could not be sent). Refuses what is not a regular file
// (/dev/zero, a FIFO) and never reads more than limit + 1 bytes.
wire::Bytes read_file(const std::string& path, uint64_t limit) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec) fail("cannot read " + path + ": " + ec.message());
  if (!std::filesystem::is_regular_file(st)) fail("cannot read " + path + ": not a regular file");
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("cannot read " + path + ": " + ec.message());
  const auto too_large = [&] {
    fail(path + " is larger than the node's limit of " + std::to_string(limit) +
         " bytes per request");
  };
  if (size > limit) too_large();
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  wire::Bytes b;
  std::vector<char> buf(1 << 16);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<size_t>(f.gcount());
    if (got == 0) break;
    if (b.size() + got > limit) too_large();  // it grew while we read it
    const size_t at = b.size();
    b.resize(at + got);
    std::memcpy(b.data() + at, buf.data(), got);
  }
  if (f.bad()) fail("cannot read " + path);
  return b;
}

void write_file(const std::string& path, const wire::Bytes& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail("cannot write " + path);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) fail("cannot write " + path);
}

wire::Dim3 parse_dim(const std::string& flag, const std::string& s) {
  wire::Dim3 d{1, 1, 1};
  size_t i = 0, at = 0;
  while (at <= s.size() && i < 3) {
    size_t end = s.find_first_of(",x", at);
    std::string part = s.substr(at, end == std::string::npos ? std::string::npos : end - at);
    char* e = nullptr;
    unsigned long v = std::strtoul(part.c_str(), &e, 10);
    if (part.empty() || *e != '\0' || v == 0 || v > 0xffffffffUL)
      fail(flag + ": expected X[,Y[,Z]] of positive integers");
    d[i++] = static_cast<uint32_t>(v);
    if (end == std::string::npos) return d;
    at = end + 1;
  }
  fail(flag + ": at most three dimensions");
}

// Integers are decimal ("010" is ten); an explicit 0x prefix means hex.
int int_base(const std::string& v) {
  const size_t at = !v.empty() && (v[0] == '-' || v[0] == '+') ? 1 : 0;
  return v.size() > at + 2 && v[at] == '0' && (v[at + 1] == 'x' || v[at + 1] == 'X') ? 16 : 10;
}

template <typename T>
T parse_num(const std::string& arg, const std::string& v) {
  try {
    size_t used = 0;
    if constexpr (std::is_same_v<T, float>) {
      float x = std::stof(v, &used);
      if (used == v.size()) return x;
    } else if constexpr (std::is_same_v<T, double>) {
      double x = std::stod(v, &used);
      if (used == v.size()) return x;
    } else if constexpr (std::is_signed_v<T>) {
      long long x = std::stoll(v, &used, int_base(v));
      if (used == v.size() && x >= std::numeric_limits<T>::min() &&
          x <= std::numeric_limits<T>::max()) {
        return static_cast<T>(x);
      }
    } else {
      if (!v.empty() && v[0] != '-') {
        unsigned long long x = std::stoull(v, &used, int_base(v));
        if (used == v.size() && x <= std::numeric_limits<T>::max()) return static_cast<T>(x);
      }
    }
  } catch (const std::exception&) {
  }
  fail("--arg " + arg + ": bad value '" + v + "'");
}

void run_run(const RunOptions& o) {
  // Connected first: the node's payload limit bounds every file read. On a
  // fleet (--registry) the node is known only once the lease is placed: the
  // protocol's default limit bounds the reads, and the node refuses a frame
  // over its own (FRAME_TOO_LARGE).
  std::optional<client::Fleet> fleet;
  std::optional<client::Connection> conn;
  if (uses_registry(o.common)) {
    fleet.emplace(open_fleet_or_fail(o.common, true));
    if (o.lease_id != 0) conn.emplace(find_lease_or_fail(*fleet, o.lease_id).conn);
  } else {
    conn.emplace(connect_or_fail(o.common, true));
  }
  const uint64_t limit =
      conn ? conn->node_info().limits.max_payload_bytes : wire::Limits{}.max_payload_bytes;
  const wire::Bytes image = read_file(o.module, limit);
  const wire::Dim3 grid = parse_dim("--grid", o.grid);
  const wire::Dim3 block = parse_dim("--block", o.block);
  client::SubmitArgs args;
  std::vector<OutputFile> outputs;
  uint64_t buffer_bytes = 0;
  for (size_t i = 0; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    const auto colon = a.find(':');
    if (colon == std::string::npos) fail("--arg " + a + ": expected TYPE:VALUE");
    const std::string type = a.substr(0, colon);
    const std::string rest = a.substr(colon + 1);
    const auto idx = static_cast<uint16_t>(i);
    if (type == "u32") {
      args.push_u32(parse_num<uint32_t>(a, rest));
    } else if (type == "i32") {
      args.push_i32(parse_num<int32_t>(a, rest));
    } else if (type == "u64") {
      args.push_u64(parse_num<uint64_t>(a, rest));
    } else if (type == "i64") {
      auto v = parse_num<int64_t>(a, rest);
      wire::Bytes b(8);
      wire::store_le64(b.data(), static_cast<uint64_t>(v));
      args.push_bytes(b);
    } else if (type == "f32") {
      args.push_f32(parse_num<float>(a, rest));
    } else if (type == "f64") {
      args.push_f64(parse_num<double>(a, rest));
    } else if (type == "in") {
      wire::Bytes data = read_file(rest, limit);
      if (data.empty()) fail("--arg " + a + ": the file is empty");
      buffer_bytes += data.size();
      args.in(data);
    } else if (type == "out") {
      const auto c2 = rest.find(':');
      if (c2 == std::string::npos) fail("--arg " + a + ": expected out:SIZE:FILE");
      auto size = parse_size(rest.substr(0, c2));
      if (!size || *size == 0) fail("--arg " + a + ": bad size");
      buffer_bytes += *size;
      args.out(*size);
      outputs.push_back({idx, rest.substr(c2 + 1)});
    } else if (type == "inout") {
      const auto c2 = rest.find(':');
      const std::string in_path = rest.substr(0, c2);
      const std::string out_path = c2 == std::string::npos ? in_path : rest.substr(c2 + 1);
      wire::Bytes data = read_file(in_path, limit);
      if (data.empty()) fail("--arg " + a + ": the file is empty");
      buffer_bytes += data.size();
      args.inout(data);
      outputs.push_back({idx, out_path});
    } else {
      fail("--arg " + a + ": unknown type '" + type +
           "' (u32, i32, u64, i64, f32, f64, in, out, inout)");
    }
  }

  std::optional<client::Lease> lease;
  if (o.lease_id != 0) {
    lease.emplace(client::Lease::adopt(*conn, o.lease_id));
  } else {
    uint64_t vram = buffer_bytes + (1u << 20);
    if (!o.vram.empty()) {
      auto v = parse_size(o.vram);
      if (!v || *v == 0) fail("--vram: expected a byte count such as 64MiB");
      vram = *v;
    }
    lease.emplace(value_or_fail((fleet ? client::LeaseBuilder(*fleet) : client::LeaseBuilder(*conn))
                                    .min_vram(vram)
                                    .lease_secs(o.ttl_s)
                                    .release_on_disconnect()
                                    .acquire()));
  }
  const auto start = std::chrono::steady_clock::now();
  Result<client::SubmitResult> r = make_error(wire::Status::kInternal, "not run");
  {
    ProgressBar bar("run " + o.kernel);
    client::Session session(*lease);
    r = session.submit(image, o.kernel, grid, block, args, o.shared, wire::ImageFormat::kPtx,
                       bar.fn());
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (o.lease_id != 0) {
    lease->detach();
  } else {
    (void)lease->release();
  }
  if (!r) fail_error(r.error());
  nlohmann::json outs = nlohmann::json::array();
  for (const auto& of : outputs) {
    const wire::Bytes* data = r->output(of.arg_index);
    if (data == nullptr)
      fail("the node returned no output for argument " + std::to_string(of.arg_index));
    write_file(of.path, *data);
    outs.push_back({{"arg", of.arg_index}, {"bytes", data->size()}, {"file", of.path}});
    if (!o.common.json) {
      std::printf("arg %u: %zu bytes -> %s\n", unsigned{of.arg_index}, data->size(),
                  of.path.c_str());
    }
  }
  if (o.common.json) {
    print_json({{"kernel", o.kernel}, {"elapsed_ms", ms}, {"outputs", outs}});
  } else {
    std::printf("%s: done in %.1f ms\n", o.kernel.c_str(), ms);
  }
}

}  // namespace

void register_run_commands(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run", "Run one kernel with GPU_SUBMIT: typed arguments, input and output files");
  uses_common_options(cmd);
  cmd->add_option("module", o->module, "PTX file")->required();
  cmd->add_option("kernel", o->kernel, "Kernel (entry) name")->required();
  cmd->add_option("--grid,-g", o->grid, "Grid dimensions X[,Y[,Z]]")->capture_default_str();
  cmd->add_option("--block,-b", o->block, "Block dimensions X[,Y[,Z]]")->capture_default_str();
  cmd->add_option("--shared", o->shared, "Dynamic shared memory bytes")->capture_default_str();
  cmd->add_option("--arg,-a", o->args,
                  "Kernel argument, in order: u32:N i32:N u64:N i64:N f32:X f64:X in:FILE "
                  "out:SIZE:FILE inout:FILE[:OUTFILE]");
  cmd->add_option("--vram", o->vram, "Lease size (default: the buffers plus 1 MiB)");
  cmd->add_option("--ttl", o->ttl_s, "Lease TTL in seconds")->capture_default_str();
  cmd->add_option("--lease", o->lease_id, "Run on this existing lease instead of a temporary one");
  cmd->callback([o] {
    o->common = common_options();
    run_run(*o);
  });
}

}  // namespace gpulease::cli
