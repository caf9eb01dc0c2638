// What every recipe program shares: --node / --token flags (or the
// GPULEASE_NODE / GPULEASE_TOKEN environment), connecting, and reading PTX
// from kernels/ptx (--ptx-dir; the source tree's by default).
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gpulease/client/client.hpp"

namespace example {

namespace gl = gpulease::client;

struct Common {
  std::string node;
  std::string token;
  std::string token_file;
  std::string ptx_dir = GPULEASE_PTX_DIR;
};

inline void add_common(CLI::App& app, Common& c) {
  app.add_option("--node", c.node, "Node HOST:PORT (default: $GPULEASE_NODE, else 127.0.0.1:7070)");
  app.add_option("--token", c.token, "Capability token glt1.... (default: $GPULEASE_TOKEN)");
  app.add_option("--token-file", c.token_file, "File holding the token");
  app.add_option("--ptx-dir", c.ptx_dir, "Directory of the PTX kernels")->capture_default_str();
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string ptx(const Common& c, const std::string& name) {
  return read_file(c.ptx_dir + "/" + name);
}

inline gl::ConnectOptions connect_options(const Common& c) {
  std::string node = c.node;
  if (node.empty() && std::getenv("GPULEASE_NODE") != nullptr) node = std::getenv("GPULEASE_NODE");
  if (node.empty()) node = "127.0.0.1:7070";
  std::string token = c.token;
  if (token.empty() && !c.token_file.empty()) token = read_file(c.token_file);
  if (token.empty() && std::getenv("GPULEASE_TOKEN") != nullptr)
    token = std::getenv("GPULEASE_TOKEN");
  if (token.empty()) throw std::runtime_error("no token: pass --token or set GPULEASE_TOKEN");
  gl::ConnectOptions o;
  o.node = gl::unwrap(gl::NodeAddress::parse(node));
  o.token = gl::unwrap(gl::token_from_text(token));
  return o;
}

inline gl::Connection connect(const Common& c) {
  return gl::unwrap(gl::Connection::connect(connect_options(c)));
}

// Runs `body`; a ClientError (or any exception) becomes a message and exit
// status 1. The recipes use unwrap(), so failures read as exceptions here.
template <typename F>
int run_main(const char* name, F&& body) {
  try {
    return body();
  } catch (const gl::ClientError& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
  }
  return 1;
}

// The bytes of a vector of plain values (this host's byte order, which is the
// little-endian order the kernels read on every supported host).
template <typename T>
gpulease::wire::Bytes to_bytes(const std::vector<T>& v) {
  gpulease::wire::Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// CPU reference of kernels/infer.cu: y = relu(W x + b), W row-major
// out_dim x in_dim, each dot product one fma chain in order, as the kernel.
inline std::vector<float> infer_reference(const std::vector<float>& w, const std::vector<float>& b,
                                          const std::vector<float>& x, uint32_t in_dim,
                                          uint32_t out_dim) {
  std::vector<float> y(out_dim);
  for (uint32_t o = 0; o < out_dim; ++o) {
    float acc = 0.0f;
    for (uint32_t k = 0; k < in_dim; ++k) acc = std::fma(w[size_t{o} * in_dim + k], x[k], acc);
    acc += b[o];
    y[o] = acc > 0.0f ? acc : 0.0f;
  }
  return y;
}

}  // namespace example
