#include "node.hpp"
#include "replies.hpp"

#include <asio/post.hpp>

#include <algorithm>
#include <cassert>
#include <future>
#include <optional>

#include <sodium.h>

#include "gpulease/capability/permissions.hpp"
#include "log.hpp"

namespace gpulease::server {

using wire::Bytes;
using wire::ByteSpan;
using wire::Opcode;
using wire::Status;

uint64_t now_unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

namespace {

unsigned or_cores(unsigned n) {
  return n != 0 ? n : std::max(1u, std::thread::hardware_concurrency());
}

// A fresh lease id: 64 random bits from the CSPRNG, never 0. Ids cannot be
// enumerated, and the caller re-draws on a collision.
uint64_t random_lease_id() {
  uint64_t v = 0;
  while (v == 0) randombytes_buf(&v, sizeof v);
  return v;
}

// The message of every "no such lease" answer, whether the lease never
// existed or belongs to another tenant: the two must be indistinguishable.
constexpr std::string_view kNoSuchLease = capability::kNoSuchLeaseMessage;

// The header lease rule for opcodes that carry no token (HELLO, PING). For
// every other opcode the verifier checks it, with the token's lease binding
// (TOKENS.md step 8), and both answers read the same.
Result<void> check_tokenless_lease_rule(const wire::FrameHeader& h) {
  if (auto why = wire::lease_rule_violation(h.opcode, h.lease_id)) {
    return make_error(
        Status::kInvalidArgument,
        std::string(capability::deny_reason_name(capability::DenyReason::kLeaseRule)) + ": " +
            *why);
  }
  return {};
}

std::string lease_str(uint64_t id) {
  return std::to_string(id);
}

}  // namespace

Node::Node(NodeConfig cfg, std::unique_ptr<DeviceBackend> backend, capability::SecretKey node_key)
    : cfg_(std::move(cfg)),
      backend_(std::move(backend)),
      node_authority_(std::move(node_key)),
      device_pool_(or_cores(cfg_.device_threads)),
      tombstones_(cfg_.tombstones_per_tenant, kMaxTombstonesPerTenant) {
  if (sodium_init() < 0) std::abort();  // no CSPRNG, no unguessable lease ids
  capability::VerifierOptions vo;
  vo.node_id = cfg_.node_id;
  if (cfg_.accept_fleet_audience) vo.fleet_audience = "fleet:" + cfg_.fleet;
  vo.clock_skew_s = cfg_.clock_skew_s;
  vo.cache_capacity = cfg_.token_cache_entries;
  verifier_ = std::make_unique<capability::Verifier>(vo);
  // The node trusts its own key for the tokens it issues through CAP_REQUEST.
  verifier_->key_ring().add(node_authority_.public_key());
  metrics_.token_cache_stats = [this] {
    auto s = verifier_->cache().stats();
    return std::pair<uint64_t, uint64_t>(s.hits, s.misses);
  };
  metrics_.signature_checks = [this] { return verifier_->stats().signature_checks; };
  admission_ =
      std::make_unique<Admission>(backend_->devices(), *backend_,
                                  AdmissionLimits{cfg_.tenant_max_leases, cfg_.tenant_max_bytes});
}

Node::~Node() {
  shutdown();
}

Result<void> Node::start() {
  for (const auto& path : cfg_.authority_keys) {
    auto id = verifier_->key_ring().add_file(path);
    if (!id) return make_error(id.status(), "authority key " + path + ": " + id.error().message);
    log_info("trusting authority key", {{"key_id", capability::key_id_hex(*id)}, {"file", path}});
  }
  if (!cfg_.revocation_file.empty()) {
    auto r = verifier_->revocations().load_file(cfg_.revocation_file);
    if (!r) return r;
  }
  reaper_ = std::thread([this] { reaper_loop(); });
  return {};
}

size_t Node::active_leases() const {
  std::lock_guard lock(mu_);
  return leases_.size();
}

Result<void> Node::reload_revocations() {
  return verifier_->revocations().reload();
}

uint64_t Node::expiry_for(uint32_t ttl_s, const capability::Claims& c) const {
  uint64_t ttl = std::clamp<uint64_t>(ttl_s, cfg_.min_ttl_s, cfg_.max_ttl_s);
  uint64_t at = now_unix_ms() + ttl * 1000;
  // A lease never outlives the grant that asked for it.
  uint64_t token_ms = c.expires_at > UINT64_MAX / 1000 ? UINT64_MAX : c.expires_at * 1000;
  return std::min(at, token_ms);
}

// ---- Entry --------------------------------------------------------------------

Result<capability::Claims> Node::verify_token(const wire::FrameHeader& h, ByteSpan token) {
  capability::VerifyRequest vr;
  vr.opcode = h.opcode;
  vr.frame_lease_id = h.lease_id;
  vr.now_unix_s = static_cast<int64_t>(now_unix_ms() / 1000);
  return verifier_->verify(token, vr);
}

bool Node::token_signature_cached(ByteSpan token) {
  return verifier_->cache().holds(token);
}

uint64_t Node::token_signature_checks() const {
  return verifier_->stats().signature_checks;
}

void Node::handle(const wire::FrameHeader& h, std::shared_ptr<Bytes> body, uint64_t conn_id,
                  ReplyFn reply, const capability::Claims* verified) {
  auto start = std::chrono::steady_clock::now();
  // Counted until answered, so shutdown() can wait for every request that got
  // past the check below before it stops the device pool.
  ops_in_progress_.fetch_add(1);
  ReplyFn timed = [this, op = h.opcode, start, reply = std::move(reply)](Status s, ReplyPayload p) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    metrics_.frame_done(op, s, static_cast<uint64_t>(us));
    reply(s, std::move(p));
    ops_in_progress_.fetch_sub(1);
  };
  if (shutting_down_flag_.load()) {
    return reply_error(timed, Status::kBusy, "node is shutting down");
  }
  ByteSpan token(body->data(), h.token_len);
  if (!capability::requires_token(h.opcode)) {
    if (auto ok = check_tokenless_lease_rule(h); !ok) return reply_error(timed, ok.error());
    dispatch(h, nullptr, std::move(body), conn_id, std::move(timed));
    return;
  }
  // `verified`: verify_token() passed on this frame's token just now.
  std::optional<Result<capability::Claims>> claims;
  if (verified == nullptr) {
    capability::VerifyRequest vr;
    vr.opcode = h.opcode;
    vr.frame_lease_id = h.lease_id;
    vr.now_unix_s = static_cast<int64_t>(now_unix_ms() / 1000);
    claims.emplace(verifier_->verify(token, vr));
    if (!*claims) {
      metrics_.auth_failed(claims->status());
      log_debug("frame refused", {{"opcode", std::string(wire::opcode_name(h.opcode))},
                                  {"status", std::string(wire::status_name(claims->status()))}});
      reply_error(timed, claims->error());
      return;
    }
    verified = &claims->value();
  }
  // The verifier enforced the header lease rule and the token's lease
  // binding (TOKENS.md step 8) on either path.
  dispatch(h, verified, std::move(body), conn_id, std::move(timed));
}

