// The lease executor's ops (leases/lease_executor.hpp). Every method runs on
// the lease's strand and returns without waiting for the device.
#include "leases/lease_executor.hpp"

#include <xxhash.h>
#include <asio/post.hpp>

#include <mutex>
#include <optional>

#include "lease.hpp"
#include "log.hpp"
#include "replies.hpp"

namespace gpulease::server {

using wire::Bytes;
using wire::ByteSpan;
using wire::Opcode;
using wire::Status;

namespace {

bool in_range(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// Checks launch geometry against the protocol limits and the device's.
Result<void> check_geometry(const wire::Dim3& grid, const wire::Dim3& block, uint32_t shared,
                            const wire::Limits& lim, const DeviceInfo& dev) {
  uint64_t threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (grid[i] == 0 || block[i] == 0)
      return make_error(Status::kLaunchFailed, "grid and block dimensions must be >= 1");
    if (grid[i] > std::min(lim.max_grid[i], dev.max_grid[i])) {
      return make_error(Status::kLaunchFailed, "grid dimension " + std::to_string(i) + " of " +
                                                   std::to_string(grid[i]) +
                                                   " exceeds the device limit");
    }
    if (block[i] > std::min(lim.max_block[i], dev.max_block[i])) {
      return make_error(Status::kLaunchFailed, "block dimension " + std::to_string(i) + " of " +
                                                   std::to_string(block[i]) +
                                                   " exceeds the device limit");
    }
    threads *= block[i];
  }
  if (threads > std::min(lim.max_threads_per_block, dev.max_threads_per_block)) {
    return make_error(Status::kLaunchFailed,
                      "too many threads per block: " + std::to_string(threads));
  }
  if (shared > std::min(lim.max_shared_bytes, dev.max_shared_per_block)) {
    return make_error(Status::kLaunchFailed, "dynamic shared memory of " + std::to_string(shared) +
                                                 " bytes exceeds the device limit");
  }
  return {};
}

Bytes le64(uint64_t v) {
  Bytes b(8);
  wire::store_le64(b.data(), v);
  return b;
}

}  // namespace

LeaseExecutor::LeaseExecutor(Lease& lease, ExecutorEnv env, const DeviceInfo& device,
                             DeviceStrand strand, std::unique_ptr<DeviceContext> ctx)
    : lease_(lease),
      env_(env),
      device_(device),
      strand_(std::move(strand)),
      ctx_(std::move(ctx)),
      replay_(env.cfg.replay_window) {}

void LeaseExecutor::post(const wire::FrameHeader& h, std::shared_ptr<Bytes> body,
                         size_t payload_offset, ReplyFn reply) {
  const ByteSpan payload(body->data() + payload_offset, h.payload_len);
  if (runs_inline(h, payload)) {
    std::unique_lock lk(run_mu_, std::try_to_lock);
    // Nothing of the lease queued or running: this op is next in its order.
    // One that would copy out a loan first runs on the strand: the copy
    // never holds a network thread.
    if (lk.owns_lock() && queued_.load() == 0 && !(changes_lent_memory(h.opcode) && loans_out())) {
      run(Op{h, payload, std::move(body), std::move(reply)});
      return;
    }
  }
  defer([this, h, payload, body = std::move(body), reply = std::move(reply)]() mutable {
    run(Op{h, payload, std::move(body), std::move(reply)});
  });
}

bool LeaseExecutor::runs_inline(const wire::FrameHeader& h, ByteSpan payload) {
  switch (h.opcode) {
    case Opcode::kMemAlloc:
    case Opcode::kMemFree:
    case Opcode::kModuleUnload:
    case Opcode::kLaunch:
    case Opcode::kSync:
    case Opcode::kModuleGlobal:  // a lookup in a loaded module
      return true;
    case Opcode::kMemWrite:
      // A small copy costs the network thread less than a hand-off to the
      // device pool (docs/BENCHMARKS.md, issue 11); a bulk one goes to the
      // pool, so the connections that share this network thread wait for
      // no tenant's copy. (Queued behind a launch, the backend runs the copy
      // on its own thread later either way.)
      return payload.size() <= kInlineCopyBytes;
    case Opcode::kMemRead: {
      // Decoded again by mem_read(); a malformed request runs inline and is
      // refused there.
      auto m = wire::decode_payload<wire::MemReadRequest>(payload, wire::Limits{});
      return !m || m->length <= kInlineCopyBytes;
    }
    default:
      return false;  // MODULE_LOAD, GPU_SUBMIT: PTX to parse or compile
  }
}

bool LeaseExecutor::changes_lent_memory(Opcode op) {
  switch (op) {
    case Opcode::kMemWrite:
    case Opcode::kMemFree:
    case Opcode::kModuleUnload:
    case Opcode::kLaunch:
    case Opcode::kGpuSubmit:
      return true;
    default:
      return false;
  }
}

bool LeaseExecutor::loans_out() {
  std::erase_if(loans_, [](const auto& w) { return w.expired(); });
  return !loans_.empty();
}

void LeaseExecutor::revoke_loans() {
  for (auto& weak : loans_) {
    if (auto loan = weak.lock()) {
      loan->revoke(env_.take_buffer ? env_.take_buffer(loan->size()) : Bytes());
      env_.metrics.mem_read_loans_revoked.fetch_add(1, std::memory_order_relaxed);
    }
  }
  loans_.clear();
}

LeaseExecutor::~LeaseExecutor() {
  // The context goes with the executor: no reply may keep its memory.
  revoke_loans();
}

void LeaseExecutor::defer(std::function<void()> fn) {
  queued_.fetch_add(1);
  asio::post(strand_, [this, self = lease_.shared_from_this(), fn = std::move(fn)] {
    std::lock_guard lk(run_mu_);
    fn();
    queued_.fetch_sub(1);
  });
}

void LeaseExecutor::after_queued(std::function<void()> fn) {
  defer(std::move(fn));
}

void LeaseExecutor::end(std::function<void()> done) {
  defer([this, done = std::move(done)] {
    // Destroying the context cancels its launches and frees its memory,
    // modules and stream; replies lent its bytes copy them first.
    revoke_loans();
    ctx_.reset();
    int64_t buffer_bytes = 0;
    for (const auto& [addr, size] : buffers_) buffer_bytes += static_cast<int64_t>(size);
    env_.metrics.mem_alloc_bytes.fetch_sub(buffer_bytes);
    buffers_.clear();
    modules_.clear();
    globals_.clear();
    if (done) done();
  });
}

void LeaseExecutor::run(const Op& op) {
  const std::string id = std::to_string(lease_.id);
  auto st = lease_.state.load();
  if (st == wire::LeaseState::kFaulted)
    return reply_error(op.reply, Status::kLeaseFaulted, "lease " + id + " is faulted; release it");
  if (st != wire::LeaseState::kActive || !ctx_)
    return reply_error(op.reply, Status::kLeaseExpired, "lease " + id + " has ended");
  // A fault seen by the backend outside SYNC poisons the lease for every op
  // but SYNC, which reports its cause.
  if (op.h.opcode != Opcode::kSync && ctx_->faulted()) {
    lease_.state = wire::LeaseState::kFaulted;
    return reply_error(op.reply, Status::kLeaseFaulted,
                       "lease " + id + " is faulted; SYNC reports the cause");
  }
  // A reply still sending from memory this op may change copies it first.
  if (!loans_.empty() && changes_lent_memory(op.h.opcode)) revoke_loans();
  switch (op.h.opcode) {
    case Opcode::kMemAlloc:
      return mem_alloc(op);
    case Opcode::kMemFree:
      return mem_free(op);
    case Opcode::kMemWrite:
      return mem_write(op);
    case Opcode::kMemRead:
      return mem_read(op);
    case Opcode::kModuleLoad:
      return module_load(op);
    case Opcode::kModuleUnload:
      return module_unload(op);
    case Opcode::kLaunch:
      return launch(op);
    case Opcode::kSync:
      return sync(op);
    case Opcode::kGpuSubmit:
      return gpu_submit(op);
    case Opcode::kModuleGlobal:
      return module_global(op);
    default:
      return reply_error(op.reply, Status::kUnknownOpcode, "not a session op");
  }
}

void LeaseExecutor::mem_alloc(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  const uint64_t ph = XXH3_64bits(payload.data(), payload.size());
  if (auto* e = replay_.find(op.h.request_id, op.h.opcode, ph))
    return op.reply(e->status, e->payload);
  auto m = wire::decode_payload<wire::MemAllocRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  uint64_t used = lease_.used_bytes.load();
  // SECURITY: the quota check and the allocation run on the lease's
  // strand, so no two allocations of a lease can race past the quota.
  // The count is bounded too: tables grow with it, whatever the sizes.
  if (buffers_.size() >= env_.cfg.max_buffers_per_lease) {
    Error e = make_error(Status::kAllocFailed, "lease holds " +
                                                   std::to_string(env_.cfg.max_buffers_per_lease) +
                                                   " buffers already; free some first");
    replay_.remember(op.h.request_id, op.h.opcode, ph, e.status, message_bytes(e.message));
    return reply_error(op.reply, e);
  }
  if (m->size > lease_.quota - used) {
    Error e = make_error(Status::kAllocFailed, "allocation of " + std::to_string(m->size) +
                                                   " bytes exceeds the lease quota (" +
                                                   std::to_string(lease_.quota - used) + " of " +
                                                   std::to_string(lease_.quota) + " left)");
    replay_.remember(op.h.request_id, op.h.opcode, ph, e.status, message_bytes(e.message));
    return reply_error(op.reply, e);
  }
  auto addr = ctx_->mem_alloc(m->size);
  if (!addr) {
    replay_.remember(op.h.request_id, op.h.opcode, ph, addr.status(),
                     message_bytes(addr.error().message));
    return reply_error(op.reply, addr.error());
  }
  buffers_[*addr] = m->size;
  lease_.used_bytes = used + m->size;
  lease_.buffer_count = static_cast<uint32_t>(buffers_.size());
  env_.metrics.mem_alloc_bytes.fetch_add(static_cast<int64_t>(m->size));
  Bytes out = wire::encode_payload(wire::HandleReply{*addr});
  replay_.remember(op.h.request_id, op.h.opcode, ph, Status::kOk, out, *addr);
  return op.reply(Status::kOk, std::move(out));
}

void LeaseExecutor::mem_free(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::HandleRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  auto it = buffers_.find(m->handle);
  if (it == buffers_.end()) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no buffer " + hex(m->handle) + " in this lease");
  }
  // The buffer leaves the lease's tables and quota now; the backend
  // releases its memory once earlier launches no longer use it.
  const uint64_t addr = it->first;
  lease_.used_bytes -= it->second;
  env_.metrics.mem_alloc_bytes.fetch_sub(static_cast<int64_t>(it->second));
  replay_.forget_handle(Opcode::kMemAlloc, addr);
  buffers_.erase(it);
  lease_.buffer_count = static_cast<uint32_t>(buffers_.size());
  return ctx_->mem_free_async(addr, [reply = op.reply](Result<void> r) {
    if (!r) return reply_error(reply, r.error());
    reply_ok(reply, wire::Empty{});
  });
}

