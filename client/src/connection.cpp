// Connection: blocking POSIX sockets, one reader thread per connection.
//
// Why threads and blocking sockets rather than an event loop: a tenant
// program calls the library from its own threads and waits for results; a
// reader thread that matches replies to waiting callers is the smallest thing
// that pipelines, and it keeps Asio out of the public headers and the
// installed package.
//
// Lock order: write_mu before mu (never take write_mu while holding mu).
#include "gpulease/client/connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "gpulease/capability/token.hpp"

namespace gpulease::client {

using wire::Bytes;
using wire::ByteSpan;
using wire::Opcode;
using wire::Status;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kProgressStep = 1u << 20;

Error lost(std::string msg) {
  return Error{kConnectionLost, std::move(msg)};
}

std::string errno_text(int e) {
  return std::strerror(e);
}

// Writes every byte of the iovecs. False on any error.
bool write_all(int fd, struct iovec* iov, int n) {
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    size_t left = static_cast<size_t>(w);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return true;
}

// Reads exactly `len` bytes. False on EOF or error.
bool read_all(int fd, std::byte* p, size_t len) {
  while (len > 0) {
    ssize_t r = ::recv(fd, p, len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    len -= static_cast<size_t>(r);
  }
  return true;
}

Result<int> tcp_connect(const NodeAddress& addr, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(addr.port);
  int gai = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) return lost("cannot resolve " + addr.host + ": " + ::gai_strerror(gai));
  std::string last = "no address";
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      last = errno_text(errno);
      continue;
    }
    int flags = ::fcntl(s, F_GETFL, 0);
    ::fcntl(s, F_SETFL, flags | O_NONBLOCK);
    int rc = ::connect(s, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{s, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        if (rc == 0) errno = ETIMEDOUT;
        rc = -1;
      }
    }
    if (rc != 0) {
      last = errno_text(errno);
      ::close(s);
      continue;
    }
    ::fcntl(s, F_SETFL, flags);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    fd = s;
  }
  ::freeaddrinfo(res);
  if (fd < 0) return lost("cannot connect to " + addr.str() + ": " + last);
  return fd;
}

void set_recv_timeout(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

uint64_t random_u64() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

}  // namespace

// ---- NodeAddress ---------------------------------------------------------------

Result<NodeAddress> NodeAddress::parse(std::string_view text) {
  NodeAddress a;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return make_error(Status::kInvalidArgument,
                        "expected [ADDR]:PORT, got '" + std::string(text) + "'");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return make_error(Status::kInvalidArgument,
                        "expected HOST:PORT, got '" + std::string(text) + "'");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned long p = 0;
  if (host.empty() || port.empty() || port.size() > 5) {
    return make_error(Status::kInvalidArgument,
                      "expected HOST:PORT, got '" + std::string(text) + "'");
  }
  for (char c : port) {
    if (c < '0' || c > '9')
      return make_error(Status::kInvalidArgument, "bad port in '" + std::string(text) + "'");
    p = p * 10 + static_cast<unsigned long>(c - '0');
  }
  if (p == 0 || p > 65535)
    return make_error(Status::kInvalidArgument, "bad port in '" + std::string(text) + "'");
  a.host = std::string(host);
  a.port = static_cast<uint16_t>(p);
  return a;
}

std::string NodeAddress::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Bytes> token_from_text(std::string_view text) {
  return capability::decode_token_text(text);
}

// ---- Shared state ----------------------------------------------------------------

namespace detail {

struct Slot {
  uint64_t id = 0;
  Opcode op = Opcode::kPing;
  uint64_t lease_id = 0;
  Bytes token;
  Bytes payload;  // kept until the reply, for a resend after a reconnect
  bool retry_safe = true;
  ProgressFn progress;
  uint64_t written_gen = 0;  // GUARDED_BY(write_mu): connection it went out on (0 = none)
  // GUARDED_BY(mu)
  bool done = false;
  std::optional<Result<Reply>> result;
};

struct ConnectionImpl {
  enum class State { kConnected, kReconnecting, kFailed, kClosed };

  explicit ConnectionImpl(ConnectOptions o)
      : opts(std::move(o)), token(opts.token), next_id(random_u64()) {}
  ~ConnectionImpl() { close(); }

