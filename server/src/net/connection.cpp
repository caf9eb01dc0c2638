#include "connection.hpp"

// g++ 12 reports asio's awaitable frames (class-specific operator new and
// sized delete, both over asio's recycling allocator) as mismatched in a
// large coroutine; clang and g++ 13 do not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "gpulease/capability/permissions.hpp"
#include "log.hpp"
#include "net.hpp"
#include "replies.hpp"

namespace gpulease::server {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using wire::Bytes;
using wire::ByteSpan;
using wire::Status;

namespace {

// A body buffer grows by at most this much ahead of the bytes read into it.
constexpr size_t kGrowStep = 256u << 10;
// Payload reads at least this large go straight into the body buffer.
constexpr size_t kDirectRead = 16u << 10;
// What the reply to a request is assumed to need before it exists (an
// error message at most), except MEM_READ, whose length is known.
constexpr uint64_t kSmallReplyBytes = wire::kHeaderSize + 1024;
constexpr size_t kSendFailed = SIZE_MAX;

// Token claims older than this at dispatch are verified again.
constexpr auto kReverifyAfter = std::chrono::milliseconds(500);

// A frame body: its bytes, their reservation against the frame-bytes budget,
// and the pool large buffers go back to. Destroyed when the last reference to
// the body goes (reply sent, device op done), on any thread.
struct Body {
  Bytes bytes;
  FrameBudget::Reservation reservation;
  std::shared_ptr<BodyPool> pool;
  Body() = default;
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;
  ~Body() {
    if (pool) pool->give(std::move(bytes));
  }
};

}  // namespace

Connection::Connection(tcp::socket sock, Strand strand, Server& srv, Node& node,
                       const NodeConfig& cfg, uint64_t id, std::string peer)
    : sock_(std::move(sock)),
      strand_(std::move(strand)),
      srv_(srv),
      node_(node),
      cfg_(cfg),
      id_(id),
      peer_(std::move(peer)),
      auth_key_(AuthLimiter::key_of(std::string_view(peer_).substr(0, peer_.rfind(':')))),
      account_(srv.frame_budget().open_account()),
      in_(kInputBytes),
      hash_(XXH3_createState()),
      signal_(strand_),
      wd_timer_(strand_) {}

Connection::~Connection() {
  XXH3_freeState(hash_);
}

void Connection::start() {
  asio::error_code ec;
  sock_.set_option(tcp::no_delay(true), ec);
  asio::co_spawn(
      strand_, [self = shared_from_this()] { return self->session(); }, asio::detached);
}

awaitable<void> Connection::session() {
  using namespace asio::experimental::awaitable_operators;
  try {
    // The reader ends at a read error, the peer's half-close, a frame after
    // which the stream cannot be trusted, or when the watchdog closes.
    co_await (read_loop() || watchdog());
    uncork();
    if (!closed_ && !eof_ && !close_after_flush_) do_close();
    if (!closed_) {
      // Half-close or fatal frame: send what is owed (bounded by the
      // watchdog's idle and write deadlines), then close.
      mid_frame_ = false;
      maybe_close();
      co_await (wait_closed() || watchdog());
    }
  } catch (const std::exception& e) {
    log_debug("connection coroutine ended", {{"conn", std::to_string(id_)}, {"what", e.what()}});
  }
  do_close();
  // Nothing reads into the input buffer any more: free it now, not when the
  // last reply in flight lets the connection go, and let the server hand
  // such memory back to the OS.
  std::vector<std::byte>().swap(in_);
  rpos_ = wpos_ = 0;
  srv_.input_buffer_freed(kInputBytes);
}

awaitable<void> Connection::wait_closed() {
  while (!closed_) {
    asio::error_code ec;
    signal_.expires_at(Clock::time_point::max());
    co_await signal_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

awaitable<bool> Connection::wait_signal(const std::function<bool()>& still_blocked) {
  uncork();
  asio::error_code ec;
  reader_waiting_ = true;
  // Checked again after reader_waiting_ is set: a reply sent in full from
  // another thread (the device pool) lowers reply_bytes_ and then pokes the
  // strand only if it sees reader_waiting_, so between the caller's check
  // and here that wake-up would be lost (both are seq_cst: one of the two
  // sides sees the other).
  if (still_blocked && !still_blocked()) {
    reader_waiting_ = false;
    co_return !closed_;
  }
  signal_.expires_at(Clock::time_point::max());
  co_await signal_.async_wait(asio::redirect_error(use_awaitable, ec));
  reader_waiting_ = false;
  co_return !closed_;
}

void Connection::start_frame() {
  if (mid_frame_) return;
  mid_frame_ = true;
  frame_deadline_ = Clock::now() + std::chrono::milliseconds(cfg_.frame_timeout_ms);
  rearm_watchdog(frame_deadline_);
}

void Connection::rearm_watchdog(Clock::time_point deadline) {
  // The watchdog sleeps until `armed_`; wake it only when a deadline moves
  // earlier than that (once per idle-to-busy change, not per frame).
  if (deadline < armed_) wd_timer_.cancel();
}

uint64_t Connection::reply_bound() const {
  return authenticated_ ? cfg_.reply_queue_bytes : kAnonymousReplyBytes;
}

awaitable<bool> Connection::fill(size_t n) {
  while (buffered() < n) {
    if (rpos_ == wpos_) {
      rpos_ = wpos_ = 0;
    } else if (in_.size() - rpos_ < n) {
      std::memmove(in_.data(), in_.data() + rpos_, buffered());
      wpos_ -= rpos_;
      rpos_ = 0;
    }
    uncork();
    asio::error_code ec;
    size_t got =
        co_await sock_.async_read_some(asio::buffer(in_.data() + wpos_, in_.size() - wpos_),
                                       asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::eof) eof_ = true;
      co_return false;
    }
    wpos_ += got;
    node_.metrics().bytes_in.fetch_add(got, std::memory_order_relaxed);
    // A frame's deadline runs from its first byte (a partial header counts).
    start_frame();
  }
  co_return true;
}

awaitable<bool> Connection::discard(size_t n, XXH3_state_t* hash) {
  while (n > 0) {
    if (buffered() == 0) {
      const bool ok = co_await fill(1);
      if (!ok) co_return false;
    }
    size_t take = std::min(n, buffered());
    if (hash) XXH3_64bits_update(hash, in_.data() + rpos_, take);
    rpos_ += take;
    n -= take;
  }
  co_return true;
}

void Connection::reject(uint64_t request_id, uint64_t lease_id, uint16_t raw_op, Status s,
                        const std::string& msg, bool close) {
  log_debug("frame refused", {{"conn", std::to_string(id_)},
                              {"peer", peer_},
                              {"status", std::string(wire::status_name(s))},
                              {"msg", msg}});
  if (close) close_after_flush_ = true;
  wire::FrameHeader h;
  h.opcode = static_cast<wire::Opcode>(raw_op);
  h.flags = wire::kFlagReply;
  h.status = s;
  h.request_id = request_id;
  h.lease_id = lease_id;
  OutFrame f;
  f.payload = message_bytes(msg);
  f.header = wire::encode_header(h, {}, f.payload);
  queue_reply(std::move(f), 0);
}

// Steps 1-7 of the frame check order failed. Magic, version and lengths:
// the stream cannot be trusted (or the body is not worth reading): answer
// and close. Flags, reserved, opcode, status: the lengths are sound, so the
// body is read into the input buffer and dropped and the connection stays.
awaitable<bool> Connection::handle_bad_header(const wire::HeaderBytes& hb, const Error& e) {
  node_.metrics().bad_frames.fetch_add(1, std::memory_order_relaxed);
  const uint64_t rid = wire::load_le64(hb.data() + wire::kOffRequestId);
  const uint64_t lid = wire::load_le64(hb.data() + wire::kOffLeaseId);
  const uint16_t raw_op = wire::load_le16(hb.data() + wire::kOffOpcode);
  const uint32_t token_len = wire::load_le32(hb.data() + wire::kOffTokenLen);
  const uint32_t payload_len = wire::load_le32(hb.data() + wire::kOffPayloadLen);
  const bool lengths_ok =
      token_len <= cfg_.limits.max_token_bytes && payload_len <= cfg_.limits.max_payload_bytes;
  const bool bad_magic = wire::load_le32(hb.data() + wire::kOffMagic) != wire::kMagic;
  // Past a bad magic nothing in the header can be trusted, the opcode neither.
  const bool fatal = bad_magic || e.status == Status::kUnsupportedVersion ||
                     e.status == Status::kFrameTooLarge || !lengths_ok;
  // Step 4 (REPLY set on a frame sent to the node) comes before the opcode
  // check, which decode_header, written for both directions, runs first.
  const uint16_t flags = wire::load_le16(hb.data() + wire::kOffFlags);
  const bool reply_flag = !fatal && (flags & wire::kFlagReply) != 0;
  reject(rid, lid, bad_magic ? 0 : raw_op, reply_flag ? Status::kBadFrame : e.status,
         reply_flag && (flags & ~wire::kKnownFlags) == 0 ? "a reply frame was sent to the node"
                                                         : e.message,
         fatal);
  if (fatal) co_return false;
  const size_t body_len = size_t{token_len} + payload_len;
  const bool ok = co_await discard(body_len, nullptr);
  co_return ok;
}

// A frame refused after its header and token were read: the payload is read
// and dropped, never buffered. UNAUTHENTICATED (step 8) and a tokenless frame
// past its allowance are answered at once; for the other token refusals and
// BUSY the checksum (step 9) still comes first.
awaitable<bool> Connection::refuse_body(const Refusal& r) {
  const wire::FrameHeader& h = r.header;
  const auto raw_op = static_cast<uint16_t>(h.opcode);
  if (!r.check_checksum) {
    // Answered before the payload arrives; the stream stays in step.
    reject(h.request_id, h.lease_id, raw_op, r.status, r.message, false);
    const bool ok = co_await discard(h.payload_len, nullptr);
    co_return ok;
  }
  const bool ok = co_await discard(h.payload_len, hash_);
  if (!ok) co_return false;
  if (XXH3_64bits_digest(hash_) != h.checksum) {
    node_.metrics().bad_frames.fetch_add(1, std::memory_order_relaxed);
    reject(h.request_id, h.lease_id, raw_op, Status::kChecksumMismatch, "frame checksum mismatch",
           true);
    co_return false;
  }
  reject(h.request_id, h.lease_id, raw_op, r.status, r.message, false);
  co_return true;
}

awaitable<void> Connection::read_loop() {
  wire::HeaderBytes hb;
  for (;;) {
    mid_frame_ = false;
    last_activity_ = Clock::now();
    // Bounded reply queue: no new frame while replies wait to be written.
    auto queue_full = [this] { return reply_bytes_.load() >= reply_bound(); };
    while (queue_full()) {
      const bool ok = co_await wait_signal(queue_full);
      if (!ok) co_return;
    }
    if (buffered() > 0) start_frame();
    const bool have_header = co_await fill(wire::kHeaderSize);
    if (!have_header) co_return;
    std::memcpy(hb.data(), in_.data() + rpos_, hb.size());
    rpos_ += hb.size();

    // Steps 1-7: the header alone, decoded once, before any allocation.
    auto dh = wire::decode_header(hb, cfg_.limits);
    if (!dh) {
      const Error err = dh.error();
      const bool ok = co_await handle_bad_header(hb, err);
      if (!ok) co_return;
      continue;
    }
    const wire::FrameHeader h = *dh;
    const auto raw_op = static_cast<uint16_t>(h.opcode);
    if (h.is_reply()) {
      node_.metrics().bad_frames.fetch_add(1, std::memory_order_relaxed);
      reject(h.request_id, h.lease_id, raw_op, Status::kBadFrame,
             "a reply frame was sent to the node", false);
      const size_t skip = size_t{h.token_len} + h.payload_len;
      const bool ok = co_await discard(skip, nullptr);
      if (!ok) co_return;
      continue;
    }

    // Step 8: the token section (<= max_token_bytes, inside the input
    // buffer) is verified before the payload is buffered.
    const bool have_token = co_await fill(h.token_len);
    if (!have_token) co_return;
    ByteSpan token(in_.data() + rpos_, h.token_len);
    {
      wire::HeaderBytes zeroed = hb;
      std::memset(zeroed.data() + wire::kOffChecksum, 0, 8);
      XXH3_64bits_reset(hash_);
      XXH3_64bits_update(hash_, zeroed.data(), zeroed.size());
      XXH3_64bits_update(hash_, token.data(), token.size());
    }
    std::string tenant;  // empty: a frame that needs no token
    std::optional<capability::Claims> verified;
    Clock::time_point verified_at{};
    if (capability::requires_token(h.opcode)) {
      // SECURITY: an address that has failed verification too often gets no
      // more signature checks for a while; a token already verified (cached)
      // costs none, so it still passes.
      if (!srv_.auth_limiter().allows(auth_key_) && !node_.token_signature_cached(token)) {
        rpos_ += h.token_len;
        node_.metrics().auth_rate_limited.fetch_add(1, std::memory_order_relaxed);
        node_.metrics().frame_done(h.opcode, Status::kBusy, 0);
        reject(h.request_id, h.lease_id, raw_op, Status::kBusy,
               "too many failed token verifications from this address; retry later", true);
        co_return;
      }
      auto claims = node_.verify_token(h, token);
      if (!claims) {
        if (claims.status() == Status::kUnauthenticated) srv_.auth_limiter().failed(auth_key_);
        rpos_ += h.token_len;
        node_.metrics().auth_failed(claims.status());
        node_.metrics().frame_done(h.opcode, claims.status(), 0);
        const bool unauth = claims.status() == Status::kUnauthenticated;
        const Refusal r{h, claims.status(), claims.error().message, !unauth};
        const bool ok = co_await refuse_body(r);
        if (!ok) co_return;
        continue;
      }
      if (!authenticated_) {
        // SECURITY: the first verified token counts the connection against
        // its tenant's share of the slots.
        if (!srv_.tenant_connected(claims->tenant)) {
          node_.metrics().connections_rejected.fetch_add(1, std::memory_order_relaxed);
          reject(h.request_id, h.lease_id, raw_op, Status::kBusy,
                 "tenant holds " + std::to_string(cfg_.max_connections_per_tenant) +
                     " connections already (the per-tenant limit)",
                 true);
          co_return;
        }
        counted_tenant_ = claims->tenant;
      }
      verified = std::move(claims).value();
      verified_at = Clock::now();
      tenant = verified->tenant;
      authenticated_ = true;
    } else if (h.payload_len > cfg_.limits.max_ping_bytes) {
      // A frame without a token is held within a small fixed allowance.
      rpos_ += h.token_len;
      const Refusal r{h, Status::kFrameTooLarge,
                      "payload of " + std::to_string(h.payload_len) + " bytes exceeds the " +
                          std::to_string(cfg_.limits.max_ping_bytes) +
                          "-byte limit of a frame without a token",
                      false};
      const bool ok = co_await refuse_body(r);
      if (!ok) co_return;
      continue;
    }
    if (inflight_.load() >= cfg_.limits.max_inflight || srv_.draining()) {
      rpos_ += h.token_len;
      std::string msg = srv_.draining() ? "node is draining"
                                        : "too many requests in flight (limit " +
                                              std::to_string(cfg_.limits.max_inflight) + ")";
      const Refusal r{h, Status::kBusy, std::move(msg), true};
      const bool ok = co_await refuse_body(r);
      if (!ok) co_return;
      continue;
    }

    // Step 9: the body, reserved against the connection's and tenant's
    // shares of the frame-bytes budget, filled as its bytes arrive.
    const size_t body_len = size_t{h.token_len} + h.payload_len;
    FrameBudget::Reservation res;
    for (uint64_t waiter = 0;;) {
      res = srv_.frame_budget().try_reserve(account_, tenant, body_len);
      if (res) {
        if (waiter) srv_.frame_budget().remove_waiter(waiter);
        break;
      }
      if (!waiter) {
        // Registered before the retry, so no give-back between the two is missed.
        waiter = srv_.frame_budget().add_waiter([w = weak_from_this()] {
          if (auto s = w.lock()) asio::post(s->strand_, [s] { s->signal_.cancel(); });
        });
        continue;
      }
      const bool ok = co_await wait_signal();
      if (!ok) {
        srv_.frame_budget().remove_waiter(waiter);
        co_return;
      }
    }
    auto holder = std::make_shared<Body>();
    holder->reservation = std::move(res);
    holder->pool = srv_.body_pool_ptr();
    holder->bytes = srv_.body_pool().take(body_len);
    Bytes& b = holder->bytes;
    if (b.size() < h.token_len) b.resize(h.token_len);
    if (h.token_len != 0) std::memcpy(b.data(), token.data(), h.token_len);
    rpos_ += h.token_len;
    size_t off = h.token_len;
    while (off < body_len) {
      // Room after `off`, growing the buffer a step at a time.
      if (b.size() <= off) b.resize(std::min(body_len, off + kGrowStep));
      const size_t room = std::min(b.size(), body_len) - off;
      if (buffered() > 0) {
        const size_t take = std::min(room, buffered());
        std::memcpy(b.data() + off, in_.data() + rpos_, take);
        XXH3_64bits_update(hash_, b.data() + off, take);
        rpos_ += take;
        off += take;
        continue;
      }
      if (body_len - off < kDirectRead) {
        const bool ok = co_await fill(1);
        if (!ok) co_return;
        continue;
      }
      uncork();
      asio::error_code ec;
      size_t got = co_await sock_.async_read_some(asio::buffer(b.data() + off, room),
                                                  asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::eof) eof_ = true;
        co_return;
      }
      node_.metrics().bytes_in.fetch_add(got, std::memory_order_relaxed);
      XXH3_64bits_update(hash_, b.data() + off, got);
      off += got;
    }
    if (XXH3_64bits_digest(hash_) != h.checksum) {
      node_.metrics().bad_frames.fetch_add(1, std::memory_order_relaxed);
      reject(h.request_id, h.lease_id, raw_op, Status::kChecksumMismatch, "frame checksum mismatch",
             true);
      co_return;
    }
    mid_frame_ = false;
    last_activity_ = Clock::now();

    // The reply's size, promised against the reply bound before dispatch:
    // a MEM_READ's is known from its request (decoded by the codec).
    uint64_t promised = kSmallReplyBytes;
    if (h.opcode == wire::Opcode::kMemRead) {
      auto m = wire::decode_payload<wire::MemReadRequest>(
          ByteSpan(b.data() + h.token_len, h.payload_len), cfg_.limits);
      if (m) promised = wire::kHeaderSize + uint64_t{m->length};
    }
    // The tenant's replies on all its connections are bounded too.
    std::shared_ptr<ReplyBudget::Tenant> rtenant;
    if (!tenant.empty()) {
      if (!reply_tenant_ || tenant != reply_tenant_name_) {
        reply_tenant_ = srv_.reply_budget().tenant(tenant);
        reply_tenant_name_ = tenant;
      }
      rtenant = reply_tenant_;
    }
    ReplyBudget::Charge promise_charge;  // the promise, charged to the tenant
    uint64_t room_waiter = 0;
    auto no_room = [this, promised] {
      return reply_bytes_.load() > 0 && reply_bytes_.load() + promised > reply_bound();
    };
    for (;;) {
      const bool conn_full = no_room();
      bool tenant_full = false;
      if (!conn_full && rtenant) {
        promise_charge = ReplyBudget::Charge::try_make(rtenant, promised);
        tenant_full = !promise_charge;
      }
      if (!conn_full && !tenant_full) break;
      if (tenant_full && room_waiter == 0) {
        // Registered before the re-check, so no drop between the two is missed.
        room_waiter = rtenant->add_waiter([w = weak_from_this()] {
          if (auto s = w.lock()) asio::post(s->strand_, [s] { s->signal_.cancel(); });
        });
        continue;
      }
      // Waiting for replies (its own or the tenant's other connections')
      // to be read: not idle.
      waiting_reply_room_ = true;
      const bool ok = co_await wait_signal(tenant_full ? std::function<bool()>() : no_room);
      waiting_reply_room_ = false;
      if (!ok) {
        if (room_waiter != 0) rtenant->remove_waiter(room_waiter);
        co_return;
      }
    }
    if (room_waiter != 0) rtenant->remove_waiter(room_waiter);
    // Counted before the draining check, so a drain that sees no request in
    // flight can be sure none is about to enter the node.
    inflight_.fetch_add(1);
    srv_.inflight_total.fetch_add(1);
    if (srv_.draining()) {
      inflight_.fetch_sub(1);
      srv_.inflight_total.fetch_sub(1);
      reject(h.request_id, h.lease_id, raw_op, Status::kBusy, "node is draining", false);
      continue;
    }
    reply_bytes_.fetch_add(promised);
    replies_owed_.fetch_add(1);
    // Claims checked more than a moment ago (a slow payload) are checked
    // again by the node, so expiry and revocation apply at dispatch.
    if (verified && Clock::now() - verified_at > kReverifyAfter) verified.reset();
    std::shared_ptr<Bytes> body(holder, &holder->bytes);
    // A reply made inline while the next frame's header is already here is
    // queued, not sent: the replies to a pipelined burst go out in one
    // gathered write when the reader next waits (uncork()).
    corked_ = buffered() >= wire::kHeaderSize;
    // The promise stays charged to the tenant until the reply is sent, or
    // becomes the charge of its unsent bytes while it is queued.
    auto promise = std::make_shared<ReplyBudget::Charge>(std::move(promise_charge));
    node_.handle(
        h, std::move(body), id_,
        [self = shared_from_this(), h, raw_op, promised, promise](Status s, ReplyPayload p) {
          // Counted done before the reply can reach the client, so
          // a client that waits for each reply is never answered BUSY.
          self->inflight_.fetch_sub(1);
          self->srv_.inflight_total.fetch_sub(1);
          self->send(h, raw_op, s, std::move(p), promised, std::move(*promise));
          // Queued or sent: a half-closed connection may close after this.
          if (self->replies_owed_.fetch_sub(1) == 1 && self->eof_.load()) self->poke_strand();
        },
        verified ? &*verified : nullptr);
    corked_ = false;
    if (buffered() < wire::kHeaderSize) uncork();
  }
}

awaitable<void> Connection::watchdog() {
  for (;;) {
    if (closed_) co_return;
    const auto now = Clock::now();
    const char* reason = nullptr;
    auto next = Clock::time_point::max();
    if (mid_frame_) {
      if (now >= frame_deadline_) reason = "stalled mid-frame";
      next = std::min(next, frame_deadline_);
    } else {
      auto idle_at = last_activity_ + std::chrono::milliseconds(cfg_.idle_timeout_ms);
      if (now >= idle_at) {
        // A client waiting for a long SYNC, or for its replies, is not idle.
        if (inflight_.load() > 0 || !write_idle() || waiting_reply_room_) {
          last_activity_ = now;
          idle_at = now + std::chrono::milliseconds(cfg_.idle_timeout_ms);
        } else {
          reason = "idle";
        }
      }
      next = std::min(next, idle_at);
    }
    if (async_writing_) {
      auto stall_at = write_progress_ + std::chrono::milliseconds(cfg_.frame_timeout_ms);
      if (now >= stall_at) reason = "not reading its replies";
      next = std::min(next, stall_at);
    }
    if (reason) {
      log_info("disconnecting client",
               {{"conn", std::to_string(id_)}, {"peer", peer_}, {"reason", reason}});
      do_close();
      co_return;
    }
    armed_ = next;
    wd_timer_.expires_at(next);
    asio::error_code ec;
    co_await wd_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    armed_ = Clock::time_point::max();
  }
}

void Connection::send(const wire::FrameHeader& req, uint16_t raw_opcode, Status s,
                      ReplyPayload payload, uint64_t promised, ReplyBudget::Charge charge) {
  wire::FrameHeader h;
  h.opcode = static_cast<wire::Opcode>(raw_opcode);
  h.flags = wire::kFlagReply;
  h.status = s;
  h.request_id = req.request_id;
  h.lease_id = req.lease_id;
  h.payload_len = static_cast<uint32_t>(payload.size());
  OutFrame f;
  f.payload = std::move(payload.bytes);
  f.lent = std::move(payload.lent);
  // A checksum computed while the payload was made is used only for the
  // very header it was computed for.
  if (payload.hashed) {
    wire::FrameHeader unsummed = *payload.hashed;
    unsummed.checksum = 0;
    if (unsummed == h) {
      f.header = wire::encode_header_as_is(*payload.hashed);
      queue_reply(std::move(f), promised, std::move(charge));
      return;
    }
  }
  if (f.lent) {
    auto held = f.lent->lock();
    f.header = wire::encode_header(h, {}, f.lent->bytes());
  } else {
    f.header = wire::encode_header(h, {}, f.payload);
  }
  queue_reply(std::move(f), promised, std::move(charge));
}

// REQUIRES: wmu_ held. Adds `f`'s unsent bytes to `g`; a lent payload's
// lock is held until g.send() has returned.
void Connection::Gather::add(const OutFrame& f) {
  if (f.sent < f.header.size()) {
    iov[count++] = {const_cast<std::byte*>(f.header.data()) + f.sent, f.header.size() - f.sent};
  }
  ByteSpan payload(f.payload);
  if (f.lent) {
    held[loans++] = f.lent->lock();
    payload = f.lent->bytes();
  }
  const size_t into_payload = f.sent > f.header.size() ? f.sent - f.header.size() : 0;
  if (into_payload < payload.size()) {
    iov[count++] = {const_cast<std::byte*>(payload.data()) + into_payload,
                    payload.size() - into_payload};
  }
}

// A non-blocking gathered send: the bytes written (0 when the socket takes
// none now), or kSendFailed. Lets go of the loans' locks.
size_t Connection::Gather::send(int fd) {
  msghdr m{};
  m.msg_iov = iov.data();
  m.msg_iovlen = count;
  const ssize_t n = count == 0 ? 0 : ::sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  const int err = errno;
  for (size_t i = 0; i < loans; ++i) held[i].unlock();
  if (n < 0) return err == EAGAIN || err == EWOULDBLOCK || err == EINTR ? 0 : kSendFailed;
  return static_cast<size_t>(n);
}

size_t Connection::send_now(const OutFrame& f) {
  Gather g;
  g.add(f);
  return g.send(sock_.native_handle());
}

size_t Connection::write_queued(std::vector<OutFrame>& finished) {
  Gather g;
  size_t frames = 0;
  for (const auto& f : outq_) {
    if (frames++ == kMaxFramesPerWrite) break;
    g.add(f);
  }
  const size_t n = g.send(sock_.native_handle());
  if (n == kSendFailed) return n;
  for (size_t left = n; left > 0 && !outq_.empty();) {
    OutFrame& f = outq_.front();
    const size_t rest = f.size() - f.sent;
    if (left < rest) {
      f.sent += left;
      break;
    }
    left -= rest;
    finished.push_back(std::move(f));
    outq_.pop_front();
  }
  reply_bytes_.fetch_sub(std::min(reply_bytes_.load(), uint64_t{n}));
  node_.metrics().bytes_out.fetch_add(n, std::memory_order_relaxed);
  return n;
}

void Connection::queue_reply(OutFrame f, uint64_t promised, ReplyBudget::Charge charge) {
  std::unique_lock lock(wmu_);
  reply_bytes_.fetch_sub(std::min(reply_bytes_.load(), promised));
  if (sock_closed_) {
    lock.unlock();
    poke_strand();
    return;
  }
  // The reader is in Node::handle with more frames buffered: queue it for
  // the gathered write that uncork() starts. (corked_ is the strand's.)
  const bool cork = strand_.running_in_this_thread() && corked_;
  if (!writing_ && outq_.empty() && !cork) {
    // Nothing ahead of it: send it now from this thread, so a reply made on
    // the device pool goes out without a hop to the connection's strand.
    // SECURITY: under wmu_, so the socket cannot be closed (and its
    // descriptor reused) meanwhile.
    const size_t n = send_now(f);
    if (n == f.size()) {
      lock.unlock();
      if (!f.lent) srv_.body_pool().give(std::move(f.payload));
      node_.metrics().bytes_out.fetch_add(n, std::memory_order_relaxed);
      if (reader_waiting_.load() || eof_.load() || close_after_flush_.load()) poke_strand();
      return;
    }
    if (n == kSendFailed) {
      lock.unlock();
      asio::post(strand_, [self = shared_from_this()] { self->do_close(); });
      return;
    }
    node_.metrics().bytes_out.fetch_add(n, std::memory_order_relaxed);
    f.sent = n;
  }
  reply_bytes_.fetch_add(f.size() - f.sent);
  charge.resize(f.size() - f.sent);
  f.charge = std::move(charge);
  outq_.push_back(std::move(f));
  if (writing_ || cork) return;
  writing_ = true;  // the strand's writer takes it from here
  lock.unlock();
  if (strand_.running_in_this_thread()) {
    start_write();
  } else {
    asio::post(strand_, [self = shared_from_this()] { self->start_write(); });
  }
}

void Connection::uncork() {
  std::unique_lock lock(wmu_);
  if (writing_ || outq_.empty() || sock_closed_) return;
  writing_ = true;
  lock.unlock();
  start_write();
}

void Connection::poke_strand() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->reader_waiting_.load()) self->signal_.cancel();
    self->maybe_close();
  });
}