void LeaseExecutor::mem_write(const Op& op) {
  // Decoded by the codec in place: the data stays in the frame's buffer.
  auto m = wire::decode_payload<wire::MemWriteView>(op.payload, env_.cfg.limits);
  if (!m) return reply_error(op.reply, m.error());
  const uint64_t handle = m->handle, offset = m->offset;
  const ByteSpan data = m->data;
  const auto it = region(handle);
  if (!it) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no buffer or module variable " + hex(handle) + " in this lease");
  }
  if (!in_range(offset, data.size(), it->size)) {
    return reply_error(op.reply, Status::kOutOfRange,
                       "write of " + std::to_string(data.size()) + " bytes at offset " +
                           std::to_string(offset) + " past the end of a " +
                           std::to_string(it->size) + "-byte buffer");
  }
  // Zero bytes (even at offset == size) touch no memory: nothing to do.
  if (data.empty()) return reply_ok(op.reply, wire::Empty{});
  // Queued behind the lease's launches; the frame stays alive until
  // the copy is done. No thread waits for the kernels.
  return ctx_->mem_write_async(it->addr + offset, data,
                               [reply = op.reply, body = op.body](Result<void> w) {
                                 if (!w) return reply_error(reply, w.error());
                                 reply_ok(reply, wire::Empty{});
                               });
}