  ConnectOptions opts;

  mutable std::mutex mu;
  std::condition_variable cv;
  wire::HelloReply hello;                                       // GUARDED_BY(mu)
  Bytes token;                                                  // GUARDED_BY(mu)
  std::unordered_map<uint64_t, std::shared_ptr<Slot>> pending;  // GUARDED_BY(mu)
  uint64_t next_id;                                             // GUARDED_BY(mu)
  uint32_t window = 1;                                          // GUARDED_BY(mu)
  uint32_t chunk = 1u << 20;                                    // GUARDED_BY(mu)
  State state = State::kConnected;                              // GUARDED_BY(mu)
  Connection::Stats stats;                                      // GUARDED_BY(mu)

  std::mutex write_mu;
  int fd = -1;       // GUARDED_BY(write_mu) for writers; the reader owns reads
  uint64_t gen = 0;  // GUARDED_BY(write_mu)

  std::mutex revive_mu;
  std::thread reader;
  std::atomic<bool> closing{false};

  // ---- Opening ----

  // Connects and says HELLO on the new socket (before any reader runs on it).
  Result<int> open() {
    auto fd_r = tcp_connect(opts.node, opts.connect_timeout);
    if (!fd_r) return fd_r;
    int s = *fd_r;
    uint64_t id;
    {
      std::lock_guard lock(mu);
      id = next_id++;
    }
    wire::HelloRequest hr;
    hr.client_name = opts.client_name.substr(0, 256);
    Bytes payload = wire::encode_payload(hr);
    wire::FrameHeader h;
    h.opcode = Opcode::kHello;
    h.request_id = id;
    auto hb = wire::encode_header(h, {}, payload);
    iovec iov[2] = {{hb.data(), hb.size()}, {payload.data(), payload.size()}};
    set_recv_timeout(s, opts.connect_timeout);
    auto fail = [s](Error e) -> Result<int> {
      ::close(s);
      return e;
    };
    if (!write_all(s, iov, 2)) return fail(lost("HELLO: write failed: " + errno_text(errno)));
    wire::HeaderBytes rb;
    if (!read_all(s, rb.data(), rb.size()))
      return fail(lost("HELLO: no reply from " + opts.node.str()));
    auto rh = wire::decode_header(rb, wire::Limits{});
    if (!rh) return fail(with_context(std::move(rh).error(), "HELLO reply"));
    Bytes rp(rh->payload_len);
    if (!read_all(s, rp.data(), rp.size())) return fail(lost("HELLO: reply cut short"));
    if (wire::frame_checksum(rb, {}, rp) != rh->checksum) {
      return fail(make_error(Status::kChecksumMismatch, "HELLO reply checksum mismatch"));
    }
    if (rh->status != Status::kOk) {
      return fail(Error{rh->status, "HELLO: " + std::string(wire::as_chars(rp))});
    }
    auto reply = wire::decode_payload<wire::HelloReply>(rp, wire::Limits{});
    if (!reply) return fail(with_context(std::move(reply).error(), "HELLO reply"));
    set_recv_timeout(s, std::chrono::milliseconds(0));
    std::lock_guard lock(mu);
    hello = std::move(reply).value();
    const auto& L = hello.limits;
    window = std::max<uint32_t>(1, L.max_inflight != 0 ? L.max_inflight : 1);
    uint32_t max_payload = L.max_payload_bytes > 4096 ? L.max_payload_bytes - 64 : 4096;
    chunk = std::max<uint32_t>(4096, std::min(opts.max_chunk_bytes, max_payload));
    stats.window = window;
    return s;
  }

  // Makes `s` the live socket and (re)sends every outstanding request that
  // was not yet written on it; fails those that are unsafe to repeat.
  void install(int s) {
    std::lock_guard wl(write_mu);
    if (fd >= 0) ::close(fd);
    fd = s;
    ++gen;
    std::vector<std::shared_ptr<Slot>> todo;
    {
      std::lock_guard lock(mu);
      for (auto& [id, slot] : pending) todo.push_back(slot);
      state = State::kConnected;
    }
    std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    for (auto& slot : todo) {
      if (slot->written_gen != 0 && !slot->retry_safe) {
        complete(slot->id, lost(std::string(wire::opcode_name(slot->op)) +
                                ": connection lost with the request in flight; not resent "
                                "because repeating it is not safe"));
        continue;
      }
      bool resend = slot->written_gen != 0;
      if (!write_locked(*slot)) break;  // the reader will notice and reconnect again
      if (resend) {
        std::lock_guard lock(mu);
        stats.resent++;
      }
    }
  }