// REQUIRES: on the strand, writing_ set by queue_reply() or uncork().
// Sends what the socket takes of the queue, each send under wmu_ (so a
// loan revoked meanwhile is read from its copy), then waits until the
// socket can take more. A peer that stops reading meets the watchdog's
// write deadline.
void Connection::start_write() {
  if (closed_) return;
  std::vector<OutFrame> finished;  // destroyed (and recycled) outside wmu_
  size_t wrote = 0;
  bool failed = false;
  bool more = false;
  {
    std::lock_guard lock(wmu_);
    if (sock_closed_) return;
    // A send that takes all it was given may be followed by another at
    // once; one that falls short means the socket is full.
    for (int round = 0; round < 16; ++round) {
      const size_t queued = std::min(outq_.size(), kMaxFramesPerWrite);
      size_t offered = 0;
      for (size_t i = 0; i < queued; ++i) offered += outq_[i].size() - outq_[i].sent;
      const size_t n = write_queued(finished);
      if (n == kSendFailed) {
        failed = true;
        break;
      }
      wrote += n;
      if (n < offered || outq_.empty()) break;
    }
    more = !failed && !outq_.empty();
    if (!more) writing_ = false;
  }
  for (auto& f : finished) {
    if (!f.lent) srv_.body_pool().give(std::move(f.payload));  // large ones are recycled
  }
  finished.clear();
  if (failed) {
    async_writing_ = false;
    do_close();
    return;
  }
  const auto now = Clock::now();
  if (wrote > 0 || !async_writing_) write_progress_ = now;
  if (wrote > 0) {
    last_activity_ = now;
    if (reader_waiting_.load()) signal_.cancel();
  }
  if (!more) {
    async_writing_ = false;
    maybe_close();
    return;
  }
  async_writing_ = true;
  rearm_watchdog(write_progress_ + std::chrono::milliseconds(cfg_.frame_timeout_ms));
  sock_.async_wait(
      tcp::socket::wait_write,
      asio::bind_executor(strand_, [self = shared_from_this()](const asio::error_code& ec) {
        if (ec) {
          self->async_writing_ = false;
          self->do_close();
          return;
        }
        self->start_write();
      }));
}

void Connection::evict() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->closed_) return;
    log_info("disconnecting client", {{"conn", std::to_string(self->id_)},
                                      {"peer", self->peer_},
                                      {"reason", "connection slots full; no token presented"}});
    self->do_close();
  });
}

void Connection::close_after_flush() {
  asio::post(strand_, [self = shared_from_this()] {
    self->close_after_flush_ = true;
    self->maybe_close();
  });
}

bool Connection::write_idle() const {
  std::lock_guard lock(wmu_);
  return !writing_ && outq_.empty();
}

void Connection::maybe_close() {
  if (closed_ || !write_idle()) return;
  if (close_after_flush_.load() || (eof_.load() && replies_owed_.load() == 0)) do_close();
}

void Connection::do_close() {
  if (closed_) return;
  closed_ = true;
  std::deque<OutFrame> unsent;  // gives its tenant charges back now
  {
    std::lock_guard lock(wmu_);
    sock_closed_ = true;
    asio::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
    unsent.swap(outq_);
  }
  unsent.clear();
  signal_.cancel();
  wd_timer_.cancel();
  node_.connection_closed(id_);
  srv_.connection_ended(shared_from_this());
}

}  // namespace gpulease::server
