// gpulease run MODULE.ptx KERNEL --grid G --block B --arg TYPE:VALUE ...
// One kernel run from the command line: the node loads the module, creates
// the argument buffers, runs the kernel once and returns the outputs. Without
// --set-global/--get-global this is one GPU_SUBMIT; with them it is a session
// (MODULE_LOAD, MODULE_GLOBAL, MEM_ALLOC/MEM_WRITE, LAUNCH, SYNC, MEM_READ),
// all on a temporary lease unless --lease names one.
//
// Argument forms (in kernel parameter order):
//   i8:N u8:N i16:N u16:N i32:N u32:N i64:N u64:N   integers (decimal, or hex with 0x)
//   f16:X (or half:X) bf16:X f32:X f64:X             floats, rounded to nearest even
//   bytes:HEX                                        a parameter of exactly these bytes
//                                                    (a struct by value, laid out as in
//                                                    device memory, padding included)
//   in:FILE                               buffer initialised from FILE
//   out:SIZE:FILE                         zero-filled buffer of SIZE bytes, written to FILE
//   inout:FILE[:OUTFILE]                  buffer from FILE, written back to OUTFILE (default FILE)
//
// Module variables (__constant__ / __device__, by their PTX names):
//   --set-global NAME=TYPE:V[,V...]       the values, packed, at the variable's start
//   --set-global NAME=bytes:HEX | NAME=file:PATH
//   --get-global NAME[=FILE]              after the run: the variable's bytes to FILE,
//                                         or printed in hex
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

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
  std::vector<std::string> set_globals;
  std::vector<std::string> get_globals;
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
T parse_num(const std::string& what, const std::string& v) {
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
  fail(what + ": bad value '" + v + "'");
}

// `x` rounded to nearest even in a binary float of `mant` stored significand
// bits and `expbits` exponent bits (IEEE binary16: 10, 5; bfloat16: 7, 8),
// straight from the double (no double rounding through float).
uint16_t to_small_float(double x, int mant, int expbits) {
  const int bias = (1 << (expbits - 1)) - 1;
  const int emin = 1 - bias;
  const uint32_t sign = std::signbit(x) ? 1u << (mant + expbits) : 0u;
  const uint32_t inf = ((1u << expbits) - 1) << mant;
  if (std::isnan(x)) return static_cast<uint16_t>(sign | inf | 1u << (mant - 1));
  const double a = std::fabs(x);
  if (std::isinf(a)) return static_cast<uint16_t>(sign | inf);
  if (a < std::ldexp(1.0, emin)) {  // subnormal (or rounds up to the smallest normal)
    const double q = std::nearbyint(std::ldexp(a, mant - emin));
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(q));
  }
  int ex = 0;
  (void)std::frexp(a, &ex);
  int e = ex - 1;  // a = 1.f * 2^e
  double q = std::nearbyint(std::ldexp(a, mant - e));
  if (q == std::ldexp(1.0, mant + 1)) {
    q = std::ldexp(1.0, mant);
    ++e;
  }
  if (e > bias) return static_cast<uint16_t>(sign | inf);
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(e + bias) << mant |
                               (static_cast<uint32_t>(q) - (1u << mant)));
}

template <typename T>
wire::Bytes le_bytes(T v) {
  wire::Bytes b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  return b;
}

wire::Bytes parse_hex(const std::string& what, std::string h) {
  if (h.size() >= 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) h = h.substr(2);
  std::erase(h, '_');
  const auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (h.empty() || h.size() % 2 != 0)
    fail(what + ": expected an even number of hex digits (bytes in memory order)");
  wire::Bytes b(h.size() / 2);
  for (size_t i = 0; i < b.size(); ++i) {
    const int hi = nib(h[2 * i]), lo = nib(h[2 * i + 1]);
    if (hi < 0 || lo < 0) fail(what + ": '" + h.substr(2 * i, 2) + "' is not a hex byte");
    b[i] = static_cast<std::byte>(hi << 4 | lo);
  }
  return b;
}

constexpr const char* kScalarTypes =
    "i8, u8, i16, u16, i32, u32, i64, u64, f16 (half), bf16, f32, f64";