  // ---- Writing ----

  // REQUIRES: write_mu held.
  bool write_locked(Slot& slot) {
    if (slot.written_gen == gen || fd < 0) return true;
    wire::FrameHeader h;
    h.opcode = slot.op;
    h.request_id = slot.id;
    h.lease_id = slot.lease_id;
    auto hb = wire::encode_header(h, slot.token, slot.payload);
    bool ok;
    if (!slot.progress || slot.payload.size() <= kProgressStep) {
      iovec iov[3] = {{hb.data(), hb.size()},
                      {slot.token.data(), slot.token.size()},
                      {slot.payload.data(), slot.payload.size()}};
      ok = write_all(fd, iov, 3);
      if (ok && slot.progress) slot.progress(slot.payload.size(), slot.payload.size());
    } else {
      iovec iov[2] = {{hb.data(), hb.size()}, {slot.token.data(), slot.token.size()}};
      ok = write_all(fd, iov, 2);
      for (size_t at = 0; ok && at < slot.payload.size(); at += kProgressStep) {
        size_t n = std::min(kProgressStep, slot.payload.size() - at);
        iovec p{slot.payload.data() + at, n};
        ok = write_all(fd, &p, 1);
        if (ok) slot.progress(at + n, slot.payload.size());
      }
    }
    if (!ok) {
      // A partial frame leaves the stream unusable: make the reader reconnect.
      ::shutdown(fd, SHUT_RDWR);
      return false;
    }
    slot.written_gen = gen;
    return true;
  }

  void write(Slot& slot) {
    std::lock_guard wl(write_mu);
    (void)write_locked(slot);
  }

  // ---- Completing ----

  void complete(uint64_t id, Result<Reply> r) {
    std::lock_guard lock(mu);
    auto it = pending.find(id);
    if (it == pending.end()) return;  // a late reply to a request we gave up on
    it->second->result.emplace(std::move(r));
    it->second->done = true;
    it->second->payload = Bytes();
    pending.erase(it);
    cv.notify_all();
  }

  void fail_all(const Error& e) {
    std::lock_guard lock(mu);
    for (auto& [id, slot] : pending) {
      slot->result.emplace(with_context(e, wire::opcode_name(slot->op)));
      slot->done = true;
      slot->payload = Bytes();
    }
    pending.clear();
    cv.notify_all();
  }

  // ---- Reading ----

  // Reads replies from `s` until it fails. Returns the reason.
  std::string read_loop(int s) {
    wire::HeaderBytes hb;
    for (;;) {
      if (!read_all(s, hb.data(), hb.size())) return "connection closed by the node";
      auto h = wire::decode_header(hb, wire::Limits{});
      if (!h) return "bad reply header: " + h.error().message;
      if (!h->is_reply()) return "the node sent a request frame";
      ProgressFn progress;
      {
        std::lock_guard lock(mu);
        auto it = pending.find(h->request_id);
        if (it != pending.end()) progress = it->second->progress;
      }
      Bytes payload(h->payload_len);
      if (!progress || payload.size() <= kProgressStep) {
        if (!read_all(s, payload.data(), payload.size())) return "connection closed mid-reply";
      } else {
        for (size_t at = 0; at < payload.size(); at += kProgressStep) {
          size_t n = std::min(kProgressStep, payload.size() - at);
          if (!read_all(s, payload.data() + at, n)) return "connection closed mid-reply";
          progress(at + n, payload.size());
        }
      }
      if (wire::frame_checksum(hb, {}, payload) != h->checksum) return "reply checksum mismatch";
      {
        std::lock_guard lock(mu);
        stats.replies++;
      }
      if (h->status != Status::kOk) {
        std::string msg(wire::as_chars(payload));
        complete(h->request_id, Error{h->status, std::move(msg)});
      } else {
        complete(h->request_id, Reply{*h, std::move(payload)});
      }
    }
  }