void Node::dispatch(const wire::FrameHeader& h, const capability::Claims* c,
                    std::shared_ptr<Bytes> body, uint64_t conn_id, ReplyFn reply) {
  ByteSpan payload(body->data() + h.token_len, h.payload_len);
  switch (h.opcode) {
    case Opcode::kHello:
      return op_hello(payload, reply);
    case Opcode::kPing: {
      auto m = wire::decode_payload<wire::PingRequest>(payload, cfg_.limits);
      if (!m) return reply_error(reply, m.error());
      return reply_ok(reply, wire::PingReply{std::move(m->data)});
    }
    case Opcode::kLeaseAcquire:
      return op_acquire(*c, payload, conn_id, std::move(reply));
    case Opcode::kLeaseList: {
      auto m = wire::decode_payload<wire::Empty>(payload, cfg_.limits);
      if (!m) return reply_error(reply, m.error());
      return op_list(*c, reply);
    }
    default:
      break;
  }
  // Everything else acts on the lease named in the header.
  auto l = find_lease(h.lease_id, *c);
  if (!l) return reply_error(reply, l.error());
  switch (h.opcode) {
    case Opcode::kLeaseRenew:
      return op_renew(*c, *l, payload, reply);
    case Opcode::kLeaseRelease: {
      auto m = wire::decode_payload<wire::Empty>(payload, cfg_.limits);
      if (!m) return reply_error(reply, m.error());
      return op_release(*l, std::move(reply));
    }
    case Opcode::kLeaseQuery: {
      auto m = wire::decode_payload<wire::Empty>(payload, cfg_.limits);
      if (!m) return reply_error(reply, m.error());
      // QUERY answers Active or Faulted; a lease that ended while this frame
      // was on its way is LEASE_EXPIRED, as every other op would say.
      auto info = lease_info(**l);
      if (info.state != wire::LeaseState::kActive && info.state != wire::LeaseState::kFaulted)
        return reply_error(reply, Status::kLeaseExpired,
                           "lease " + lease_str(info.lease_id) + " has ended");
      return reply_ok(reply, info);
    }
    case Opcode::kCapRequest:
      return op_cap_request(*c, *l, payload, reply);
    default:
      return (*l)->exec->post(h, std::move(body), h.token_len, std::move(reply));
  }
}

