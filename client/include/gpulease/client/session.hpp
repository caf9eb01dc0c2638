// A session on a lease: device memory and modules that persist across kernel
// launches (ops 0x0601-0x0608), module variables (MODULE_GLOBAL) and the
// one-shot GPU_SUBMIT.
//
//   Session s(lease);
//   DeviceBuffer buf = unwrap(s.mem_alloc(n * 4));
//   s.mem_write(buf, 0, std::as_bytes(std::span(host)));           // pipelined
//   Module m = unwrap(s.module_load(ptx));
//   s.launch_with_args(m, "scale", grid, block,
//                      KernelArgs().push_buffer(buf).push_i32(n).push_f32(2.0f));  // pipelined
//   unwrap(s.sync());   // waits for every launch; the first failure of any
//                       // pipelined op surfaces here, naming the op
//   auto out = unwrap(s.mem_read(buf, 0, n * 4));
//
// Pipelining: mem_write and launch return once their request is written;
// their replies are collected later. The first error among them is reported
// by the next sync(), mem_read() or flush() as "<OP> ...: <node message>"
// with the node's status. mem_alloc, mem_free, module_load, module_unload and
// submit wait for their own reply (they return a value or need one).
// Large mem_write / mem_read are split into chunks (Connection::chunk_bytes)
// that are in flight together.
//
// A Session is a light handle: several may exist on one lease (e.g. one per
// thread, or one that presents a scoped token). THREAD SAFETY: one Session
// must be used by one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpulease/client/connection.hpp"
#include "gpulease/client/lease.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::client {

using Dim3 = wire::Dim3;
using wire::ImageFormat;

// A device buffer of a lease. The handle IS the buffer's device address
// (a raw kernel argument carries it as an 8-byte little-endian pointer).
struct DeviceBuffer {
  uint64_t handle = 0;
  uint64_t size = 0;
  [[nodiscard]] uint64_t address() const noexcept { return handle; }
  bool operator==(const DeviceBuffer&) const = default;
};

struct Module {
  uint64_t handle = 0;
  bool operator==(const Module&) const = default;
};

// A module-scope variable of a loaded module (a CUDA __constant__ or
// __device__ variable), from Session::module_global. Its handle is the
// variable's device address: mem_write/mem_read take it through buffer(),
// and a kernel takes it as a pointer (KernelArgs::push_buffer(g.buffer())).
// It stays valid until its module is unloaded.
struct ModuleGlobal {
  uint64_t handle = 0;
  uint64_t size = 0;
  wire::GlobalSpace space = wire::GlobalSpace::kGlobal;
  std::string name;
  [[nodiscard]] bool is_const() const noexcept { return space == wire::GlobalSpace::kConst; }
  // The variable as a buffer of its size, for mem_write/mem_read/push_buffer.
  [[nodiscard]] DeviceBuffer buffer() const noexcept { return DeviceBuffer{handle, size}; }
  bool operator==(const ModuleGlobal&) const = default;
};

// Kernel arguments in order, sent in the protocol's typed form: scalars as
// their little-endian bytes, buffers as (handle, offset) so the node checks
// each one against the lease's own buffers before the launch.
class KernelArgs {
 public:
  KernelArgs& push_u32(uint32_t v);
  KernelArgs& push_i32(int32_t v);
  KernelArgs& push_u64(uint64_t v);
  KernelArgs& push_i64(int64_t v);
  KernelArgs& push_f32(float v);
  KernelArgs& push_f64(double v);
  // A scalar of any size 1..256 (a struct passed by value), as given.
  KernelArgs& push_bytes(wire::ByteSpan bytes);
  KernelArgs& push_buffer(const DeviceBuffer& buf, uint64_t offset = 0);

  [[nodiscard]] size_t size() const noexcept { return args_.typed.size(); }
  [[nodiscard]] const wire::KernelArgs& wire_args() const noexcept { return args_; }

 private:
  KernelArgs& scalar(const void* p, size_t n);
  wire::KernelArgs args_{wire::ArgForm::kTyped, {}, {}, {}};
};

// Arguments of a one-shot GPU_SUBMIT: scalars, and buffers the node creates
// for the call (in: uploaded; out: zero-filled and returned; inout: both).
class SubmitArgs {
 public:
  SubmitArgs& push_u32(uint32_t v);
  SubmitArgs& push_i32(int32_t v);
  SubmitArgs& push_u64(uint64_t v);
  SubmitArgs& push_f32(float v);
  SubmitArgs& push_f64(double v);
  SubmitArgs& push_bytes(wire::ByteSpan bytes);
  SubmitArgs& in(wire::ByteSpan data);
  SubmitArgs& out(uint64_t size);
  SubmitArgs& inout(wire::ByteSpan data);

  [[nodiscard]] const std::vector<wire::SubmitArg>& args() const noexcept { return args_; }

 private:
  SubmitArgs& scalar(const void* p, size_t n);
  std::vector<wire::SubmitArg> args_;
};

// Outputs of a GPU_SUBMIT, one per out/inout argument, in argument order.
struct SubmitResult {
  std::vector<wire::SubmitOutput> outputs;
  // The output of argument `arg_index`; nullptr when it has none.
  [[nodiscard]] const wire::Bytes* output(uint16_t arg_index) const noexcept;
};