  void reader_main(int s) {
    for (;;) {
      std::string why = read_loop(s);
      if (closing.load()) {
        fail_all(lost("connection closed"));
        return;
      }
      {
        std::lock_guard lock(mu);
        state = State::kReconnecting;
      }
      Result<int> next = lost(why);
      auto backoff = opts.reconnect_initial_backoff;
      for (unsigned attempt = 0; attempt < opts.reconnect_attempts && !closing.load(); ++attempt) {
        std::this_thread::sleep_for(backoff);
        backoff = std::min(opts.reconnect_max_backoff, backoff * 2);
        if (closing.load()) break;
        next = open();
        if (next.ok()) break;
        // A node that answers but refuses us will not change its mind.
        if (next.status() != kConnectionLost) break;
      }
      if (closing.load() || !next.ok()) {
        {
          std::lock_guard lock(mu);
          if (state != State::kClosed) state = State::kFailed;
        }
        fail_all(closing.load()
                     ? lost("connection closed")
                     : lost("connection to " + opts.node.str() + " lost (" + why +
                            ") and not re-established: " +
                            (next.ok() ? std::string("closing") : next.error().message)));
        if (next.ok()) ::close(*next);
        return;
      }
      s = *next;
      {
        std::lock_guard lock(mu);
        stats.reconnects++;
      }
      install(s);
    }
  }

  void start_reader(int s) {
    reader = std::thread([this, s] { reader_main(s); });
  }

  // After the reader gave up: one synchronous attempt to reconnect, on the
  // next request.
  void revive() {
    std::lock_guard rl(revive_mu);
    {
      std::lock_guard lock(mu);
      if (state != State::kFailed) return;
    }
    if (reader.joinable()) reader.join();
    auto s = open();
    if (!s) return;
    {
      std::lock_guard lock(mu);
      stats.reconnects++;
    }
    install(*s);
    start_reader(*s);
  }