// ---- Connection and lease ops ----------------------------------------------------

void Node::op_hello(ByteSpan payload, const ReplyFn& reply) {
  auto m = wire::decode_payload<wire::HelloRequest>(payload, cfg_.limits);
  if (!m) return reply_error(reply, m.error());
  if (m->max_version < wire::kMinProtocolVersion || m->min_version > wire::kMaxProtocolVersion) {
    return reply_error(reply, Status::kUnsupportedVersion,
                       "node speaks protocol versions " +
                           std::to_string(wire::kMinProtocolVersion) + ".." +
                           std::to_string(wire::kMaxProtocolVersion));
  }
  wire::HelloReply r;
  r.version = std::min(m->max_version, wire::kMaxProtocolVersion);
  r.node_id = cfg_.node_id;
  r.backend = std::string(backend_->name());
  const auto& L = cfg_.limits;
  r.limits = {L.max_token_bytes, L.max_payload_bytes, L.max_inflight, L.max_kernel_args,
              L.max_arg_bytes,   L.max_name_bytes,    cfg_.max_ttl_s};
  for (const auto& [info, room] : admission_->device_room()) {
    wire::DeviceDescriptor dd;
    dd.index = info.index;
    dd.name = info.name;
    dd.uuid = info.uuid;
    dd.cc_major = info.cc_major;
    dd.cc_minor = info.cc_minor;
    dd.sm_count = info.sm_count;
    dd.total_bytes = info.total_bytes;
    dd.free_bytes = room;
    r.devices.push_back(std::move(dd));
  }
  reply_ok(reply, r);
}