void LeaseExecutor::mem_read(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::MemReadRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  const auto it = region(m->handle);
  if (!it) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no buffer or module variable " + hex(m->handle) + " in this lease");
  }
  if (!in_range(m->offset, m->length, it->size)) {
    return reply_error(op.reply, Status::kOutOfRange,
                       "read of " + std::to_string(m->length) + " bytes at offset " +
                           std::to_string(m->offset) + " past the end of a " +
                           std::to_string(it->size) + "-byte buffer");
  }
  if (m->length == 0) return op.reply(Status::kOk, Bytes{});
  wire::FrameHeader ok_header;
  ok_header.opcode = op.h.opcode;
  ok_header.flags = wire::kFlagReply;
  ok_header.request_id = op.h.request_id;
  ok_header.lease_id = op.h.lease_id;
  // A large read of an idle context is lent the device's bytes: hashed
  // here, sent from where they are, copied only if a later op would change
  // them before they are sent.
  if (m->length >= kHashWhileCopyingBytes) {
    if (auto view = ctx_->try_view(it->addr + m->offset, m->length)) {
      wire::PayloadChecksum sum(ok_header, m->length);
      sum.update(view->bytes);
      wire::FrameHeader hashed = sum.header();
      hashed.checksum = sum.digest();
      auto loan = std::make_shared<LentBytes>(std::move(*view));
      (void)loans_out();  // forgets the loans already sent
      loans_.push_back(loan);
      env_.metrics.mem_read_lent_bytes.fetch_add(m->length, std::memory_order_relaxed);
      return op.reply(Status::kOk, ReplyPayload(std::move(loan), hashed));
    }
  }
  auto out = std::make_shared<Bytes>(env_.take_buffer ? env_.take_buffer(m->length) : Bytes());
  out->resize(m->length);  // a recycled buffer shrinks without a fill
  // A small reply is hashed when it is sent (its bytes are still in cache;
  // no state to allocate on the per-frame path).
  if (m->length < kHashWhileCopyingBytes) {
    return ctx_->mem_read_async(it->addr + m->offset, *out,
                                [reply = op.reply, out](Result<void> rd) {
                                  if (!rd) return reply_error(reply, rd.error());
                                  reply(Status::kOk, std::move(*out));
                                });
  }
  // A large one's checksum is computed while the bytes are copied.
  auto sum = std::make_shared<wire::PayloadChecksum>(ok_header, m->length);
  return ctx_->mem_read_seen_async(
      it->addr + m->offset, *out, [sum](std::span<const std::byte> piece) { sum->update(piece); },
      [reply = op.reply, out, sum](Result<void> rd) {
        if (!rd) return reply_error(reply, rd.error());
        if (sum->bytes_hashed() != out->size()) return reply(Status::kOk, std::move(*out));
        wire::FrameHeader hashed = sum->header();
        hashed.checksum = sum->digest();
        reply(Status::kOk, ReplyPayload(std::move(*out), hashed));
      });
}

