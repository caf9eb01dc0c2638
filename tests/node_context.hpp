// A DeviceContext whose every operation travels over TCP to a real node (sim
// backend) as protocol frames: MEM_ALLOC, MEM_WRITE, MODULE_LOAD, LAUNCH (raw
// arguments, as the recipes send them), SYNC, MEM_READ, MODULE_GLOBAL. Compiling the sim
// kernel suite against it (GPULEASE_KERNELS_THROUGH_NODE) runs every kernel in
// kernels/ through the node and checks it against the same C++ references.
#pragma once

#include "server_test_util.hpp"

namespace gpulease::testing {

class NodeContext : public server::DeviceContext {
 public:
  NodeContext() : node_(config()), client_(node_.port()), token_(node_.token("kernels")) {
    lease_ = acquire(client_, token_, 256ull << 20, 600);
  }

  static server::NodeConfig config() {
    auto c = TestNode::small_config();
    c.sim_device_bytes = 1ull << 30;
    c.instruction_budget = 0;  // the backend's default, as in the direct suite
    return c;
  }

  Result<uint64_t> mem_alloc(uint64_t bytes) override {
    auto r = client_.call(Opcode::kMemAlloc, lease_, token_, wire::MemAllocRequest{bytes});
    if (r.status() != Status::kOk) return make_error(r.status(), r.message());
    return r.as<wire::HandleReply>().handle;
  }
  void mem_free_async(uint64_t addr, Completion done) override {
    done(status_of(client_.call(Opcode::kMemFree, lease_, token_, wire::HandleRequest{addr})));
  }
  // The node checks ranges against the buffer a handle names: the tests pass
  // buffer base addresses, so the handle is the address itself.
  void mem_write_async(uint64_t addr, std::span<const std::byte> data, Completion done) override {
    wire::MemWriteRequest w{addr, 0, Bytes(data.begin(), data.end())};
    done(status_of(client_.call(Opcode::kMemWrite, lease_, token_, w)));
  }
  void mem_read_async(uint64_t addr, std::span<std::byte> out, Completion done) override {
    done(read(addr, out));
  }
  Result<void> read(uint64_t addr, std::span<std::byte> out) {
    auto r = client_.call(Opcode::kMemRead, lease_, token_,
                          wire::MemReadRequest{addr, 0, static_cast<uint32_t>(out.size())});
    if (r.status() != Status::kOk) return make_error(r.status(), r.message());
    if (r.payload.size() != out.size()) return make_error(Status::kInternal, "short read");
    std::copy(r.payload.begin(), r.payload.end(), out.begin());
    return {};
  }
  Result<uint64_t> module_load(server::ImageKind kind, std::span<const std::byte> image) override {
    wire::ModuleLoadRequest m{static_cast<wire::ImageFormat>(kind),
                              Bytes(image.begin(), image.end())};
    auto r = client_.call(Opcode::kModuleLoad, lease_, token_, m);
    if (r.status() != Status::kOk) return make_error(r.status(), r.message());
    return r.as<wire::HandleReply>().handle;
  }
  Result<void> module_unload(uint64_t module) override {
    return status_of(
        client_.call(Opcode::kModuleUnload, lease_, token_, wire::HandleRequest{module}));
  }
  Result<server::ModuleVariable> module_global(uint64_t module, std::string_view name) override {
    auto r = client_.call(Opcode::kModuleGlobal, lease_, token_,
                          wire::ModuleGlobalRequest{module, std::string(name)});
    if (r.status() != Status::kOk) return make_error(r.status(), r.message());
    auto g = r.as<wire::ModuleGlobalReply>();
    return server::ModuleVariable{g.handle, g.size, static_cast<server::VariableSpace>(g.space)};
  }
  Result<void> launch(const server::LaunchRequest& req) override {
    wire::LaunchRequest l;
    l.module = req.module;
    l.kernel = req.kernel;
    l.grid = req.grid;
    l.block = req.block;
    l.shared_bytes = req.shared_bytes;
    l.args.form = wire::ArgForm::kRaw;
    for (const auto& a : req.args) {
      l.args.raw_sizes.push_back(static_cast<uint32_t>(a.size()));
      l.args.raw_blob.insert(l.args.raw_blob.end(), a.begin(), a.end());
    }
    return status_of(client_.call(Opcode::kLaunch, lease_, token_, l));
  }
  void sync(std::function<void(Result<void>)> done) override {
    done(status_of(client_.call(Opcode::kSync, lease_, token_, wire::Empty{})));
  }
  bool faulted() const override {
    auto r =
        const_cast<RawClient&>(client_).call(Opcode::kLeaseQuery, lease_, token_, wire::Empty{});
    return r.status() == Status::kOk && r.as<wire::LeaseInfo>().state == wire::LeaseState::kFaulted;
  }

 private:
  static Result<void> status_of(const RawReply& r) {
    if (r.status() != Status::kOk) return make_error(r.status(), r.message());
    return {};
  }

  TestNode node_;
  RawClient client_;
  Bytes token_;
  uint64_t lease_ = 0;
};

}  // namespace gpulease::testing