void Node::op_acquire(const capability::Claims& c, ByteSpan payload, uint64_t conn_id,
                      ReplyFn reply) {
  auto m = wire::decode_payload<wire::LeaseAcquireRequest>(payload, cfg_.limits);
  if (!m) return reply_error(reply, m.error());
  const auto& req = *m;
  if (auto ok = capability::check_vram_ceiling(c, req.min_vram); !ok) {
    metrics_.auth_failed(ok.status());
    return reply_error(reply, ok.error());
  }
  if (req.exclusivity == wire::Exclusivity::kSessionExclusive &&
      backend_->name() != std::string_view("cuda")) {
    return reply_error(reply, Status::kUnsupported,
                       "SessionExclusive needs SM partitioning, which the " +
                           std::string(backend_->name()) + " backend does not provide");
  }
  const bool has_key = req.idempotency_key != wire::IdempotencyKey{};
  IdemKey ikey{c.tenant, req.idempotency_key};
  // Under the table's lock only decisions are made; every reply goes out
  // after it is released.
  std::optional<Error> refused;
  std::optional<wire::LeaseAcquireReply> replayed;
  uint64_t lease_id = 0;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      refused = make_error(Status::kBusy, "node is shutting down");
    } else if (auto it = has_key ? idempotency_.find(ikey) : idempotency_.end();
               it != idempotency_.end()) {
      // The key names one request: the same key with other parameters is
      // a client bug, not a retry.
      if (!(it->second.params == IdemParams::of(req))) {
        refused = make_error(Status::kIdempotencyConflict,
                             "idempotency key already used with different parameters");
      } else if (it->second.lease_id == 0) {
        refused = make_error(Status::kBusy, "an acquire with this idempotency key is in progress");
      } else if (auto lit = leases_.find(it->second.lease_id); lit != leases_.end()) {
        const Lease& l = *lit->second;
        replayed = wire::LeaseAcquireReply{l.id, l.device, l.quota, l.expires_at_ms.load()};
      }
    }
    if (!refused && !replayed) {
      do {
        lease_id = random_lease_id();
      } while (leases_.count(lease_id) || tombstones_.contains(lease_id) ||
               pending_ids_.count(lease_id));
      pending_ids_.insert(lease_id);
      if (has_key) idempotency_[ikey] = IdemEntry{0, IdemParams::of(req)};
    }
  }
  if (refused) return reply_error(reply, *refused);
  if (replayed) return reply_ok(reply, *replayed);
  // Forgets the drawn id (and the key) of an acquire that did not publish.
  auto forget = [this, lease_id, has_key, ikey] {
    std::lock_guard lock(mu_);
    pending_ids_.erase(lease_id);
    if (has_key) {
      auto it = idempotency_.find(ikey);
      if (it != idempotency_.end() && it->second.lease_id == 0) idempotency_.erase(it);
    }
  };
  auto res = admission_->reserve({c.tenant, req.min_vram, req.device, req.exclusivity});
  if (!res) {
    forget();
    return reply_error(reply, res.error());
  }
  // Context creation may take a while on a real device: off the network thread.
  asio::post(device_pool_, [this, c, req, lease_id, conn_id, has_key, ikey, forget,
                            rsv = std::move(res).value(), reply = std::move(reply)]() mutable {
    const uint16_t dev_index = rsv.device();
    ContextOptions opts;
    opts.quota_bytes = req.min_vram;
    opts.instruction_budget = cfg_.instruction_budget;
    opts.watchdog_ms = cfg_.watchdog_ms;
    opts.session_exclusive = req.exclusivity == wire::Exclusivity::kSessionExclusive;
    auto ctx = backend_->create_context(dev_index, opts);
    if (!ctx) {
      rsv.release();
      forget();
      return reply_error(reply, ctx.error());
    }
    auto lease = std::make_shared<Lease>(
        lease_id, c.tenant, dev_index, req.min_vram, rsv.overhead(), req.exclusivity,
        (req.flags & wire::kAcquireReleaseOnDisconnect) != 0, conn_id);
    lease->exec = std::make_unique<LeaseExecutor>(
        *lease, ExecutorEnv{cfg_, metrics_, take_buffer_}, device_info(dev_index),
        asio::make_strand(device_pool_.get_executor()), std::move(ctx).value());
    lease->expires_at_ms = expiry_for(req.ttl_s, c);
    lease->reservation = std::move(rsv);
    lease->idempotency_key = req.idempotency_key;
    // Once published, the lease belongs to its strand: only `published`
    // (decided under mu_) says what happened here.
    bool published = false;
    bool owner_gone = false;
    {
      std::lock_guard lock(mu_);
      owner_gone = lease->release_on_disconnect && !live_connections_.count(conn_id);
      if (!shutting_down_ && !owner_gone) {
        pending_ids_.erase(lease_id);
        leases_.emplace(lease_id, lease);
        if (has_key) idempotency_[ikey].lease_id = lease_id;
        published = true;
      }
    }
    if (!published) {
      lease->exec.reset();  // destroys the context
      lease->reservation.release();
      forget();
      return reply_error(reply, Status::kBusy,
                         owner_gone ? "the connection that asked for this lease has closed"
                                    : "node is shutting down");
    }
    metrics_.lease_acquired.fetch_add(1, std::memory_order_relaxed);
    metrics_.leases_active.fetch_add(1, std::memory_order_relaxed);
    log_info("lease acquired", {{"lease", lease_str(lease_id)},
                                {"tenant", c.tenant},
                                {"device", std::to_string(dev_index)},
                                {"bytes", std::to_string(req.min_vram)}});
    reply_ok(reply, wire::LeaseAcquireReply{lease_id, dev_index, req.min_vram,
                                            lease->expires_at_ms.load()});
  });
}

Result<std::shared_ptr<Lease>> Node::find_lease(uint64_t id, const capability::Claims& c) {
  if (id == 0) return make_error(Status::kInvalidArgument, "lease_id required");
  std::lock_guard lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    if (auto why = tombstones_.find(id, c.tenant)) {
      return make_error(Status::kLeaseExpired,
                        "lease " + lease_str(id) +
                            (*why == DropReason::kReleased ? " was released" : " has ended"));
    }
    return make_error(Status::kLeaseNotFound, std::string(kNoSuchLease));
  }
  // SECURITY: a lease acts only for the tenant that acquired it, and another
  // tenant's lease is answered exactly as an absent one (no enumeration).
  if (!capability::check_lease_owner(c, it->second->tenant)) {
    return make_error(Status::kLeaseNotFound, std::string(kNoSuchLease));
  }
  if (it->second->expires_at_ms.load() <= now_unix_ms()) {
    return make_error(Status::kLeaseExpired, "lease " + lease_str(id) + " has expired");
  }
  return it->second;
}