class Session {
 public:
  explicit Session(const Lease& lease);
  // A session whose frames present `token` instead of the connection's
  // (e.g. a scoped grant from request_scoped_token()).
  Session(const Lease& lease, wire::Bytes token);
  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Waits for outstanding pipelined replies (their errors are dropped).
  ~Session();

  [[nodiscard]] uint64_t lease_id() const noexcept;

  [[nodiscard]] Result<DeviceBuffer> mem_alloc(uint64_t size);
  [[nodiscard]] Result<void> mem_free(DeviceBuffer buf);
  // Pipelined. REQUIRES: `data` stays unchanged only until the call returns
  // (it is copied into the request).
  Result<void> mem_write(const DeviceBuffer& buf, uint64_t offset, wire::ByteSpan data,
                         ProgressFn progress = {});
  template <typename T>
  Result<void> mem_write_span(const DeviceBuffer& buf, uint64_t offset, std::span<const T> data) {
    return mem_write(buf, offset, std::as_bytes(data));
  }
  // Waits for earlier pipelined ops first: their first error wins.
  [[nodiscard]] Result<wire::Bytes> mem_read(const DeviceBuffer& buf, uint64_t offset,
                                             uint64_t length, ProgressFn progress = {});

  [[nodiscard]] Result<Module> module_load(wire::ByteSpan image,
                                           ImageFormat format = ImageFormat::kPtx);
  [[nodiscard]] Result<void> module_unload(Module module);

  // MODULE_GLOBAL: the module's variable `name` (cuModuleGetGlobal).
  // INVALID_ARGUMENT when the module declares no such variable.
  //
  //   ModuleGlobal coeffs = unwrap(s.module_global(m, "kCoeffs"));
  //   s.write_global(coeffs, std::as_bytes(std::span(host_coeffs)));  // pipelined
  //   ... launch, sync ...
  //   wire::Bytes v = unwrap(s.read_global(counter));
  [[nodiscard]] Result<ModuleGlobal> module_global(const Module& module, std::string_view name);
  // Pipelined MEM_WRITE into the variable. INVALID_ARGUMENT, unsent, when
  // offset + data.size() exceeds its size.
  Result<void> write_global(const ModuleGlobal& var, wire::ByteSpan data, uint64_t offset = 0);
  // MEM_READ of the whole variable (after earlier pipelined ops).
  [[nodiscard]] Result<wire::Bytes> read_global(const ModuleGlobal& var);

  // Pipelined. Raw argument form, as in the recipes: `args` is the
  // concatenation of each argument's bytes, `arg_sizes` their sizes.
  // The returned Result fails only for arguments that cannot be encoded.
  Result<void> launch(const Module& module, std::string_view kernel, Dim3 grid, Dim3 block,
                      wire::ByteSpan args, std::span<const uint32_t> arg_sizes,
                      uint32_t shared_bytes = 0);
  // Pipelined. Typed arguments (see KernelArgs).
  Result<void> launch_with_args(const Module& module, std::string_view kernel, Dim3 grid,
                                Dim3 block, const KernelArgs& args, uint32_t shared_bytes = 0);

  // SYNC: waits until every launch queued before it has completed. Returns
  // the first error of any pipelined op since the last report, else the
  // SYNC's own (SYNC_FAILED names the faulting kernel), else the number of
  // launches completed on the lease.
  [[nodiscard]] Result<uint64_t> sync();
  // Waits for the replies of every pipelined op (not for kernels to finish)
  // and reports the first error among them.
  [[nodiscard]] Result<void> flush();

  // GPU_SUBMIT: load, run once and collect outputs in one round trip; the
  // node frees everything before it answers.
  [[nodiscard]] Result<SubmitResult> submit(wire::ByteSpan image, std::string_view kernel,
                                            Dim3 grid, Dim3 block, const SubmitArgs& args,
                                            uint32_t shared_bytes = 0,
                                            ImageFormat format = ImageFormat::kPtx,
                                            ProgressFn progress = {});

  // Pipelined ops whose replies have not been collected yet.
  [[nodiscard]] size_t pending_ops() const noexcept { return pending_.size(); }

 private:
  struct PendingOp {
    std::string what;
    PendingReply reply;
  };
  RequestOptions opts() const;
  Result<Reply> call(wire::Opcode op, wire::Bytes payload, std::string_view what);
  void track(std::string what, PendingReply reply);
  // Collects finished (or, when `all`, every) pipelined replies, keeping the
  // first error.
  void reap(bool all);
  Result<void> take_deferred_error();

  std::shared_ptr<detail::LeaseState> lease_;
  wire::Bytes token_;  // empty = the connection's
  std::deque<PendingOp> pending_;
  std::optional<Error> deferred_;
  uint64_t op_seq_ = 0;
};

// One-shot GPU_SUBMIT on a lease (a Session for one call).
[[nodiscard]] Result<SubmitResult> submit(const Lease& lease, wire::ByteSpan image,
                                          std::string_view kernel, Dim3 grid, Dim3 block,
                                          const SubmitArgs& args, uint32_t shared_bytes = 0);

}  // namespace gpulease::client