void LeaseExecutor::module_load(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  const uint64_t ph = XXH3_64bits(payload.data(), payload.size());
  if (auto* e = replay_.find(op.h.request_id, op.h.opcode, ph))
    return op.reply(e->status, e->payload);
  auto m = wire::decode_payload<wire::ModuleLoadRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  // SECURITY: a loaded module takes memory too: its image size is
  // charged to the lease's quota, and a lease holds a bounded number.
  const uint64_t charge = m->image.size();
  uint64_t used = lease_.used_bytes.load();
  if (modules_.size() >= env_.cfg.max_modules_per_lease || charge > lease_.quota - used) {
    Error e = make_error(
        Status::kAllocFailed,
        modules_.size() >= env_.cfg.max_modules_per_lease
            ? "lease holds " + std::to_string(env_.cfg.max_modules_per_lease) + " modules already"
            : "module image of " + std::to_string(charge) + " bytes exceeds the lease quota");
    replay_.remember(op.h.request_id, op.h.opcode, ph, e.status, message_bytes(e.message));
    return reply_error(op.reply, e);
  }
  auto mod = ctx_->module_load(static_cast<ImageKind>(m->format), m->image);
  if (!mod) {
    replay_.remember(op.h.request_id, op.h.opcode, ph, mod.status(),
                     message_bytes(mod.error().message));
    return reply_error(op.reply, mod.error());
  }
  // What the loaded module really holds (e.g. the sim's decoded form)
  // may exceed its image: charge the larger, and refuse what does not fit.
  const uint64_t held = std::max(charge, ctx_->module_bytes(*mod));
  if (held > lease_.quota - used) {
    (void)ctx_->module_unload(*mod);
    Error e = make_error(Status::kAllocFailed, "loaded module takes " + std::to_string(held) +
                                                   " bytes, more than the lease quota has left");
    replay_.remember(op.h.request_id, op.h.opcode, ph, e.status, message_bytes(e.message));
    return reply_error(op.reply, e);
  }
  modules_[*mod] = held;
  lease_.used_bytes = used + held;
  lease_.module_count = static_cast<uint32_t>(modules_.size());
  Bytes out = wire::encode_payload(wire::HandleReply{*mod});
  replay_.remember(op.h.request_id, op.h.opcode, ph, Status::kOk, out, *mod);
  return op.reply(Status::kOk, std::move(out));
}