const DeviceInfo& Node::device_info(uint16_t index) const {
  return admission_->device_info(index);
}

wire::LeaseInfo Node::lease_info(const Lease& l) const {
  wire::LeaseInfo i;
  i.lease_id = l.id;
  i.state = l.state.load();
  i.exclusivity = l.exclusivity;
  i.device = l.device;
  i.quota_bytes = l.quota;
  i.used_bytes = l.used_bytes.load();
  i.expires_at_ms = l.expires_at_ms.load();
  uint64_t now = now_unix_ms();
  i.remaining_ms = i.expires_at_ms > now ? i.expires_at_ms - now : 0;
  i.buffers = l.buffer_count.load();
  i.modules = l.module_count.load();
  return i;
}

void Node::op_renew(const capability::Claims& c, const std::shared_ptr<Lease>& l, ByteSpan payload,
                    const ReplyFn& reply) {
  auto m = wire::decode_payload<wire::LeaseRenewRequest>(payload, cfg_.limits);
  if (!m) return reply_error(reply, m.error());
  if (l->state.load() == wire::LeaseState::kFaulted) {
    return reply_error(reply, Status::kLeaseFaulted, "a faulted lease cannot be renewed");
  }
  uint64_t at = expiry_for(m->ttl_s, c);
  // Renewal never shortens a lease.
  uint64_t cur = l->expires_at_ms.load();
  while (at > cur && !l->expires_at_ms.compare_exchange_weak(cur, at)) {
  }
  reply_ok(reply, wire::LeaseRenewReply{std::max(at, cur)});
}

void Node::op_release(const std::shared_ptr<Lease>& l, ReplyFn reply) {
  // The reply goes out once the context is destroyed and the VRAM is back.
  end_lease(l, DropReason::kReleased,
            [reply = std::move(reply)] { reply_ok(reply, wire::Empty{}); });
}

void Node::op_list(const capability::Claims& c, const ReplyFn& reply) {
  wire::LeaseListReply r;
  std::vector<std::shared_ptr<Lease>> mine;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, l] : leases_) {
      if (l->tenant == c.tenant && (c.lease_id == 0 || c.lease_id == id)) mine.push_back(l);
      if (mine.size() >= cfg_.limits.max_list_entries) break;
    }
  }
  std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
  for (const auto& l : mine) r.leases.push_back(lease_info(*l));
  reply_ok(reply, r);
}

void Node::op_cap_request(const capability::Claims& c, const std::shared_ptr<Lease>& l,
                          ByteSpan payload, const ReplyFn& reply) {
  auto m = wire::decode_payload<wire::CapRequestRequest>(payload, cfg_.limits);
  if (!m) return reply_error(reply, m.error());
  // The token CAP_REQUEST issues is bound to this lease, and a lease-bound
  // token can never acquire a lease: asking for that, for a reserved bit or
  // for nothing at all is a bad value (PROTOCOL.md, value checks).
  if (m->permissions == 0 || (m->permissions & ~capability::kAllPermissions) != 0 ||
      capability::grants(m->permissions, capability::Permission::kLeaseAcquire)) {
    return reply_error(reply, Status::kInvalidArgument,
                       m->permissions == 0 ? "CAP_REQUEST asks for no permission"
                       : capability::grants(m->permissions, capability::Permission::kLeaseAcquire)
                           ? "a token bound to a lease cannot be granted lease_acquire"
                           : "CAP_REQUEST asks for reserved permission bits");
  }
  capability::AttenuationRequest ar;
  ar.lease_id = l->id;
  ar.perms = m->permissions;
  int64_t now = static_cast<int64_t>(now_unix_ms() / 1000);
  ar.now_unix_s = now;
  ar.ttl_s = m->ttl_s != 0 ? m->ttl_s
                           : (c.expires_at > static_cast<uint64_t>(now) ? c.expires_at - now : 1);
  // A token presented under the fleet audience yields one for this node
  // only: the lease it is bound to lives here, and its key is this node's.
  capability::Claims parent = c;
  parent.audience = cfg_.node_id;
  auto tok = node_authority_.attenuate(parent, ar);
  if (!tok) return reply_error(reply, tok.error());
  log_info("scoped token issued", {{"lease", lease_str(l->id)},
                                   {"tenant", c.tenant},
                                   {"perms", capability::format_permissions(m->permissions)}});
  reply_ok(reply, wire::CapRequestReply{std::move(tok).value()});
}

