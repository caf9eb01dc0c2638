// Test helper: one sim backend and context, with typed upload/download,
// argument packing and a blocking sync. Used by the sim_* and ptx_* tests.
#pragma once

#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpulease/sim/sim_backend.hpp"
#ifdef GPULEASE_KERNELS_THROUGH_NODE
#include "node_context.hpp"
#endif

namespace gpulease::sim::testing {

inline std::string read_ptx(const std::string& name) {
  std::ifstream f(std::string(GPULEASE_PTX_DIR) + "/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Kernel arguments, each packed as the exact bytes of one parameter.
class Args {
 public:
  template <typename T>
  Args& add(T v) {
    std::vector<std::byte> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    v_.push_back(std::move(b));
    return *this;
  }
  std::vector<std::vector<std::byte>> take() { return std::move(v_); }

 private:
  std::vector<std::vector<std::byte>> v_;
};

inline Result<void> wait_sync(server::DeviceContext& ctx) {
  std::promise<Result<void>> p;
  auto f = p.get_future();
  ctx.sync([&p](Result<void> r) { p.set_value(std::move(r)); });
  return f.get();
}

class Harness {
 public:
  explicit Harness(server::ContextOptions opts = {}, SimConfig cfg = small_config())
      : backend_(make_sim_backend(cfg)) {
#ifdef GPULEASE_KERNELS_THROUGH_NODE
    // Every op as a protocol frame through a real node (tests/node_context.hpp).
    (void)opts;
    ctx_ = std::make_unique<gpulease::testing::NodeContext>();
#else
    auto c = backend_->create_context(0, opts);
    EXPECT_TRUE(c.ok());
    ctx_ = std::move(c).value();
#endif
  }

  static SimConfig small_config() {
    SimConfig c;
    c.worker_threads = 2;
    return c;
  }

  server::DeviceBackend& backend() {
    return *backend_;
  }
  server::DeviceContext& ctx() {
    return *ctx_;
  }

  uint64_t load(const std::string& text) {
    auto m = ctx_->module_load(server::ImageKind::kPtx, as_bytes(text));
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    return m.ok() ? *m : 0;
  }
  uint64_t load_file(const std::string& name) {
    return load(read_ptx(name));
  }

  uint64_t alloc(uint64_t bytes) {
    auto a = ctx_->mem_alloc(bytes);
    EXPECT_TRUE(a.ok());
    return a.ok() ? *a : 0;
  }
  template <typename T>
  uint64_t upload(const std::vector<T>& v) {
    const uint64_t a = alloc(std::max<uint64_t>(1, v.size() * sizeof(T)));
    if (!v.empty()) {
      EXPECT_TRUE(
          ctx_->mem_write(a, {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)})
              .ok());
    }
    return a;
  }
  template <typename T>
  std::vector<T> download(uint64_t addr, size_t n) {
    std::vector<T> v(n);
    if (n != 0) {
      EXPECT_TRUE(
          ctx_->mem_read(addr, {reinterpret_cast<std::byte*>(v.data()), n * sizeof(T)}).ok());
    }
    return v;
  }

  Result<void> launch(uint64_t module, const std::string& kernel, std::array<uint32_t, 3> grid,
                      std::array<uint32_t, 3> block, Args args, uint32_t shared = 0) {
    server::LaunchRequest r;
    r.module = module;
    r.kernel = kernel;
    r.grid = grid;
    r.block = block;
    r.shared_bytes = shared;
    r.args = args.take();
    return ctx_->launch(r);
  }
  // Launches and waits; returns the sync result (or the launch error).
  Result<void> run(uint64_t module, const std::string& kernel, std::array<uint32_t, 3> grid,
                   std::array<uint32_t, 3> block, Args args, uint32_t shared = 0) {
    auto l = launch(module, kernel, grid, block, std::move(args), shared);
    if (!l.ok()) return l;
    return sync();
  }
  Result<void> sync() {
    return wait_sync(*ctx_);
  }

 private:
  std::unique_ptr<server::DeviceBackend> backend_;
  std::unique_ptr<server::DeviceContext> ctx_;
};

inline uint32_t blocks_for(uint64_t n, uint32_t block) {
  return static_cast<uint32_t>((n + block - 1) / block);
}

}  // namespace gpulease::sim::testing
