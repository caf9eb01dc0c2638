#include "gpulease/client/session.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <type_traits>

namespace gpulease::client {

using wire::Bytes;
using wire::ByteSpan;
using wire::Opcode;
using wire::Status;

namespace {

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// The value's bit pattern, stored little-endian whatever the host order.
template <typename T>
Bytes le_bytes(T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U u = std::bit_cast<U>(v);
  Bytes b(sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) b[i] = std::byte((u >> (8 * i)) & 0xff);
  return b;
}

}  // namespace

// ---- KernelArgs -----------------------------------------------------------------------

KernelArgs& KernelArgs::scalar(const void* p, size_t n) {
  wire::TypedArg a;
  a.kind = wire::TypedArgKind::kScalar;
  a.scalar.resize(n);
  std::memcpy(a.scalar.data(), p, n);
  args_.typed.push_back(std::move(a));
  return *this;
}

KernelArgs& KernelArgs::push_u32(uint32_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_i32(int32_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_u64(uint64_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_i64(int64_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_f32(float v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_f64(double v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
KernelArgs& KernelArgs::push_bytes(ByteSpan bytes) {
  return scalar(bytes.data(), bytes.size());
}

KernelArgs& KernelArgs::push_buffer(const DeviceBuffer& buf, uint64_t offset) {
  wire::TypedArg a;
  a.kind = wire::TypedArgKind::kBuffer;
  a.handle = buf.handle;
  a.offset = offset;
  args_.typed.push_back(std::move(a));
  return *this;
}

// ---- SubmitArgs -----------------------------------------------------------------------

SubmitArgs& SubmitArgs::scalar(const void* p, size_t n) {
  wire::SubmitArg a;
  a.kind = wire::SubmitArgKind::kScalar;
  a.data.resize(n);
  std::memcpy(a.data.data(), p, n);
  args_.push_back(std::move(a));
  return *this;
}

SubmitArgs& SubmitArgs::push_u32(uint32_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
SubmitArgs& SubmitArgs::push_i32(int32_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
SubmitArgs& SubmitArgs::push_u64(uint64_t v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
SubmitArgs& SubmitArgs::push_f32(float v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
SubmitArgs& SubmitArgs::push_f64(double v) {
  auto b = le_bytes(v);
  return scalar(b.data(), b.size());
}
SubmitArgs& SubmitArgs::push_bytes(ByteSpan bytes) {
  return scalar(bytes.data(), bytes.size());
}

SubmitArgs& SubmitArgs::in(ByteSpan data) {
  args_.push_back(wire::SubmitArg{wire::SubmitArgKind::kIn, Bytes(data.begin(), data.end()), 0});
  return *this;
}
SubmitArgs& SubmitArgs::out(uint64_t size) {
  args_.push_back(wire::SubmitArg{wire::SubmitArgKind::kOut, {}, size});
  return *this;
}
SubmitArgs& SubmitArgs::inout(ByteSpan data) {
  args_.push_back(wire::SubmitArg{wire::SubmitArgKind::kInOut, Bytes(data.begin(), data.end()), 0});
  return *this;
}

const Bytes* SubmitResult::output(uint16_t arg_index) const noexcept {
  for (const auto& o : outputs) {
    if (o.arg_index == arg_index) return &o.data;
  }
  return nullptr;
}

// ---- Session ------------------------------------------------------------------------------

Session::Session(const Lease& lease) : lease_(lease.state()) {}
Session::Session(const Lease& lease, Bytes token)
    : lease_(lease.state()), token_(std::move(token)) {}

Session::~Session() {
  if (lease_) reap(true);
}

uint64_t Session::lease_id() const noexcept {
  return lease_->id;
}

// Whether a request may be resent after a reconnect: the opcode table's
// (wire::opcode_info), which the Connection reads when retry_safe is unset.
RequestOptions Session::opts() const {
  RequestOptions o;
  o.lease_id = lease_->id;
  o.token = token_;
  return o;
}

Result<Reply> Session::call(Opcode op, Bytes payload, std::string_view what) {
  auto r = lease_->conn.call(op, std::move(payload), opts());
  if (!r) return with_context(std::move(r).error(), what);
  return r;
}

void Session::track(std::string what, PendingReply reply) {
  pending_.push_back(PendingOp{std::move(what), std::move(reply)});
  reap(false);
}

void Session::reap(bool all) {
  while (!pending_.empty()) {
    PendingOp& op = pending_.front();
    if (!all && !op.reply.ready()) break;
    auto r = op.reply.wait();
    if (!r && !deferred_) deferred_ = with_context(std::move(r).error(), op.what);
    pending_.pop_front();
  }
}

Result<void> Session::take_deferred_error() {
  if (!deferred_) return {};
  Error e = std::move(*deferred_);
  deferred_.reset();
  return e;
}

Result<DeviceBuffer> Session::mem_alloc(uint64_t size) {
  std::string what = "MEM_ALLOC " + std::to_string(size) + " bytes";
  auto r = call(Opcode::kMemAlloc, wire::encode_payload(wire::MemAllocRequest{size}), what);
  if (!r) return std::move(r).error();
  auto m = Connection::decode_reply_as<wire::HandleReply>(Opcode::kMemAlloc, r->payload);
  if (!m) return with_context(std::move(m).error(), what);
  return DeviceBuffer{m->handle, size};
}

Result<void> Session::mem_free(DeviceBuffer buf) {
  auto r = call(Opcode::kMemFree, wire::encode_payload(wire::HandleRequest{buf.handle}),
                "MEM_FREE buffer " + hex(buf.handle));
  if (!r) return std::move(r).error();
  return {};
}

Result<void> Session::mem_write(const DeviceBuffer& buf, uint64_t offset, ByteSpan data,
                                ProgressFn progress) {
  const size_t chunk = lease_->conn.chunk_bytes();
  const uint64_t total = data.size();
  size_t at = 0;
  do {
    const size_t n = std::min(chunk, data.size() - at);
    // MEM_WRITE payload: handle u64, offset u64, data (rest).
    Bytes payload;
    payload.reserve(16 + n);
    wire::ByteWriter w(payload);
    w.u64(buf.handle);
    w.u64(offset + at);
    w.raw(data.subspan(at, n));
    RequestOptions o = opts();
    if (progress) {
      // `done` counts the whole payload, including the 16-byte handle and offset.
      o.progress = [progress, at, total](uint64_t done, uint64_t) {
        progress(at + (done > 16 ? done - 16 : 0), total);
      };
    }
    auto pending = lease_->conn.send(Opcode::kMemWrite, std::move(payload), std::move(o));
    track("MEM_WRITE buffer " + hex(buf.handle) + " (" + std::to_string(n) + " bytes at offset " +
              std::to_string(offset + at) + ")",
          std::move(pending));
    at += n;
  } while (at < data.size());
  return {};
}

Result<Bytes> Session::mem_read(const DeviceBuffer& buf, uint64_t offset, uint64_t length,
                                ProgressFn progress) {
  const uint64_t chunk = lease_->conn.chunk_bytes();
  struct Part {
    uint64_t at;
    uint32_t n;
    PendingReply reply;
  };
  std::vector<Part> parts;
  uint64_t at = 0;
  do {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chunk, length - at));
    auto pending = lease_->conn.send(
        Opcode::kMemRead, wire::encode_payload(wire::MemReadRequest{buf.handle, offset + at, n}),
        opts());
    parts.push_back(Part{at, n, std::move(pending)});
    at += n;
  } while (at < length);
  // Earlier pipelined ops ran before these reads on the node; their first
  // error is the one to report.
  reap(true);
  Bytes out;
  out.reserve(length);
  std::optional<Error> err;
  for (auto& p : parts) {
    auto r = p.reply.wait();
    if (err) continue;
    std::string what = "MEM_READ buffer " + hex(buf.handle) + " (" + std::to_string(p.n) +
                       " bytes at offset " + std::to_string(offset + p.at) + ")";
    if (!r) {
      err = with_context(std::move(r).error(), what);
      continue;
    }
    if (r->payload.size() != p.n) {
      err = make_error(Status::kBadFrame,
                       what + ": reply has " + std::to_string(r->payload.size()) + " bytes");
      continue;
    }
    out.insert(out.end(), r->payload.begin(), r->payload.end());
    if (progress) progress(out.size(), length);
  }
  if (auto d = take_deferred_error(); !d) return std::move(d).error();
  if (err) return std::move(*err);
  return out;
}

Result<Module> Session::module_load(ByteSpan image, ImageFormat format) {
  if (image.empty()) return make_error(Status::kInvalidArgument, "MODULE_LOAD: empty image");
  wire::ModuleLoadRequest req{format, Bytes(image.begin(), image.end())};
  std::string what = "MODULE_LOAD (" + std::to_string(image.size()) + " bytes)";
  auto r = call(Opcode::kModuleLoad, wire::encode_payload(req), what);
  if (!r) return std::move(r).error();
  auto m = Connection::decode_reply_as<wire::HandleReply>(Opcode::kModuleLoad, r->payload);
  if (!m) return with_context(std::move(m).error(), what);
  return Module{m->handle};
}

Result<void> Session::module_unload(Module module) {
  auto r = call(Opcode::kModuleUnload, wire::encode_payload(wire::HandleRequest{module.handle}),
                "MODULE_UNLOAD module " + hex(module.handle));
  if (!r) return std::move(r).error();
  return {};
}

Result<ModuleGlobal> Session::module_global(const Module& module, std::string_view name) {
  std::string what = "MODULE_GLOBAL '" + std::string(name) + "' of module " + hex(module.handle);
  if (name.empty()) return make_error(Status::kInvalidArgument, what + ": empty name");
  auto r =
      call(Opcode::kModuleGlobal,
           wire::encode_payload(wire::ModuleGlobalRequest{module.handle, std::string(name)}), what);
  if (!r) return std::move(r).error();
  auto m = Connection::decode_reply_as<wire::ModuleGlobalReply>(Opcode::kModuleGlobal, r->payload);
  if (!m) return with_context(std::move(m).error(), what);
  return ModuleGlobal{m->handle, m->size, m->space, std::string(name)};
}

Result<void> Session::write_global(const ModuleGlobal& var, ByteSpan data, uint64_t offset) {
  if (offset > var.size || data.size() > var.size - offset) {
    return make_error(Status::kInvalidArgument, "write of " + std::to_string(data.size()) +
                                                    " bytes at offset " + std::to_string(offset) +
                                                    " into variable '" + var.name + "' of " +
                                                    std::to_string(var.size) + " bytes");
  }
  if (data.empty()) return {};
  return mem_write(var.buffer(), offset, data);
}

Result<Bytes> Session::read_global(const ModuleGlobal& var) {
  if (var.size == 0) {
    if (auto f = flush(); !f) return std::move(f).error();
    return Bytes{};
  }
  return mem_read(var.buffer(), 0, var.size);
}

Result<void> Session::launch(const Module& module, std::string_view kernel, Dim3 grid, Dim3 block,
                             ByteSpan args, std::span<const uint32_t> arg_sizes,
                             uint32_t shared_bytes) {
  uint64_t sum = 0;
  for (uint32_t s : arg_sizes) {
    if (s == 0)
      return make_error(Status::kInvalidArgument,
                        "LAUNCH '" + std::string(kernel) + "': an argument size is 0");
    sum += s;
  }
  if (sum != args.size()) {
    return make_error(Status::kInvalidArgument, "LAUNCH '" + std::string(kernel) +
                                                    "': argument sizes add up to " +
                                                    std::to_string(sum) + " bytes but " +
                                                    std::to_string(args.size()) + " were given");
  }
  wire::KernelArgs ka;
  ka.form = wire::ArgForm::kRaw;
  ka.raw_sizes.assign(arg_sizes.begin(), arg_sizes.end());
  ka.raw_blob.assign(args.begin(), args.end());
  wire::LaunchRequest req{module.handle, std::string(kernel), grid,
                          block,         shared_bytes,        std::move(ka)};
  if (req.kernel.empty()) return make_error(Status::kInvalidArgument, "LAUNCH: empty kernel name");
  auto pending = lease_->conn.send(Opcode::kLaunch, wire::encode_payload(req), opts());
  track("LAUNCH '" + req.kernel + "' (op " + std::to_string(++op_seq_) + ")", std::move(pending));
  return {};
}

Result<void> Session::launch_with_args(const Module& module, std::string_view kernel, Dim3 grid,
                                       Dim3 block, const KernelArgs& args, uint32_t shared_bytes) {
  wire::LaunchRequest req{module.handle, std::string(kernel), grid,
                          block,         shared_bytes,        args.wire_args()};
  if (req.kernel.empty()) return make_error(Status::kInvalidArgument, "LAUNCH: empty kernel name");
  auto pending = lease_->conn.send(Opcode::kLaunch, wire::encode_payload(req), opts());
  track("LAUNCH '" + req.kernel + "' (op " + std::to_string(++op_seq_) + ")", std::move(pending));
  return {};
}

Result<uint64_t> Session::sync() {
  auto pending = lease_->conn.send(Opcode::kSync, wire::encode_payload(wire::Empty{}), opts());
  reap(true);
  auto r = pending.wait();
  if (auto d = take_deferred_error(); !d) return std::move(d).error();
  if (!r) return with_context(std::move(r).error(), "SYNC");
  auto m = Connection::decode_reply_as<wire::SyncReply>(Opcode::kSync, r->payload);
  if (!m) return with_context(std::move(m).error(), "SYNC");
  return m->completed;
}

Result<void> Session::flush() {
  reap(true);
  return take_deferred_error();
}

Result<SubmitResult> Session::submit(ByteSpan image, std::string_view kernel, Dim3 grid, Dim3 block,
                                     const SubmitArgs& args, uint32_t shared_bytes,
                                     ImageFormat format, ProgressFn progress) {
  wire::GpuSubmitRequest req;
  req.format = format;
  req.image.assign(image.begin(), image.end());
  req.kernel = std::string(kernel);
  req.grid = grid;
  req.block = block;
  req.shared_bytes = shared_bytes;
  req.args = args.args();
  const std::string what = "GPU_SUBMIT '" + req.kernel + "'";
  RequestOptions o = opts();
  o.progress = std::move(progress);
  auto r = lease_->conn.call(Opcode::kGpuSubmit, wire::encode_payload(req), std::move(o));
  if (!r) return with_context(std::move(r).error(), what);
  auto m = Connection::decode_reply_as<wire::GpuSubmitReply>(Opcode::kGpuSubmit, r->payload);
  if (!m) return with_context(std::move(m).error(), what);
  return SubmitResult{std::move(m->outputs)};
}

Result<SubmitResult> submit(const Lease& lease, ByteSpan image, std::string_view kernel, Dim3 grid,
                            Dim3 block, const SubmitArgs& args, uint32_t shared_bytes) {
  Session s(lease);
  return s.submit(image, kernel, grid, block, args, shared_bytes);
}

}  // namespace gpulease::client