  void close() {
    bool was_closed = closing.exchange(true);
    {
      std::lock_guard lock(mu);
      state = State::kClosed;
    }
    {
      std::lock_guard wl(write_mu);
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
    if (reader.joinable()) {
      if (reader.get_id() == std::this_thread::get_id()) {
        reader.detach();
      } else {
        reader.join();
      }
    }
    if (!was_closed) fail_all(lost("connection closed"));
    std::lock_guard wl(write_mu);
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }

  std::shared_ptr<Slot> enqueue(Opcode op, Bytes payload, RequestOptions& o) {
    auto slot = std::make_shared<Slot>();
    slot->op = op;
    slot->lease_id = o.lease_id;
    slot->payload = std::move(payload);
    slot->retry_safe = o.retry_safe;
    slot->progress = std::move(o.progress);
    bool needs_revive;
    {
      std::lock_guard lock(mu);
      needs_revive = state == State::kFailed;
    }
    if (needs_revive) revive();
    std::unique_lock lock(mu);
    const bool with_token = op != Opcode::kHello && op != Opcode::kPing;
    if (with_token) slot->token = o.token.empty() ? token : std::move(o.token);
    auto deadline = Clock::now() + opts.request_timeout;
    bool room = cv.wait_until(lock, deadline, [&] {
      return pending.size() < window || state == State::kClosed || state == State::kFailed;
    });
    if (state == State::kClosed || state == State::kFailed) {
      slot->result.emplace(
          lost(std::string(wire::opcode_name(op)) + ": not connected to " + opts.node.str()));
      slot->done = true;
      return slot;
    }
    if (!room) {
      slot->result.emplace(
          make_error(Status::kBusy, std::string(wire::opcode_name(op)) +
                                        ": no request slot free within the request timeout"));
      slot->done = true;
      return slot;
    }
    slot->id = next_id++;
    pending.emplace(slot->id, slot);
    stats.requests++;
    stats.max_inflight =
        std::max<uint32_t>(stats.max_inflight, static_cast<uint32_t>(pending.size()));
    const bool connected = state == State::kConnected;
    lock.unlock();
    if (connected) write(*slot);
    // Otherwise install() writes it once the connection is back.
    return slot;
  }

  Result<Reply> wait(const std::shared_ptr<Slot>& slot) {
    std::unique_lock lock(mu);
    if (!cv.wait_until(lock, Clock::now() + opts.request_timeout, [&] { return slot->done; })) {
      pending.erase(slot->id);
      cv.notify_all();
      return make_error(Status::kBusy, std::string(wire::opcode_name(slot->op)) +
                                           ": no reply within " +
                                           std::to_string(opts.request_timeout.count()) + " ms");
    }
    if (!slot->result) return make_error(Status::kInternal, "PendingReply::wait() called twice");
    Result<Reply> r = std::move(*slot->result);
    slot->result.reset();
    return r;
  }
};

}  // namespace detail

// ---- PendingReply ----------------------------------------------------------------

Result<Reply> PendingReply::wait() {
  if (!slot_) return make_error(Status::kInternal, "wait() on an empty PendingReply");
  return conn_->wait(slot_);
}

bool PendingReply::ready() const {
  if (!slot_) return true;
  std::lock_guard lock(conn_->mu);
  return slot_->done;
}

uint64_t PendingReply::request_id() const noexcept {
  return slot_ ? slot_->id : 0;
}

// ---- Connection ----------------------------------------------------------------------

Result<Connection> Connection::connect(ConnectOptions options) {
  auto impl = std::make_shared<detail::ConnectionImpl>(std::move(options));
  {
    std::lock_guard lock(impl->mu);
    const size_t max_token = capability::kMaxTokenBytes;
    if (impl->token.size() > max_token) {
      return make_error(Status::kInvalidArgument,
                        "token of " + std::to_string(impl->token.size()) + " bytes is too long");
    }
  }
  auto s = impl->open();
  if (!s) return std::move(s).error();
  {
    std::lock_guard wl(impl->write_mu);
    impl->fd = *s;
    impl->gen = 1;
  }
  impl->start_reader(*s);
  return Connection(std::move(impl));
}

Result<Connection> Connection::connect(std::string_view node, std::string_view token_text) {
  auto addr = NodeAddress::parse(node);
  if (!addr) return std::move(addr).error();
  ConnectOptions o;
  o.node = *addr;
  if (!token_text.empty()) {
    auto t = token_from_text(token_text);
    if (!t) return std::move(t).error();
    o.token = std::move(t).value();
  }
  return connect(std::move(o));
}

wire::HelloReply Connection::node_info() const {
  std::lock_guard lock(impl_->mu);
  return impl_->hello;
}

const NodeAddress& Connection::address() const noexcept {
  return impl_->opts.node;
}

PendingReply Connection::send(Opcode op, Bytes payload, RequestOptions opts) const {
  auto slot = impl_->enqueue(op, std::move(payload), opts);
  return PendingReply(impl_, std::move(slot));
}

Result<Reply> Connection::call(Opcode op, Bytes payload, RequestOptions opts) const {
  return send(op, std::move(payload), std::move(opts)).wait();
}

Result<std::chrono::microseconds> Connection::ping(ByteSpan data) const {
  auto start = Clock::now();
  auto r =
      call(Opcode::kPing, wire::encode_payload(wire::PingRequest{Bytes(data.begin(), data.end())}));
  if (!r) return std::move(r).error();
  auto m = decode_reply_as<wire::PingReply>(Opcode::kPing, r->payload);
  if (!m) return std::move(m).error();
  if (!std::equal(m->data.begin(), m->data.end(), data.begin(), data.end())) {
    return make_error(Status::kBadFrame, "PING: echo differs from the data sent");
  }
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

void Connection::set_token(Bytes token) {
  std::lock_guard lock(impl_->mu);
  impl_->token = std::move(token);
}

Bytes Connection::token() const {
  std::lock_guard lock(impl_->mu);
  return impl_->token;
}

uint32_t Connection::chunk_bytes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->chunk;
}

std::chrono::milliseconds Connection::request_timeout() const {
  return impl_->opts.request_timeout;
}

Connection::Stats Connection::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

void Connection::close() const {
  impl_->close();
}

}  // namespace gpulease::client