void LeaseExecutor::module_unload(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::HandleRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  if (!modules_.count(m->handle)) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no module " + hex(m->handle) + " in this lease");
  }
  if (auto r = ctx_->module_unload(m->handle); !r) return reply_error(op.reply, r.error());
  lease_.used_bytes -= modules_[m->handle];
  replay_.forget_handle(Opcode::kModuleLoad, m->handle);
  modules_.erase(m->handle);
  // Its variables' handles die with it.
  std::erase_if(globals_, [&](const auto& g) { return g.second.module == m->handle; });
  lease_.module_count = static_cast<uint32_t>(modules_.size());
  return reply_ok(op.reply, wire::Empty{});
}

void LeaseExecutor::launch(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::LaunchRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  if (!modules_.count(m->module)) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no module " + hex(m->module) + " in this lease");
  }
  if (auto g = check_geometry(m->grid, m->block, m->shared_bytes, lim, device_); !g) {
    return reply_error(op.reply, g.error());
  }
  LaunchRequest req;
  req.module = m->module;
  req.kernel = std::move(m->kernel);
  req.grid = m->grid;
  req.block = m->block;
  req.shared_bytes = m->shared_bytes;
  if (m->args.form == wire::ArgForm::kRaw) {
    size_t at = 0;
    for (uint32_t s : m->args.raw_sizes) {
      req.args.emplace_back(m->args.raw_blob.begin() + static_cast<ptrdiff_t>(at),
                            m->args.raw_blob.begin() + static_cast<ptrdiff_t>(at + s));
      at += s;
    }
  } else {
    for (size_t i = 0; i < m->args.typed.size(); ++i) {
      auto& a = m->args.typed[i];
      if (a.kind == wire::TypedArgKind::kScalar) {
        req.args.push_back(std::move(a.scalar));
        continue;
      }
      // SECURITY: a typed buffer argument must name a live buffer (or
      // module variable) of this lease, and its offset must lie inside it.
      const auto it = region(a.handle);
      if (!it) {
        return reply_error(op.reply, Status::kInvalidHandle,
                           "argument " + std::to_string(i) + ": no buffer or module variable " +
                               hex(a.handle) + " in this lease");
      }
      if (a.offset > it->size) {
        return reply_error(op.reply, Status::kOutOfRange,
                           "argument " + std::to_string(i) + ": offset past the end of the buffer");
      }
      req.args.push_back(le64(it->addr + a.offset));
    }
  }
  if (auto r = ctx_->launch(req); !r) return reply_error(op.reply, r.error());
  launches_ += 1;
  env_.metrics.launch_total.fetch_add(1, std::memory_order_relaxed);
  return reply_ok(op.reply, wire::LaunchReply{launches_});
}