// ---- Ending leases -----------------------------------------------------------------

void Node::end_lease(const std::shared_ptr<Lease>& l, DropReason reason,
                     std::function<void()> done) {
  Reservation quota;
  {
    std::lock_guard lock(mu_);
    if (l->ended) {
      // Answer after the first end's destroy task (strand order), so the
      // reply still means "the VRAM is back".
      if (done) l->exec->after_queued(std::move(done));
      return;
    }
    l->ended = true;
    l->state =
        reason == DropReason::kReleased ? wire::LeaseState::kReleased : wire::LeaseState::kExpired;
    leases_.erase(l->id);
    tombstones_.add(l->id, l->tenant, reason);
    // Its idempotency key is free again (one lookup, not a scan of every key).
    if (l->idempotency_key != wire::IdempotencyKey{}) {
      auto it = idempotency_.find(IdemKey{l->tenant, l->idempotency_key});
      if (it != idempotency_.end() && it->second.lease_id == l->id) idempotency_.erase(it);
    }
    // The quota goes back to admission at once (after the lock), not when
    // the lease's work has stopped: a runaway kernel holds nothing of the node.
    quota = std::move(l->reservation);
  }
  quota.release();
  static constexpr const char* kReason[] = {"released", "expired", "disconnected", "shutdown"};
  log_info("lease ended", {{"lease", lease_str(l->id)},
                           {"tenant", l->tenant},
                           {"reason", kReason[static_cast<int>(reason)]}});
  // Its work stops within a slice once the context closes (what the backend
  // still had queued is answered LEASE_EXPIRED); `done` follows.
  l->exec->end([this, reason, done = std::move(done)] {
    metrics_.leases_active.fetch_sub(1, std::memory_order_relaxed);
    metrics_.lease_dropped(reason);
    if (done) done();
  });
}

void Node::connection_opened(uint64_t conn_id) {
  std::lock_guard lock(mu_);
  live_connections_.insert(conn_id);
}

void Node::connection_closed(uint64_t conn_id) {
  std::vector<std::shared_ptr<Lease>> drop;
  {
    std::lock_guard lock(mu_);
    live_connections_.erase(conn_id);
    for (const auto& [id, l] : leases_) {
      if (l->release_on_disconnect && l->owner_conn == conn_id) drop.push_back(l);
    }
  }
  for (const auto& l : drop) end_lease(l, DropReason::kDisconnected);
}

void Node::reaper_loop() {
  std::unique_lock lock(reaper_mu_);
  while (!reaper_stop_) {
    reaper_cv_.wait_for(lock, std::chrono::milliseconds(cfg_.reaper_interval_ms));
    if (reaper_stop_) break;
    lock.unlock();
    std::vector<std::shared_ptr<Lease>> expired;
    uint64_t now = now_unix_ms();
    {
      std::lock_guard g(mu_);
      for (const auto& [id, l] : leases_) {
        if (l->expires_at_ms.load() <= now) expired.push_back(l);
      }
    }
    for (const auto& l : expired) end_lease(l, DropReason::kExpired);
    lock.lock();
  }
}

void Node::shutdown(std::chrono::milliseconds ops_wait) {
  std::vector<std::shared_ptr<Lease>> all;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    shutting_down_flag_ = true;
    for (const auto& [id, l] : leases_) all.push_back(l);
  }
  {
    std::lock_guard lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::vector<std::future<void>> waits;
  for (const auto& l : all) {
    auto p = std::make_shared<std::promise<void>>();
    waits.push_back(p->get_future());
    end_lease(l, DropReason::kShutdown, [p] { p->set_value(); });
  }
  for (auto& w : waits) w.wait();
  // Requests that got past the shutting-down check may still be posting to
  // the pool; wait (bounded) until every one is answered, then stop it.
  auto until = std::chrono::steady_clock::now() + ops_wait;
  while (ops_in_progress_.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  device_pool_.join();
  if (!all.empty())
    log_info("released every lease at shutdown", {{"count", std::to_string(all.size())}});
}

}  // namespace gpulease::server
