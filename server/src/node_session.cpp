// Session ops (0x0601-0x0608) and GPU_SUBMIT: everything that touches a
// lease's device context. All of it runs on the lease's strand.
#include <xxhash.h>
#include <asio/post.hpp>

#include <mutex>
#include <optional>

#include "log.hpp"
#include "node.hpp"
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

void Node::session_op(const wire::FrameHeader& h, std::shared_ptr<Lease> l,
                      std::shared_ptr<Bytes> body, size_t payload_offset, ReplyFn reply) {
  asio::post(l->strand, [this, h, l, body = std::move(body), payload_offset,
                         reply = std::move(reply)]() mutable {
    ByteSpan payload(body->data() + payload_offset, h.payload_len);
    Lease& L = *l;
    auto st = L.state.load();
    if (st == wire::LeaseState::kFaulted) {
      return reply_error(reply, Status::kLeaseFaulted,
                         "lease " + std::to_string(L.id) + " is faulted; release it");
    }
    if (st != wire::LeaseState::kActive || !L.ctx) {
      return reply_error(reply, Status::kLeaseExpired,
                         "lease " + std::to_string(L.id) + " has ended");
    }
    DeviceContext& ctx = *L.ctx;
    // A fault seen by the backend outside SYNC poisons the lease for every op
    // but SYNC, which reports its cause.
    if (h.opcode != Opcode::kSync && ctx.faulted()) {
      L.state = wire::LeaseState::kFaulted;
      return reply_error(reply, Status::kLeaseFaulted,
                         "lease " + std::to_string(L.id) + " is faulted; SYNC reports the cause");
    }
    const wire::Limits& lim = cfg_.limits;
    auto payload_hash = [&] { return XXH3_64bits(payload.data(), payload.size()); };
    switch (h.opcode) {
      case Opcode::kMemAlloc: {
        const uint64_t ph = payload_hash();
        if (auto* e = L.replay.find(h.request_id, h.opcode, ph))
          return reply(e->status, e->payload);
        auto m = wire::decode_payload<wire::MemAllocRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        uint64_t used = L.used_bytes.load();
        // SECURITY: the quota check and the allocation run on the lease's
        // strand, so no two allocations of a lease can race past the quota.
        // The count is bounded too: tables grow with it, whatever the sizes.
        if (L.buffers.size() >= cfg_.max_buffers_per_lease) {
          Error e = make_error(Status::kAllocFailed,
                               "lease holds " + std::to_string(cfg_.max_buffers_per_lease) +
                                   " buffers already; free some first");
          L.replay.remember(h.request_id, h.opcode, ph, e.status, message_bytes(e.message));
          return reply_error(reply, e);
        }
        if (m->size > L.quota - used) {
          Error e = make_error(Status::kAllocFailed, "allocation of " + std::to_string(m->size) +
                                                         " bytes exceeds the lease quota (" +
                                                         std::to_string(L.quota - used) + " of " +
                                                         std::to_string(L.quota) + " left)");
          L.replay.remember(h.request_id, h.opcode, ph, e.status, message_bytes(e.message));
          return reply_error(reply, e);
        }
        auto addr = ctx.mem_alloc(m->size);
        if (!addr) {
          L.replay.remember(h.request_id, h.opcode, ph, addr.status(),
                            message_bytes(addr.error().message));
          return reply_error(reply, addr.error());
        }
        L.buffers[*addr] = m->size;
        L.used_bytes = used + m->size;
        L.buffer_count = static_cast<uint32_t>(L.buffers.size());
        metrics_.mem_alloc_bytes.fetch_add(static_cast<int64_t>(m->size));
        Bytes out = wire::encode_payload(wire::HandleReply{*addr});
        L.replay.remember(h.request_id, h.opcode, ph, Status::kOk, out, *addr);
        return reply(Status::kOk, std::move(out));
      }
      case Opcode::kMemFree: {
        auto m = wire::decode_payload<wire::HandleRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        auto it = L.buffers.find(m->handle);
        if (it == L.buffers.end()) {
          return reply_error(reply, Status::kInvalidHandle,
                             "no buffer " + hex(m->handle) + " in this lease");
        }
        // The buffer leaves the lease's tables and quota now; the backend
        // releases its memory once earlier launches no longer use it.
        const uint64_t addr = it->first;
        L.used_bytes -= it->second;
        metrics_.mem_alloc_bytes.fetch_sub(static_cast<int64_t>(it->second));
        L.replay.forget_handle(Opcode::kMemAlloc, addr);
        L.buffers.erase(it);
        L.buffer_count = static_cast<uint32_t>(L.buffers.size());
        return ctx.mem_free_async(addr, [reply](Result<void> r) {
          if (!r) return reply_error(reply, r.error());
          reply_ok(reply, wire::Empty{});
        });
      }
      case Opcode::kMemWrite: {
        // Parsed in place: the data stays in the frame's buffer (no copy).
        wire::ByteReader r(payload);
        uint64_t handle = 0, offset = 0;
        if (!r.u64(handle) || !r.u64(offset))
          return reply_error(reply, Status::kBadFrame, "truncated MEM_WRITE");
        ByteSpan data = r.rest();
        auto it = L.buffers.find(handle);
        if (it == L.buffers.end()) {
          return reply_error(reply, Status::kInvalidHandle,
                             "no buffer " + hex(handle) + " in this lease");
        }
        if (!in_range(offset, data.size(), it->second)) {
          return reply_error(reply, Status::kOutOfRange,
                             "write of " + std::to_string(data.size()) + " bytes at offset " +
                                 std::to_string(offset) + " past the end of a " +
                                 std::to_string(it->second) + "-byte buffer");
        }
        // Zero bytes (even at offset == size) touch no memory: nothing to do.
        if (data.empty()) return reply_ok(reply, wire::Empty{});
        // Queued behind the lease's launches; the frame stays alive until
        // the copy is done. No thread waits for the kernels.
        return ctx.mem_write_async(it->first + offset, data, [reply, body](Result<void> w) {
          if (!w) return reply_error(reply, w.error());
          reply_ok(reply, wire::Empty{});
        });
      }
      case Opcode::kMemRead: {
        auto m = wire::decode_payload<wire::MemReadRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        auto it = L.buffers.find(m->handle);
        if (it == L.buffers.end()) {
          return reply_error(reply, Status::kInvalidHandle,
                             "no buffer " + hex(m->handle) + " in this lease");
        }
        if (!in_range(m->offset, m->length, it->second)) {
          return reply_error(reply, Status::kOutOfRange,
                             "read of " + std::to_string(m->length) + " bytes at offset " +
                                 std::to_string(m->offset) + " past the end of a " +
                                 std::to_string(it->second) + "-byte buffer");
        }
        if (m->length == 0) return reply(Status::kOk, Bytes{});
        auto out = std::make_shared<Bytes>(m->length);
        return ctx.mem_read_async(it->first + m->offset, *out, [reply, out](Result<void> rd) {
          if (!rd) return reply_error(reply, rd.error());
          reply(Status::kOk, std::move(*out));
        });
      }
      case Opcode::kModuleLoad: {
        const uint64_t ph = payload_hash();
        if (auto* e = L.replay.find(h.request_id, h.opcode, ph))
          return reply(e->status, e->payload);
        auto m = wire::decode_payload<wire::ModuleLoadRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        // SECURITY: a loaded module takes memory too: its image size is
        // charged to the lease's quota, and a lease holds a bounded number.
        const uint64_t charge = m->image.size();
        uint64_t used = L.used_bytes.load();
        if (L.modules.size() >= cfg_.max_modules_per_lease || charge > L.quota - used) {
          Error e = make_error(
              Status::kAllocFailed,
              L.modules.size() >= cfg_.max_modules_per_lease
                  ? "lease holds " + std::to_string(cfg_.max_modules_per_lease) + " modules already"
                  : "module image of " + std::to_string(charge) + " bytes exceeds the lease quota");
          L.replay.remember(h.request_id, h.opcode, ph, e.status, message_bytes(e.message));
          return reply_error(reply, e);
        }
        auto mod = ctx.module_load(static_cast<ImageKind>(m->format), m->image);
        if (!mod) {
          L.replay.remember(h.request_id, h.opcode, ph, mod.status(),
                            message_bytes(mod.error().message));
          return reply_error(reply, mod.error());
        }
        // What the loaded module really holds (e.g. the sim's decoded form)
        // may exceed its image: charge the larger, and refuse what does not fit.
        const uint64_t held = std::max(charge, ctx.module_bytes(*mod));
        if (held > L.quota - used) {
          (void)ctx.module_unload(*mod);
          Error e =
              make_error(Status::kAllocFailed, "loaded module takes " + std::to_string(held) +
                                                   " bytes, more than the lease quota has left");
          L.replay.remember(h.request_id, h.opcode, ph, e.status, message_bytes(e.message));
          return reply_error(reply, e);
        }
        L.modules[*mod] = held;
        L.used_bytes = used + held;
        L.module_count = static_cast<uint32_t>(L.modules.size());
        Bytes out = wire::encode_payload(wire::HandleReply{*mod});
        L.replay.remember(h.request_id, h.opcode, ph, Status::kOk, out, *mod);
        return reply(Status::kOk, std::move(out));
      }
      case Opcode::kModuleUnload: {
        auto m = wire::decode_payload<wire::HandleRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        if (!L.modules.count(m->handle)) {
          return reply_error(reply, Status::kInvalidHandle,
                             "no module " + hex(m->handle) + " in this lease");
        }
        if (auto r = ctx.module_unload(m->handle); !r) return reply_error(reply, r.error());
        L.used_bytes -= L.modules[m->handle];
        L.replay.forget_handle(Opcode::kModuleLoad, m->handle);
        L.modules.erase(m->handle);
        L.module_count = static_cast<uint32_t>(L.modules.size());
        return reply_ok(reply, wire::Empty{});
      }
      case Opcode::kLaunch: {
        auto m = wire::decode_payload<wire::LaunchRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        if (!L.modules.count(m->module)) {
          return reply_error(reply, Status::kInvalidHandle,
                             "no module " + hex(m->module) + " in this lease");
        }
        if (auto g = check_geometry(m->grid, m->block, m->shared_bytes, lim, device_info(L.device));
            !g) {
          return reply_error(reply, g.error());
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
            // SECURITY: a typed buffer argument must name a live buffer of
            // this lease, and its offset must lie inside it.
            auto it = L.buffers.find(a.handle);
            if (it == L.buffers.end()) {
              return reply_error(reply, Status::kInvalidHandle,
                                 "argument " + std::to_string(i) + ": no buffer " + hex(a.handle) +
                                     " in this lease");
            }
            if (a.offset > it->second) {
              return reply_error(
                  reply, Status::kOutOfRange,
                  "argument " + std::to_string(i) + ": offset past the end of the buffer");
            }
            req.args.push_back(le64(it->first + a.offset));
          }
        }
        if (auto r = ctx.launch(req); !r) return reply_error(reply, r.error());
        L.launches += 1;
        metrics_.launch_total.fetch_add(1, std::memory_order_relaxed);
        return reply_ok(reply, wire::LaunchReply{L.launches});
      }
      case Opcode::kSync: {
        auto m = wire::decode_payload<wire::Empty>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        uint64_t launched = L.launches;
        ctx.sync([this, l, launched, reply = std::move(reply)](Result<void> r) {
          metrics_.sync_total.fetch_add(1, std::memory_order_relaxed);
          if (!r) {
            metrics_.sync_errors.fetch_add(1, std::memory_order_relaxed);
            // Runs on a backend thread. Only an active lease becomes faulted:
            // a lease that ended meanwhile (its pending SYNCs fail when its
            // context is destroyed) keeps its Released/Expired state.
            auto active = wire::LeaseState::kActive;
            if (!l->state.compare_exchange_strong(active, wire::LeaseState::kFaulted)) {
              return reply_error(reply, Status::kLeaseExpired,
                                 "lease ended before its work completed: " + r.error().message);
            }
            log_warn("lease faulted", {{"lease", std::to_string(l->id)},
                                       {"tenant", l->tenant},
                                       {"cause", r.error().message}});
            return reply_error(reply, r.error());
          }
          reply_ok(reply, wire::SyncReply{launched});
        });
        return;
      }
      case Opcode::kGpuSubmit: {
        auto m = wire::decode_payload<wire::GpuSubmitRequest>(payload, lim);
        if (!m) return reply_error(reply, m.error());
        return run_submit(l, std::move(m).value(), std::move(reply));
      }
      default:
        return reply_error(reply, Status::kUnknownOpcode, "not a session op");
    }
  });
}