void LeaseExecutor::sync(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::Empty>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  uint64_t launched = launches_;
  ctx_->sync([this, self = lease_.shared_from_this(), launched, reply = op.reply](Result<void> r) {
    env_.metrics.sync_total.fetch_add(1, std::memory_order_relaxed);
    if (!r) {
      env_.metrics.sync_errors.fetch_add(1, std::memory_order_relaxed);
      // Runs on a backend thread. Only an active lease becomes faulted:
      // a lease that ended meanwhile (its pending SYNCs fail when its
      // context is destroyed) keeps its Released/Expired state.
      auto active = wire::LeaseState::kActive;
      if (!self->state.compare_exchange_strong(active, wire::LeaseState::kFaulted)) {
        return reply_error(reply, Status::kLeaseExpired,
                           "lease ended before its work completed: " + r.error().message);
      }
      log_warn("lease faulted", {{"lease", std::to_string(self->id)},
                                 {"tenant", self->tenant},
                                 {"cause", r.error().message}});
      return reply_error(reply, r.error());
    }
    reply_ok(reply, wire::SyncReply{launched});
  });
  return;
}

std::optional<LeaseExecutor::Region> LeaseExecutor::region(uint64_t handle) const {
  if (auto b = buffers_.find(handle); b != buffers_.end()) return Region{b->first, b->second};
  if (auto g = globals_.find(handle); g != globals_.end()) return Region{g->first, g->second.size};
  return std::nullopt;
}

// MODULE_GLOBAL: a loaded module's variable by name. Its handle is its device
// address, valid in MEM_WRITE, MEM_READ and typed BUFFER arguments until the
// module is unloaded. A pure lookup: asking again gives the same answer.
void LeaseExecutor::module_global(const Op& op) {
  auto m = wire::decode_payload<wire::ModuleGlobalRequest>(op.payload, env_.cfg.limits);
  if (!m) return reply_error(op.reply, m.error());
  if (!modules_.count(m->module)) {
    return reply_error(op.reply, Status::kInvalidHandle,
                       "no module " + hex(m->module) + " in this lease");
  }
  auto v = ctx_->module_global(m->module, m->name);
  if (!v) return reply_error(op.reply, v.error());
  // SECURITY: a handle must name one thing of this lease. Backends give
  // every live module's variables their own addresses, apart from buffers;
  // refuse rather than alias if one ever did not.
  const auto same = globals_.find(v->address);
  if (v->address == 0 || buffers_.count(v->address) ||
      (same != globals_.end() && same->second.module != m->module)) {
    return reply_error(op.reply, Status::kInternal,
                       "the backend placed variable '" + m->name + "' at " + hex(v->address) +
                           ", which another handle of this lease names");
  }
  globals_[v->address] = Variable{m->module, v->size};
  return reply_ok(op.reply, wire::ModuleGlobalReply{v->address, v->size,
                                                    static_cast<wire::GlobalSpace>(v->space)});
}