// The bytes of one scalar of `type`, or nullopt when `type` is not a scalar
// type. `what` names the argument in errors.
std::optional<wire::Bytes> scalar_bytes(const std::string& what, const std::string& type,
                                        const std::string& v) {
  if (type == "i8") return le_bytes(parse_num<int8_t>(what, v));
  if (type == "u8") return le_bytes(parse_num<uint8_t>(what, v));
  if (type == "i16") return le_bytes(parse_num<int16_t>(what, v));
  if (type == "u16") return le_bytes(parse_num<uint16_t>(what, v));
  if (type == "i32") return le_bytes(parse_num<int32_t>(what, v));
  if (type == "u32") return le_bytes(parse_num<uint32_t>(what, v));
  if (type == "i64") return le_bytes(parse_num<int64_t>(what, v));
  if (type == "u64") return le_bytes(parse_num<uint64_t>(what, v));
  if (type == "f32") return le_bytes(parse_num<float>(what, v));
  if (type == "f64") return le_bytes(parse_num<double>(what, v));
  if (type == "f16" || type == "half")
    return le_bytes(to_small_float(parse_num<double>(what, v), 10, 5));
  if (type == "bf16") return le_bytes(to_small_float(parse_num<double>(what, v), 7, 8));
  return std::nullopt;
}

// One kernel argument, parsed.
struct ArgSpec {
  enum Kind { kScalar, kIn, kOut, kInOut } kind = kScalar;
  wire::Bytes data;   // scalar bytes, or a buffer's initial contents
  uint64_t size = 0;  // buffer size
  std::string out_path;
};

struct GlobalSet {
  std::string name;
  wire::Bytes data;
};
struct GlobalGet {
  std::string name;
  std::string path;  // empty: print
};

