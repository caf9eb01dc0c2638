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
#include <limits>
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
// Most requests kept in flight, whatever the node announces.
constexpr uint32_t kMaxWindow = 4096;

Error lost(std::string msg) {
  return Error{kConnectionLost, std::move(msg)};
}

std::string errno_text(int e) {
  return std::strerror(e);
}

// Writes every byte of the iovecs, waiting at most `stall` at a time for the
// socket to take more (a peer that stops reading cannot hang a sender
// forever). False on error or stall (errno ETIMEDOUT).
bool write_all(int fd, struct iovec* iov, int n, std::chrono::milliseconds stall) {
  const int stall_ms =
      static_cast<int>(std::clamp<int64_t>(stall.count(), 1, std::numeric_limits<int>::max()));
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      pollfd p{fd, POLLOUT, 0};
      int pr = ::poll(&p, 1, stall_ms);
      if (pr == 0) {
        errno = ETIMEDOUT;
        return false;
      }
      if (pr < 0 && errno != EINTR) return false;
      continue;
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

// One socket, closed when the last user lets go of it: the reader, a writer
// and close() each hold a reference while they use the descriptor, so its
// number is never reused under them.
struct Socket {
  explicit Socket(int f) : fd(f) {}
  ~Socket() { ::close(fd); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  void shutdown() const { ::shutdown(fd, SHUT_RDWR); }
  const int fd;
};

struct Slot {
  uint64_t id = 0;
  Opcode op = Opcode::kPing;
  uint64_t lease_id = 0;
  Bytes token;
  // Kept until the reply, for a resend after a reconnect. A writer takes its
  // own reference (under mu) before sending, so a reply that arrives while
  // the frame is still going out cannot free the bytes being sent.
  std::shared_ptr<const Bytes> payload;  // GUARDED_BY(mu)
  bool retry_safe = true;
  std::chrono::milliseconds timeout{0};
  ProgressFn progress;
  uint64_t written_gen = 0;  // GUARDED_BY(write_mu): connection it went out on (0 = none)
  // GUARDED_BY(mu)
  bool resent = false;
  bool done = false;
  std::optional<Result<Reply>> result;
};

struct ConnectionImpl : std::enable_shared_from_this<ConnectionImpl> {
  enum class State { kConnected, kReconnecting, kFailed, kClosed };

  explicit ConnectionImpl(ConnectOptions o)
      : opts(std::move(o)), token(opts.token), next_id(random_u64()) {}
  ~ConnectionImpl() {
    close();
    std::lock_guard tl(thread_mu);
    if (reader.joinable()) {
      if (reader.get_id() == std::this_thread::get_id()) {
        reader.detach();
      } else {
        reader.join();
      }
    }
  }

  ConnectOptions opts;

  mutable std::mutex mu;
  std::condition_variable cv;
  wire::HelloReply hello;                                       // GUARDED_BY(mu)
  Bytes token;                                                  // GUARDED_BY(mu)
  std::unordered_map<uint64_t, std::shared_ptr<Slot>> pending;  // GUARDED_BY(mu)
  uint64_t next_id;                                             // GUARDED_BY(mu)
  uint32_t window = 1;                                          // GUARDED_BY(mu)
  uint32_t chunk = 1u << 20;                                    // GUARDED_BY(mu)
  uint64_t max_payload = wire::Limits{}.max_payload_bytes;      // GUARDED_BY(mu)
  State state = State::kConnected;                              // GUARDED_BY(mu)
  Connection::Stats stats;                                      // GUARDED_BY(mu)

  // Serializes frames on the socket. Held across a send (bounded by the
  // request's timeout) and the send-side progress callbacks; nothing waits
  // for the reader or for thread_mu while holding it.
  std::mutex write_mu;
  // The thread holding write_mu while it writes: a send() from one of its
  // progress callbacks is queued behind the frame instead of deadlocking.
  std::atomic<std::thread::id> writer{};
  std::vector<std::shared_ptr<Slot>> reentrant;  // GUARDED_BY(write_mu)
  // The live socket: changed with write_mu and fd_mu both held; writers read
  // it under write_mu, close() under fd_mu (which is never held for long).
  std::mutex fd_mu;
  std::shared_ptr<Socket> sock;
  uint64_t gen = 0;  // GUARDED_BY(write_mu)

  // Serializes starting, joining and detaching the reader thread.
  std::mutex thread_mu;
  std::thread reader;  // GUARDED_BY(thread_mu)
  std::atomic<bool> closing{false};

  // ---- Opening ----

  // Connects and says HELLO on the new socket (before any reader runs on it).
  Result<std::shared_ptr<Socket>> open() {
    auto fd_r = tcp_connect(opts.node, opts.connect_timeout);
    if (!fd_r) return std::move(fd_r).error();
    auto s = std::make_shared<Socket>(*fd_r);
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
    set_recv_timeout(s->fd, opts.connect_timeout);
    if (!write_all(s->fd, iov, 2, opts.connect_timeout))
      return lost("HELLO: write failed: " + errno_text(errno));
    wire::HeaderBytes rb;
    if (!read_all(s->fd, rb.data(), rb.size()))
      return lost("HELLO: no reply from " + opts.node.str());
    auto rh = wire::decode_header(rb, wire::Limits{});
    if (!rh) return with_context(std::move(rh).error(), "HELLO reply");
    if (!rh->is_reply() || rh->opcode != Opcode::kHello || rh->request_id != id) {
      return make_error(Status::kBadFrame, "HELLO: the node answered with another frame");
    }
    Bytes rp(rh->payload_len);
    if (!read_all(s->fd, rp.data(), rp.size())) return lost("HELLO: reply cut short");
    if (wire::frame_checksum(rb, {}, rp) != rh->checksum) {
      return make_error(Status::kChecksumMismatch, "HELLO reply checksum mismatch");
    }
    if (rh->status != Status::kOk)
      return Error{rh->status, "HELLO: " + std::string(wire::as_chars(rp))};
    auto reply = wire::decode_payload<wire::HelloReply>(rp, wire::Limits{});
    if (!reply) return with_context(std::move(reply).error(), "HELLO reply");
    set_recv_timeout(s->fd, std::chrono::milliseconds(0));
    std::lock_guard lock(mu);
    hello = std::move(reply).value();
    const auto& L = hello.limits;
    window = std::clamp<uint32_t>(L.max_inflight, 1, kMaxWindow);
    max_payload = L.max_payload_bytes != 0 ? L.max_payload_bytes : wire::Limits{}.max_payload_bytes;
    uint32_t max_chunk = L.max_payload_bytes > 4096 ? L.max_payload_bytes - 64 : 4096;
    chunk = std::max<uint32_t>(4096, std::min(opts.max_chunk_bytes, max_chunk));
    stats.window = window;
    return s;
  }

  // Marks this thread as the writer while it holds write_mu.
  struct WriterScope {
    explicit WriterScope(ConnectionImpl& c) : c_(c) { c_.writer = std::this_thread::get_id(); }
    ~WriterScope() { c_.writer = std::thread::id{}; }
    WriterScope(const WriterScope&) = delete;
    WriterScope& operator=(const WriterScope&) = delete;
    ConnectionImpl& c_;
  };

  // Makes `s` the live socket and (re)sends every outstanding request that
  // was not yet written on it; fails those that are unsafe to repeat. False
  // (and `s` dropped) when the connection is closing.
  bool install(std::shared_ptr<Socket> s) {
    std::lock_guard wl(write_mu);
    WriterScope ws(*this);
    {
      std::lock_guard fl(fd_mu);
      // close() sets closing before it shuts the live socket down under
      // fd_mu: either it sees `s` here, or we see closing.
      if (closing.load()) return false;
      sock = std::move(s);
      ++gen;
    }
    std::vector<std::shared_ptr<Slot>> todo;
    {
      std::lock_guard lock(mu);
      for (auto& [id, slot] : pending) todo.push_back(slot);
      if (state != State::kClosed) state = State::kConnected;
    }
    std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    for (auto& slot : todo) {
      if (slot->written_gen != 0 && !slot->retry_safe) {
        complete(slot->id, lost(std::string(wire::opcode_name(slot->op)) +
                                ": connection lost with the request in flight; not resent "
                                "because repeating it is not safe"));
        continue;
      }
      const bool resend = slot->written_gen != 0;
      if (resend) {
        std::lock_guard lock(mu);
        slot->resent = true;
      }
      if (!write_locked(*slot)) break;  // the reader will notice and reconnect again
      if (resend) {
        std::lock_guard lock(mu);
        stats.resent++;
      }
    }
    drain_reentrant_locked();
    return true;
  }

  // ---- Writing ----

  // REQUIRES: write_mu held.
  bool write_locked(Slot& slot) {
    if (slot.written_gen == gen || !sock) return true;
    std::shared_ptr<const Bytes> held;
    {
      std::lock_guard lock(mu);
      if (slot.done) return true;  // answered, timed out or failed meanwhile
      held = slot.payload;
    }
    static const Bytes kNone;
    const Bytes& payload = held ? *held : kNone;
    const int fd = sock->fd;
    const auto stall = slot.timeout;
    wire::FrameHeader h;
    h.opcode = slot.op;
    h.request_id = slot.id;
    h.lease_id = slot.lease_id;
    auto hb = wire::encode_header(h, slot.token, payload);
    // iovec wants non-const pointers; sendmsg only reads through them.
    auto* p = const_cast<std::byte*>(payload.data());
    bool ok;
    if (!slot.progress || payload.size() <= kProgressStep) {
      iovec iov[3] = {
          {hb.data(), hb.size()}, {slot.token.data(), slot.token.size()}, {p, payload.size()}};
      ok = write_all(fd, iov, 3, stall);
      if (ok && slot.progress) slot.progress(payload.size(), payload.size());
    } else {
      iovec iov[2] = {{hb.data(), hb.size()}, {slot.token.data(), slot.token.size()}};
      ok = write_all(fd, iov, 2, stall);
      for (size_t at = 0; ok && at < payload.size(); at += kProgressStep) {
        size_t n = std::min(kProgressStep, payload.size() - at);
        iovec part{p + at, n};
        ok = write_all(fd, &part, 1, stall);
        if (ok) slot.progress(at + n, payload.size());
      }
    }
    if (!ok) {
      // A partial frame leaves the stream unusable: make the reader reconnect.
      sock->shutdown();
      return false;
    }
    slot.written_gen = gen;
    return true;
  }

  // REQUIRES: write_mu held by this thread (as writer).
  void drain_reentrant_locked() {
    while (!reentrant.empty()) {
      auto slot = std::move(reentrant.front());
      reentrant.erase(reentrant.begin());
      (void)write_locked(*slot);
    }
  }

  void write(const std::shared_ptr<Slot>& slot) {
    if (writer.load() == std::this_thread::get_id()) {
      // send() from a progress callback of a frame this thread is writing:
      // this thread holds write_mu; the frame goes out after the current one.
      reentrant.push_back(slot);
      return;
    }
    std::lock_guard wl(write_mu);
    WriterScope ws(*this);
    (void)write_locked(*slot);
    drain_reentrant_locked();
  }

  // ---- Completing ----

  void complete(uint64_t id, Result<Reply> r) {
    std::lock_guard lock(mu);
    auto it = pending.find(id);
    if (it == pending.end()) return;  // a late reply to a request we gave up on
    Slot& slot = *it->second;
    if (!r && r.status() == Status::kLeaseExpired && slot.op == Opcode::kLeaseRelease &&
        slot.resent) {
      // The first LEASE_RELEASE ended the lease before the connection dropped;
      // the resend finds it gone. The release worked.
      r = Reply{wire::FrameHeader{}, Bytes()};
    }
    slot.result.emplace(std::move(r));
    slot.done = true;
    slot.payload.reset();  // a writer still sending holds its own reference
    pending.erase(it);
    cv.notify_all();
  }

  void fail_all(const Error& e) {
    std::lock_guard lock(mu);
    for (auto& [id, slot] : pending) {
      slot->result.emplace(with_context(e, wire::opcode_name(slot->op)));
      slot->done = true;
      slot->payload.reset();
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
      std::shared_ptr<Slot> slot;
      {
        std::lock_guard lock(mu);
        auto it = pending.find(h->request_id);
        if (it != pending.end() && it->second->progress) slot = it->second;
      }
      Bytes payload(h->payload_len);
      if (!slot || payload.size() <= kProgressStep) {
        if (!read_all(s, payload.data(), payload.size())) return "connection closed mid-reply";
      } else {
        for (size_t at = 0; at < payload.size(); at += kProgressStep) {
          size_t n = std::min(kProgressStep, payload.size() - at);
          if (!read_all(s, payload.data() + at, n)) return "connection closed mid-reply";
          bool waited_for;
          {
            std::lock_guard lock(mu);
            waited_for = !slot->done;  // not after wait() gave up on it
          }
          if (waited_for) slot->progress(at + n, payload.size());
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

  void reader_main(std::shared_ptr<Socket> s) {
    for (;;) {
      std::string why = read_loop(s->fd);
      s->shutdown();  // writers fail at once instead of filling a dead socket
      s.reset();      // closed once no writer uses it
      if (closing.load()) {
        fail_all(lost("connection closed"));
        return;
      }
      {
        std::lock_guard lock(mu);
        if (state != State::kClosed) state = State::kReconnecting;
      }
      Result<std::shared_ptr<Socket>> next = lost(why);
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
        return;
      }
      s = *next;
      if (!install(s)) {
        fail_all(lost("connection closed"));
        return;
      }
      std::lock_guard lock(mu);
      stats.reconnects++;
    }
  }

  // REQUIRES: thread_mu held.
  void start_reader_locked(std::shared_ptr<Socket> s) {
    // The reader keeps the state alive: close() may leave it to finish alone.
    reader = std::thread([self = shared_from_this(), s = std::move(s)]() mutable {
      self->reader_main(std::move(s));
    });
  }

  // After the reader gave up: one synchronous attempt to reconnect, on the
  // next request.
  void revive() {
    std::lock_guard tl(thread_mu);
    if (closing.load()) return;
    {
      std::lock_guard lock(mu);
      if (state != State::kFailed) return;
    }
    if (reader.joinable()) reader.join();  // it gave up; it is finishing
    auto s = open();
    if (!s) return;
    if (!install(*s)) return;
    {
      std::lock_guard lock(mu);
      stats.reconnects++;
    }
    start_reader_locked(std::move(s).value());
  }

  void close() {
    bool was_closed = closing.exchange(true);
    {
      std::lock_guard lock(mu);
      state = State::kClosed;
    }
    {
      // Not write_mu: a sender blocked on a full socket holds it; shutting the
      // socket down is what makes it return.
      std::shared_ptr<Socket> s;
      {
        std::lock_guard fl(fd_mu);
        s = sock;
      }
      if (s) s->shutdown();
    }
    // The reader thread, or a writer inside a progress callback (which holds
    // write_mu the reader may be waiting for), must not wait for the reader:
    // the reader then finishes alone, holding what it uses.
    const auto me = std::this_thread::get_id();
    if (writer.load() != me) {
      std::lock_guard tl(thread_mu);
      if (reader.joinable()) {
        if (reader.get_id() == me) {
          reader.detach();
        } else {
          reader.join();
        }
      }
    }
    if (!was_closed) fail_all(lost("connection closed"));
  }

  std::shared_ptr<Slot> enqueue(Opcode op, Bytes payload, RequestOptions& o) {
    auto slot = std::make_shared<Slot>();
    slot->op = op;
    slot->lease_id = o.lease_id;
    const uint64_t payload_size = payload.size();
    slot->payload = std::make_shared<const Bytes>(std::move(payload));
    slot->retry_safe = o.retry_safe;
    slot->timeout = o.timeout.count() > 0 ? o.timeout : opts.request_timeout;
    slot->progress = std::move(o.progress);
    auto finish = [&](Error e) {
      slot->result.emplace(std::move(e));
      slot->done = true;
      slot->payload.reset();
      return slot;
    };
    bool needs_revive;
    {
      std::lock_guard lock(mu);
      needs_revive = state == State::kFailed;
    }
    // Not from a progress callback of a frame being written (write_mu is held).
    if (needs_revive && writer.load() != std::this_thread::get_id()) revive();
    std::unique_lock lock(mu);
    if (payload_size > max_payload) {
      return finish(Error{Status::kFrameTooLarge,
                          std::string(wire::opcode_name(op)) + ": payload of " +
                              std::to_string(payload_size) + " bytes exceeds the node's limit of " +
                              std::to_string(max_payload) + " bytes"});
    }
    const bool with_token = op != Opcode::kHello && op != Opcode::kPing;
    if (with_token) slot->token = o.token.empty() ? token : std::move(o.token);
    auto deadline = Clock::now() + slot->timeout;
    bool room = cv.wait_until(lock, deadline, [&] {
      return pending.size() < window || state == State::kClosed || state == State::kFailed;
    });
    if (state == State::kClosed || state == State::kFailed) {
      return finish(
          lost(std::string(wire::opcode_name(op)) + ": not connected to " + opts.node.str()));
    }
    if (!room) {
      return finish(make_error(Status::kBusy, std::string(wire::opcode_name(op)) +
                                                  ": no request slot free within the timeout"));
    }
    slot->id = next_id++;
    pending.emplace(slot->id, slot);
    stats.requests++;
    stats.max_inflight =
        std::max<uint32_t>(stats.max_inflight, static_cast<uint32_t>(pending.size()));
    const bool connected = state == State::kConnected;
    lock.unlock();
    if (connected) write(slot);
    // Otherwise install() writes it once the connection is back.
    return slot;
  }

  Result<Reply> wait(const std::shared_ptr<Slot>& slot) {
    std::unique_lock lock(mu);
    if (!cv.wait_until(lock, Clock::now() + slot->timeout, [&] { return slot->done; })) {
      pending.erase(slot->id);
      slot->done = true;  // no more progress calls; a writer skips it
      slot->payload.reset();
      cv.notify_all();
      return make_error(Status::kBusy, std::string(wire::opcode_name(slot->op)) +
                                           ": no reply within " +
                                           std::to_string(slot->timeout.count()) + " ms");
    }
    if (!slot->result) return make_error(Status::kInternal, "PendingReply::wait() called twice");
    Result<Reply> r = std::move(*slot->result);
    slot->result.reset();
    return r;
  }
};

// What Connection handles share: closing the connection when the last handle
// goes, while the reader may outlive it holding the ConnectionImpl.
struct ConnectionOwner {
  explicit ConnectionOwner(std::shared_ptr<ConnectionImpl> i) : impl(std::move(i)) {}
  ~ConnectionOwner() { impl->close(); }
  ConnectionOwner(const ConnectionOwner&) = delete;
  ConnectionOwner& operator=(const ConnectionOwner&) = delete;
  std::shared_ptr<ConnectionImpl> impl;
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
    std::lock_guard fl(impl->fd_mu);
    impl->sock = *s;
    impl->gen = 1;
  }
  {
    std::lock_guard tl(impl->thread_mu);
    impl->start_reader_locked(std::move(s).value());
  }
  // Handles share the owner (which closes on the last one); the reader holds
  // the ConnectionImpl itself.
  auto owner = std::make_shared<detail::ConnectionOwner>(impl);
  return Connection(std::shared_ptr<detail::ConnectionImpl>(owner, impl.get()));
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

bool Connection::connected() const {
  std::lock_guard lock(impl_->mu);
  return impl_->state == detail::ConnectionImpl::State::kConnected;
}

void Connection::close() const {
  impl_->close();
}

}  // namespace gpulease::client