// GPU_SUBMIT: load, allocate temporaries in the lease's quota, queue the
// input writes, launch, sync, queue the output reads, and free everything
// before the reply. Every step is queued or called back: no thread waits for
// the kernel. REQUIRES: on l->strand.
void Node::run_submit(std::shared_ptr<Lease> l, wire::GpuSubmitRequest req, ReplyFn reply) {
  struct Temp {
    uint64_t module = 0;
    uint64_t module_charge = 0;                       // bytes of the module charged to the quota
    std::vector<std::pair<uint64_t, uint64_t>> bufs;  // addr, size
    std::vector<Bytes> inputs;                        // alive until their writes complete
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
    if (!l->ctx) return;  // the lease ended; its context took everything with it
    for (auto [addr, size] : temp->bufs) {
      l->ctx->mem_free_async(addr, [](Result<void>) {});
      l->used_bytes -= size;
      metrics_.mem_alloc_bytes.fetch_sub(static_cast<int64_t>(size));
    }
    temp->bufs.clear();
    if (temp->module != 0) (void)l->ctx->module_unload(temp->module);
    temp->module = 0;
    l->used_bytes -= temp->module_charge;
    temp->module_charge = 0;
  };
  auto fail = [cleanup, &reply](const Error& e) {
    cleanup();
    reply_error(reply, e);
  };
  DeviceContext& ctx = *l->ctx;
  if (auto g = check_geometry(req.grid, req.block, req.shared_bytes, cfg_.limits,
                              device_info(l->device));
      !g)
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
    return fail(make_error(Status::kAllocFailed, "GPU_SUBMIT module takes " +
                                                     std::to_string(held) +
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
    metrics_.mem_alloc_bytes.fetch_add(static_cast<int64_t>(size));
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
  l->launches += 1;
  metrics_.launch_total.fetch_add(1, std::memory_order_relaxed);
  // Answers from the strand once every output read completed.
  auto finish = [l, temp, cleanup, reply] {
    asio::post(l->strand, [l, temp, cleanup, reply] {
      cleanup();
      std::optional<Error> e;
      {
        std::lock_guard lk(temp->mu);
        e = temp->error;
      }
      if (e) return reply_error(reply, *e);
      if (!l->ctx) return reply_error(reply, Status::kLeaseExpired, "lease ended during GPU_SUBMIT");
      reply_ok(reply, temp->reply);
    });
  };
  ctx.sync([this, l, temp, cleanup, finish, reply](Result<void> r) mutable {
    // Back onto the strand: the context is used only there.
    asio::post(l->strand, [this, l, temp, cleanup, finish, reply, r = std::move(r)]() mutable {
      metrics_.sync_total.fetch_add(1, std::memory_order_relaxed);
      if (!r) {
        metrics_.sync_errors.fetch_add(1, std::memory_order_relaxed);
        auto active = wire::LeaseState::kActive;
        if (l->ctx && l->ctx->faulted())
          l->state.compare_exchange_strong(active, wire::LeaseState::kFaulted);
        cleanup();
        if (!l->ctx)
          return reply_error(reply, Status::kLeaseExpired,
                             "lease ended during GPU_SUBMIT: " + r.error().message);
        return reply_error(reply, r.error());
      }
      if (!l->ctx)
        return reply_error(reply, Status::kLeaseExpired, "lease ended during GPU_SUBMIT");
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
        l->ctx->mem_read_async(addr, outs[i].data, [temp, finish](Result<void> rd) {
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