// NAME=VALUES of --set-global.
GlobalSet parse_set_global(const std::string& s, uint64_t limit) {
  const std::string what = "--set-global " + s;
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) fail(what + ": expected NAME=TYPE:V[,V...]");
  GlobalSet g{s.substr(0, eq), {}};
  const std::string rest = s.substr(eq + 1);
  const auto colon = rest.find(':');
  if (colon == std::string::npos) fail(what + ": expected NAME=TYPE:V[,V...]");
  const std::string type = rest.substr(0, colon);
  const std::string vals = rest.substr(colon + 1);
  if (type == "bytes") {
    g.data = parse_hex(what, vals);
  } else if (type == "file") {
    g.data = read_file(vals, limit);
  } else {
    size_t at = 0;
    while (true) {
      const auto comma = vals.find(',', at);
      const std::string v = vals.substr(at, comma == std::string::npos ? comma : comma - at);
      auto b = scalar_bytes(what, type, v);
      if (!b) fail(what + ": unknown type '" + type + "' (" + kScalarTypes + ", bytes, file)");
      g.data.insert(g.data.end(), b->begin(), b->end());
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  if (g.data.empty()) fail(what + ": no value");
  if (g.data.size() > limit)
    fail(what + ": larger than the node's limit of " + std::to_string(limit) +
         " bytes per request");
  return g;
}

std::string to_hex(const wire::Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (std::byte x : b) {
    s += d[std::to_integer<int>(x) >> 4];
    s += d[std::to_integer<int>(x) & 15];
  }
  return s;
}

void run_run(const RunOptions& o) {
  // Connected first: the node's payload limit bounds every file read.
  client::Connection conn = connect_or_fail(o.common, true);
  const uint64_t limit = conn.node_info().limits.max_payload_bytes;
  const wire::Bytes image = read_file(o.module, limit);
  const wire::Dim3 grid = parse_dim("--grid", o.grid);
  const wire::Dim3 block = parse_dim("--block", o.block);
  std::vector<ArgSpec> specs;
  uint64_t buffer_bytes = 0;
  for (const std::string& a : o.args) {
    const auto colon = a.find(':');
    if (colon == std::string::npos) fail("--arg " + a + ": expected TYPE:VALUE");
    const std::string type = a.substr(0, colon);
    const std::string rest = a.substr(colon + 1);
    ArgSpec spec;
    if (auto b = scalar_bytes("--arg " + a, type, rest)) {
      spec.data = std::move(*b);
    } else if (type == "bytes") {
      spec.data = parse_hex("--arg " + a, rest);
      if (spec.data.size() > conn.node_info().limits.max_arg_bytes || spec.data.size() > 256)
        fail("--arg " + a + ": a parameter is at most 256 bytes");
    } else if (type == "in") {
      spec.kind = ArgSpec::kIn;
      spec.data = read_file(rest, limit);
      if (spec.data.empty()) fail("--arg " + a + ": the file is empty");
      spec.size = spec.data.size();
    } else if (type == "out") {
      const auto c2 = rest.find(':');
      if (c2 == std::string::npos) fail("--arg " + a + ": expected out:SIZE:FILE");
      auto size = parse_size(rest.substr(0, c2));
      if (!size || *size == 0) fail("--arg " + a + ": bad size");
      spec.kind = ArgSpec::kOut;
      spec.size = *size;
      spec.out_path = rest.substr(c2 + 1);
    } else if (type == "inout") {
      const auto c2 = rest.find(':');
      const std::string in_path = rest.substr(0, c2);
      spec.kind = ArgSpec::kInOut;
      spec.out_path = c2 == std::string::npos ? in_path : rest.substr(c2 + 1);
      spec.data = read_file(in_path, limit);
      if (spec.data.empty()) fail("--arg " + a + ": the file is empty");
      spec.size = spec.data.size();
    } else {
      fail("--arg " + a + ": unknown type '" + type + "' (" + kScalarTypes +
           ", bytes, in, out, inout)");
    }
    buffer_bytes += spec.size;
    specs.push_back(std::move(spec));
  }
  std::vector<GlobalSet> sets;
  for (const auto& s : o.set_globals) sets.push_back(parse_set_global(s, limit));
  std::vector<GlobalGet> gets;
  for (const auto& s : o.get_globals) {
    const auto eq = s.find('=');
    GlobalGet g{s.substr(0, eq), eq == std::string::npos ? "" : s.substr(eq + 1)};
    if (g.name.empty() || (eq != std::string::npos && g.path.empty()))
      fail("--get-global " + s + ": expected NAME[=FILE]");
    gets.push_back(std::move(g));
  }
  const bool session_run = !sets.empty() || !gets.empty();

  std::optional<client::Lease> lease;
  if (o.lease_id != 0) {
    lease.emplace(client::Lease::adopt(conn, o.lease_id));
  } else {
    uint64_t vram = buffer_bytes + (1u << 20);
    if (!o.vram.empty()) {
      auto v = parse_size(o.vram);
      if (!v || *v == 0) fail("--vram: expected a byte count such as 64MiB");
      vram = *v;
    }
    lease.emplace(value_or_fail(client::LeaseBuilder(conn)
                                    .min_vram(vram)
                                    .lease_secs(o.ttl_s)
                                    .release_on_disconnect()
                                    .acquire()));
  }
  const auto start = std::chrono::steady_clock::now();
  // Outputs by argument index, and the variables read after the run.
  std::map<size_t, wire::Bytes> outputs;
  std::vector<std::pair<const GlobalGet*, wire::Bytes>> got;
  std::optional<Error> err;
  {
    ProgressBar bar("run " + o.kernel);
    client::Session session(*lease);
    if (!session_run) {
      client::SubmitArgs args;
      for (const auto& sp : specs) {
        if (sp.kind == ArgSpec::kScalar) args.push_bytes(sp.data);
        if (sp.kind == ArgSpec::kIn) args.in(sp.data);
        if (sp.kind == ArgSpec::kOut) args.out(sp.size);
        if (sp.kind == ArgSpec::kInOut) args.inout(sp.data);
      }
      auto r = session.submit(image, o.kernel, grid, block, args, o.shared, wire::ImageFormat::kPtx,
                              bar.fn());
      if (!r) {
        err = r.error();
      } else {
        for (size_t i = 0; i < specs.size(); ++i) {
          if (const wire::Bytes* d = r->output(static_cast<uint16_t>(i))) outputs[i] = *d;
        }
      }
    } else {
      // A session: the module's variables exist only while it is loaded.
      err = [&]() -> std::optional<Error> {
        auto m = session.module_load(image);
        if (!m) return m.error();
        for (const auto& s : sets) {
          auto g = session.module_global(*m, s.name);
          if (!g) return g.error();
          if (auto w = session.write_global(*g, s.data); !w) return w.error();
        }
        std::vector<client::DeviceBuffer> bufs(specs.size());
        client::KernelArgs args;
        for (size_t i = 0; i < specs.size(); ++i) {
          const auto& sp = specs[i];
          if (sp.kind == ArgSpec::kScalar) {
            args.push_bytes(sp.data);
            continue;
          }
          auto b = session.mem_alloc(sp.size);
          if (!b) return b.error();
          bufs[i] = *b;
          // OUT buffers start zeroed on every backend, as GPU_SUBMIT's do.
          const wire::Bytes zeros = sp.kind == ArgSpec::kOut ? wire::Bytes(sp.size) : wire::Bytes{};
          (void)session.mem_write(*b, 0, sp.kind == ArgSpec::kOut ? zeros : sp.data);
          args.push_buffer(*b);
        }
        (void)session.launch_with_args(*m, o.kernel, grid, block, args, o.shared);
        if (auto s = session.sync(); !s) return s.error();
        for (size_t i = 0; i < specs.size(); ++i) {
          if (specs[i].kind != ArgSpec::kOut && specs[i].kind != ArgSpec::kInOut) continue;
          auto d = session.mem_read(bufs[i], 0, bufs[i].size);
          if (!d) return d.error();
          outputs[i] = std::move(*d);
        }
        for (const auto& g : gets) {
          auto v = session.module_global(*m, g.name);
          if (!v) return v.error();
          auto d = session.read_global(*v);
          if (!d) return d.error();
          got.emplace_back(&g, std::move(*d));
        }
        // A temporary lease takes everything with it; on --lease, clean up.
        if (o.lease_id != 0) {
          for (const auto& b : bufs)
            if (b.handle != 0) (void)session.mem_free(b);
          (void)session.module_unload(*m);
        }
        return std::nullopt;
      }();
    }
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (o.lease_id != 0) {
    lease->detach();
  } else {
    (void)lease->release();
  }
  if (err) fail_error(*err);
  nlohmann::json outs = nlohmann::json::array();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].kind != ArgSpec::kOut && specs[i].kind != ArgSpec::kInOut) continue;
    auto it = outputs.find(i);
    if (it == outputs.end()) fail("the node returned no output for argument " + std::to_string(i));
    write_file(specs[i].out_path, it->second);
    outs.push_back({{"arg", i}, {"bytes", it->second.size()}, {"file", specs[i].out_path}});
    if (!o.common.json) {
      std::printf("arg %zu: %zu bytes -> %s\n", i, it->second.size(), specs[i].out_path.c_str());
    }
  }
  nlohmann::json globals = nlohmann::json::array();
  for (const auto& [g, data] : got) {
    nlohmann::json e = {{"name", g->name}, {"bytes", data.size()}};
    if (!g->path.empty()) {
      write_file(g->path, data);
      e["file"] = g->path;
      if (!o.common.json)
        std::printf("%s: %zu bytes -> %s\n", g->name.c_str(), data.size(), g->path.c_str());
    } else {
      e["hex"] = to_hex(data);
      if (!o.common.json) std::printf("%s = %s\n", g->name.c_str(), to_hex(data).c_str());
    }
    globals.push_back(std::move(e));
  }
  if (o.common.json) {
    nlohmann::json j = {{"kernel", o.kernel}, {"elapsed_ms", ms}, {"outputs", outs}};
    if (session_run) j["globals"] = globals;
    print_json(j);
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
                  "Kernel argument, in order: i8|u8|i16|u16|i32|u32|i64|u64:N, "
                  "f16|half|bf16|f32|f64:X, bytes:HEX (a struct by value), in:FILE, "
                  "out:SIZE:FILE, inout:FILE[:OUTFILE]");
  cmd->add_option("--set-global", o->set_globals,
                  "Set a module variable (__constant__/__device__) before the launch: "
                  "NAME=TYPE:V[,V...], NAME=bytes:HEX or NAME=file:PATH");
  cmd->add_option("--get-global", o->get_globals,
                  "Read a module variable after the run: NAME (printed in hex) or NAME=FILE");
  cmd->add_option("--vram", o->vram, "Lease size (default: the buffers plus 1 MiB)");
  cmd->add_option("--ttl", o->ttl_s, "Lease TTL in seconds")->capture_default_str();
  cmd->add_option("--lease", o->lease_id, "Run on this existing lease instead of a temporary one");
  cmd->callback([o] {
    o->common = common_options();
    run_run(*o);
  });
}

}  // namespace gpulease::cli