void LeaseExecutor::gpu_submit(const Op& op) {
  ByteSpan payload = op.payload;
  const wire::Limits& lim = env_.cfg.limits;
  (void)lim;
  auto m = wire::decode_payload<wire::GpuSubmitRequest>(payload, lim);
  if (!m) return reply_error(op.reply, m.error());
  return run_submit(std::move(m).value(), op.reply);
}

// GPU_SUBMIT: load, allocate temporaries in the lease's quota, queue the
// input writes, launch, sync, queue the output reads, and free everything
// before the reply. Every step is queued or called back: no thread waits for
// the kernel.
void LeaseExecutor::run_submit(wire::GpuSubmitRequest req, ReplyFn reply) {
  auto l = lease_.shared_from_this();
  struct Temp {
    uint64_t module = 0;
    uint64_t module_charge = 0;                        // bytes of the module charged to the quota
    std::vector<std::pair<uint64_t, uint64_t>> bufs;   // addr, size
    std::vector<Bytes> inputs;                         // alive until their writes complete
    std::vector<std::pair<uint16_t, size_t>> outputs;  // arg index -> temp buffer index
    wire::GpuSubmitReply reply;
    std::mutex mu;
    std::optional<Error> error;  // GUARDED_BY(mu): the first failed copy
    size_t reads_left = 0;       // GUARDED_BY(mu)
    void fail(const Error& e) {
      std::lock_guard lk(mu);
      if (!error) error = e;
    }
  };
  auto temp = std::make_shared<Temp>();
  // Frees every temporary. REQUIRES: on l->strand.
  auto cleanup = [this, l, temp] {
    if (!ctx_) return;  // the lease ended; its context took everything with it
    for (auto [addr, size] : temp->bufs) {
      ctx_->mem_free_async(addr, [](Result<void>) {});
      l->used_bytes -= size;
      env_.metrics.mem_alloc_bytes.fetch_sub(static_cast<int64_t>(size));
    }
    temp->bufs.clear();
    if (temp->module != 0) (void)ctx_->module_unload(temp->module);
    temp->module = 0;
    l->used_bytes -= temp->module_charge;
    temp->module_charge = 0;
  };
  auto fail = [cleanup, &reply](const Error& e) {
    cleanup();
    reply_error(reply, e);
  };
  DeviceContext& ctx = *ctx_;
  if (auto g = check_geometry(req.grid, req.block, req.shared_bytes, env_.cfg.limits, device_); !g)
    return fail(g.error());
  // SECURITY: the module takes memory while loaded: its image is charged to
  // the lease's quota before it is parsed, and what it really holds after.
  const uint64_t image_bytes = req.image.size();
  if (image_bytes > l->quota - l->used_bytes.load()) {
    return fail(make_error(Status::kAllocFailed, "GPU_SUBMIT module image of " +
                                                     std::to_string(image_bytes) +
                                                     " bytes exceeds the lease quota"));
  }
  auto mod = ctx.module_load(static_cast<ImageKind>(req.format), req.image);
  if (!mod) return fail(mod.error());
  temp->module = *mod;
  const uint64_t held = std::max(image_bytes, ctx.module_bytes(*mod));
  if (held > l->quota - l->used_bytes.load()) {
    return fail(make_error(Status::kAllocFailed, "GPU_SUBMIT module takes " + std::to_string(held) +
                                                     " bytes, more than the lease quota has left"));
  }
  temp->module_charge = held;
  l->used_bytes += held;
  LaunchRequest lr;
  lr.module = *mod;
  lr.kernel = req.kernel;
  lr.grid = req.grid;
  lr.block = req.block;
  lr.shared_bytes = req.shared_bytes;
  temp->inputs.reserve(req.args.size());
  for (size_t i = 0; i < req.args.size(); ++i) {
    auto& a = req.args[i];
    if (a.kind == wire::SubmitArgKind::kScalar) {
      lr.args.push_back(std::move(a.data));
      continue;
    }
    uint64_t size = a.kind == wire::SubmitArgKind::kOut ? a.out_size : a.data.size();
    if (size > l->quota - l->used_bytes.load()) {
      return fail(make_error(Status::kAllocFailed, "GPU_SUBMIT buffers exceed the lease quota"));
    }
    auto addr = ctx.mem_alloc(size);
    if (!addr) return fail(addr.error());
    temp->bufs.emplace_back(*addr, size);
    l->used_bytes += size;
    env_.metrics.mem_alloc_bytes.fetch_add(static_cast<int64_t>(size));
    // OUT buffers start zeroed (mem_alloc's memory is zeroed on the sim;
    // written explicitly so every backend agrees).
    temp->inputs.push_back(a.kind == wire::SubmitArgKind::kOut ? Bytes(size) : std::move(a.data));
    ctx.mem_write_async(*addr, temp->inputs.back(), [temp](Result<void> w) {
      if (!w) temp->fail(w.error());
    });
    if (a.kind != wire::SubmitArgKind::kIn)
      temp->outputs.emplace_back(static_cast<uint16_t>(i), temp->bufs.size() - 1);
    lr.args.push_back(le64(*addr));
  }
  if (auto r = ctx.launch(lr); !r) return fail(r.error());
  launches_ += 1;
  env_.metrics.launch_total.fetch_add(1, std::memory_order_relaxed);
  // Answers from the strand once every output read completed.
  auto finish = [this, l, temp, cleanup, reply] {
    defer([this, l, temp, cleanup, reply] {
      cleanup();
      std::optional<Error> e;
      {
        std::lock_guard lk(temp->mu);
        e = temp->error;
      }
      if (e) return reply_error(reply, *e);
      if (!ctx_) return reply_error(reply, Status::kLeaseExpired, "lease ended during GPU_SUBMIT");
      reply_ok(reply, temp->reply);
    });
  };
  ctx.sync([this, l, temp, cleanup, finish, reply](Result<void> r) mutable {
    // Back onto the strand: the context is used only there.
    defer([this, l, temp, cleanup, finish, reply, r = std::move(r)]() mutable {
      env_.metrics.sync_total.fetch_add(1, std::memory_order_relaxed);
      if (!r) {
        env_.metrics.sync_errors.fetch_add(1, std::memory_order_relaxed);
        auto active = wire::LeaseState::kActive;
        if (ctx_ && ctx_->faulted())
          l->state.compare_exchange_strong(active, wire::LeaseState::kFaulted);
        cleanup();
        if (!ctx_)
          return reply_error(reply, Status::kLeaseExpired,
                             "lease ended during GPU_SUBMIT: " + r.error().message);
        return reply_error(reply, r.error());
      }
      if (!ctx_) return reply_error(reply, Status::kLeaseExpired, "lease ended during GPU_SUBMIT");
      auto& outs = temp->reply.outputs;
      outs.reserve(temp->outputs.size());
      for (auto [arg, buf] : temp->outputs) outs.push_back({arg, Bytes(temp->bufs[buf].second)});
      if (outs.empty()) return finish();
      {
        std::lock_guard lk(temp->mu);
        temp->reads_left = outs.size();
      }
      for (size_t i = 0; i < outs.size(); ++i) {
        auto [addr, size] = temp->bufs[temp->outputs[i].second];
        ctx_->mem_read_async(addr, outs[i].data, [temp, finish](Result<void> rd) {
          bool last = false;
          {
            std::lock_guard lk(temp->mu);
            if (!rd && !temp->error) temp->error = rd.error();
            last = --temp->reads_left == 0;
          }
          if (last) finish();
        });
      }
    });
  });
}

}  // namespace gpulease::server
