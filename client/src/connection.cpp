// Connection: blocking POSIX sockets and no thread of its own.
//
// A caller waiting for a reply reads the socket itself when nobody else does
// (leader/follower), and a caller sending a request writes it itself when
// nobody else is writing: a lone caller's round trip is one write and one
// read on its own thread, as with a raw socket. See ConnectionImpl below for
// who does what; there is one mutex, `mu`, never held across I/O.
//
// Why blocking sockets rather than an event loop: a tenant program calls the
// library from its own threads and waits for results; this keeps Asio out of
// the public headers and the installed package.
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
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "gpulease/capability/token.hpp"
#include "gpulease/wire/host_port.hpp"

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
// Receive buffer per socket: small replies are parsed out of it, so one
// recv() can bring several pipelined replies.
constexpr size_t kInboxBytes = 64u << 10;
// A payload up to kInboxBytes - kFrameSlack is read through the inbox.
constexpr size_t kFrameSlack = 64;
// SO_RCVTIMEO of every socket: the longest one blocking recv() waits before
// the reader looks at its deadline again.
constexpr int kRecvSliceMs = 100;

enum class IoResult { kOk, kIdle, kBroken };

Error lost(std::string msg) {
  return Error::connection_lost(std::move(msg));
}

std::string errno_text(int e) {
  return std::strerror(e);
}

int clamp_ms(std::chrono::milliseconds d) {
  return static_cast<int>(std::clamp<int64_t>(d.count(), 1, std::numeric_limits<int>::max()));
}

// Writes every byte of the iovecs, giving up when the socket takes nothing
// for `stall` (a peer that stops reading cannot hang a sender forever). While
// the socket is full and replies wait to be read, `on_readable` (if given)
// reads them; it returns false when it could not (another thread reads), and
// is not asked again until the socket has been polled for writing alone.
// False on error or stall (errno ETIMEDOUT).
bool write_all(int fd, struct iovec* iov, int n, std::chrono::milliseconds stall,
               const std::function<bool()>& on_readable) {
  const auto stall_d = std::chrono::milliseconds(clamp_ms(stall));
  auto last_progress = Clock::now();
  bool help = static_cast<bool>(on_readable);
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      const auto waited = Clock::now() - last_progress;
      if (waited >= stall_d) {
        errno = ETIMEDOUT;
        return false;
      }
      int left =
          static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(stall_d - waited).count());
      pollfd p{fd, static_cast<short>(POLLOUT | (help ? POLLIN : 0)), 0};
      int pr = ::poll(&p, 1, help ? left : std::min(left, 10));
      if (pr < 0 && errno != EINTR) return false;
      if (pr > 0 && help && (p.revents & POLLIN) != 0 && (p.revents & POLLOUT) == 0) {
        help = on_readable();
      } else if (!help) {
        help = static_cast<bool>(on_readable);
      }
      continue;
    }
    last_progress = Clock::now();
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

// Reads exactly `len` bytes, each wait bounded by `stall_ms`. False on EOF,
// error or stall.
bool recv_all(int fd, std::byte* p, size_t len, int stall_ms) {
  while (len > 0) {
    ssize_t r = ::recv(fd, p, len, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      len -= static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd pf{fd, POLLIN, 0};
    int pr = ::poll(&pf, 1, stall_ms);
    if (pr == 0) return false;
    if (pr < 0 && errno != EINTR) return false;
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
  bool timed_out = false;
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
      timed_out = timed_out || errno == ETIMEDOUT;
      last = errno_text(errno);
      ::close(s);
      continue;
    }
    ::fcntl(s, F_SETFL, flags);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    timeval slice{0, kRecvSliceMs * 1000};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice);
    fd = s;
  }
  ::freeaddrinfo(res);
  if (fd < 0 && timed_out) {
    return Error::timeout("cannot connect to " + addr.str() + ": no answer within " +
                          std::to_string(timeout.count()) + " ms");
  }
  if (fd < 0) return lost("cannot connect to " + addr.str() + ": " + last);
  return fd;
}

uint64_t random_u64() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

}  // namespace

// ---- NodeAddress ---------------------------------------------------------------

Result<NodeAddress> NodeAddress::parse(std::string_view text) {
  auto hp = wire::parse_host_port(text);
  if (!hp) return std::move(hp).error();
  return NodeAddress{std::move(hp->host), hp->port};
}

std::string NodeAddress::str() const {
  return wire::format_host_port(host, port);
}

Result<Bytes> token_from_text(std::string_view text) {
  return capability::decode_token_text(text);
}

// ---- Shared state ----------------------------------------------------------------

namespace detail {

// One socket, closed when the last user lets go of it: the thread reading it,
// the thread writing it and close() each hold a reference while they use the
// descriptor, so its number is never reused under them.
struct Socket {
  explicit Socket(int f) : fd(f), inbox(kInboxBytes) {}
  ~Socket() { ::close(fd); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  void shutdown() const { ::shutdown(fd, SHUT_RDWR); }
  const int fd;
  // Bytes received and not yet parsed: [in_begin, in_end). Touched only by
  // the thread reading the socket (the leader, or open() before the socket
  // is shared); leadership passes under ConnectionImpl::mu.
  Bytes inbox;
  size_t in_begin = 0;
  size_t in_end = 0;
};

namespace {

// ---- The read path: one reply frame off a socket -------------------------------

int ms_until(Clock::time_point deadline) {
  auto now = Clock::now();
  if (deadline <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

// Receives more bytes into the inbox. `wait_ms`: how long to wait for the
// first of them (0: not at all).
// While at least a receive slice is left to wait, it waits in one blocking
// recv() (bounded by the socket's SO_RCVTIMEO, kRecvSliceMs): a reply costs
// one system call, as with a raw blocking client. A shorter wait polls.
IoResult fill(Socket& s, int wait_ms) {
  if (s.in_begin == s.in_end) {
    s.in_begin = s.in_end = 0;
  } else if (s.in_end == s.inbox.size()) {
    std::memmove(s.inbox.data(), s.inbox.data() + s.in_begin, s.in_end - s.in_begin);
    s.in_end -= s.in_begin;
    s.in_begin = 0;
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    const int left = wait_ms == 0 ? 0 : ms_until(deadline);
    int flags = MSG_DONTWAIT;
    if (left >= kRecvSliceMs) {
      flags = 0;
    } else if (left > 0) {
      pollfd p{s.fd, POLLIN, 0};
      int pr = ::poll(&p, 1, left);
      if (pr == 0) return IoResult::kIdle;
      if (pr < 0) {
        if (errno == EINTR) continue;
        return IoResult::kBroken;
      }
    }
    ssize_t r = ::recv(s.fd, s.inbox.data() + s.in_end, s.inbox.size() - s.in_end, flags);
    if (r > 0) {
      s.in_end += static_cast<size_t>(r);
      return IoResult::kOk;
    }
    if (r == 0) return IoResult::kBroken;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return IoResult::kBroken;
    if (left == 0) return IoResult::kIdle;
  }
}

// Makes at least `n` (<= inbox size) bytes available, each wait bounded by `stall_ms`.
bool fill_to(Socket& s, size_t n, int stall_ms) {
  while (s.in_end - s.in_begin < n) {
    if (fill(s, stall_ms) != IoResult::kOk) return false;
  }
  return true;
}

struct Frame {
  wire::FrameHeader header;
  Bytes payload;
};

// Reads one reply frame and checks it (header, reply flag, checksum).
// `first_wait_ms`: how long to wait for the frame to start (kIdle when it
// does not); once it has, each wait for more is bounded by `stall_ms` (a node
// that stops mid-frame breaks the connection). `progress_for(header)` names
// the function to call as a large payload arrives (or nothing); it is called
// with (done, total) after each kProgressStep.
template <typename ProgressFor>
IoResult read_frame(Socket& s, int first_wait_ms, int stall_ms, Frame& out, std::string& why,
                    ProgressFor&& progress_for) {
  if (s.in_begin == s.in_end) {
    IoResult r = fill(s, first_wait_ms);
    if (r == IoResult::kIdle) return r;
    if (r == IoResult::kBroken) {
      why = "connection closed by the node";
      return r;
    }
  }
  wire::HeaderBytes hb;
  if (!fill_to(s, hb.size(), stall_ms)) {
    why = "connection closed mid-reply";
    return IoResult::kBroken;
  }
  std::memcpy(hb.data(), s.inbox.data() + s.in_begin, hb.size());
  s.in_begin += hb.size();
  auto h = wire::decode_header(hb, wire::Limits{});
  if (!h) {
    why = "bad reply header: " + h.error().message;
    return IoResult::kBroken;
  }
  if (!h->is_reply()) {
    why = "the node sent a request frame";
    return IoResult::kBroken;
  }
  if (h->token_len != 0) {
    why = "reply carries a token";
    return IoResult::kBroken;
  }
  Bytes payload(h->payload_len);
  const size_t buffered = std::min<size_t>(payload.size(), s.in_end - s.in_begin);
  if (payload.size() <= s.inbox.size() - kFrameSlack) {
    if (!fill_to(s, payload.size(), stall_ms)) {
      why = "connection closed mid-reply";
      return IoResult::kBroken;
    }
    if (!payload.empty()) std::memcpy(payload.data(), s.inbox.data() + s.in_begin, payload.size());
    s.in_begin += payload.size();
  } else {
    // Large: what is buffered, then straight into the payload.
    std::memcpy(payload.data(), s.inbox.data() + s.in_begin, buffered);
    s.in_begin += buffered;
    ProgressFn progress = progress_for(*h);
    size_t at = buffered;
    size_t next_report = kProgressStep;
    while (at < payload.size()) {
      size_t n = std::min(kProgressStep, payload.size() - at);
      if (!recv_all(s.fd, payload.data() + at, n, stall_ms)) {
        why = "connection closed mid-reply";
        return IoResult::kBroken;
      }
      at += n;
      if (progress && (at >= next_report || at == payload.size())) {
        progress(at, payload.size());
        next_report = at + kProgressStep;
      }
    }
  }
  if (wire::frame_checksum(hb, {}, payload) != h->checksum) {
    why = "reply checksum mismatch";
    return IoResult::kBroken;
  }
  out.header = *h;
  out.payload = std::move(payload);
  return IoResult::kOk;
}

// ---- The write path: one request frame onto a socket -----------------------------

// Writes header, token and payload; calls `progress` after each kProgressStep
// of a large payload. False on error or when the socket takes nothing for
// `stall` (errno ETIMEDOUT). `on_readable` runs while the socket is full and
// replies are waiting to be read (see write_all).
bool write_frame(int fd, const wire::FrameHeader& h, ByteSpan token, ByteSpan payload,
                 const ProgressFn& progress, std::chrono::milliseconds stall,
                 const std::function<bool()>& on_readable) {
  auto hb = wire::encode_header(h, token, payload);
  // iovec wants non-const pointers; sendmsg only reads through them.
  auto* t = const_cast<std::byte*>(token.data());
  auto* p = const_cast<std::byte*>(payload.data());
  if (!progress || payload.size() <= kProgressStep) {
    iovec iov[3] = {{hb.data(), hb.size()}, {t, token.size()}, {p, payload.size()}};
    if (!write_all(fd, iov, 3, stall, on_readable)) return false;
    if (progress) progress(payload.size(), payload.size());
    return true;
  }
  iovec iov[2] = {{hb.data(), hb.size()}, {t, token.size()}};
  if (!write_all(fd, iov, 2, stall, on_readable)) return false;
  for (size_t at = 0; at < payload.size(); at += kProgressStep) {
    size_t n = std::min(kProgressStep, payload.size() - at);
    iovec part{p + at, n};
    if (!write_all(fd, &part, 1, stall, on_readable)) return false;
    progress(at + n, payload.size());
  }
  return true;
}

}  // namespace

struct Slot {
  // Set before the slot is shared, then read-only.
  uint64_t id = 0;
  Opcode op = Opcode::kPing;
  uint64_t lease_id = 0;
  Bytes token;
  bool retry_safe = true;
  std::chrono::milliseconds timeout{0};
  ProgressFn progress;
  // GUARDED_BY(ConnectionImpl::mu)
  // Kept until the reply, for a resend after a reconnect. The writer takes
  // its own reference before sending, so a reply that arrives while the
  // frame is still going out cannot free the bytes being sent.
  std::shared_ptr<const Bytes> payload;
  uint64_t written_gen = 0;  // socket generation it went out on (0 = none)
  bool resent = false;
  bool done = false;
  std::optional<Result<Reply>> result;
};

// Who does what (all under `mu`, the only lock):
//  - the writer: the one thread with `writing` set writes the frames queued
//    in `outq`, one after another, without holding `mu`. A sender that finds
//    no writer becomes it for its own frame (no hand-off); one that finds a
//    writer leaves its frame in the queue for it.
//  - the leader: the one thread with `leader` set reads the socket, without
//    holding `mu`, and completes whichever request each reply answers. A
//    caller waiting for a reply (or for an in-flight slot) that finds no
//    leader becomes it, so a lone caller reads its own reply (no hand-off);
//    the others wait on `cv` and one of them takes over when the leader's
//    own reply has come. The leader also reconnects when the socket fails.
//  - a writer blocked on a full socket reads replies itself when no leader
//    is active (a node blocked writing replies nobody reads would never read
//    the rest of the frame).
struct ConnectionImpl {
  enum class State { kConnected, kReconnecting, kFailed, kClosed };

  explicit ConnectionImpl(ConnectOptions o)
      : opts(std::move(o)), token(opts.token), next_id(random_u64()) {}

  const ConnectOptions opts;

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
  std::shared_ptr<Socket> sock;                                 // GUARDED_BY(mu)
  uint64_t gen = 0;                                             // GUARDED_BY(mu)
  std::deque<std::shared_ptr<Slot>> outq;                       // GUARDED_BY(mu)
  bool writing = false;                                         // GUARDED_BY(mu)
  bool leader = false;                                          // GUARDED_BY(mu)

  // ---- Opening ----

  // Connects and says HELLO on the new socket, through the same write and
  // read paths as every other frame, before the socket is shared.
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
    const Bytes payload = wire::encode_payload(hr);
    wire::FrameHeader h;
    h.opcode = Opcode::kHello;
    h.request_id = id;
    if (!write_frame(s->fd, h, {}, payload, {}, opts.connect_timeout, {}))
      return lost("HELLO: write failed: " + errno_text(errno));
    Frame f;
    std::string why;
    const int wait = clamp_ms(opts.connect_timeout);
    const IoResult got =
        read_frame(*s, wait, wait, f, why, [](const wire::FrameHeader&) { return ProgressFn{}; });
    if (got == IoResult::kIdle) {
      return Error::timeout("HELLO: no reply from " + opts.node.str() + " within " +
                            std::to_string(wait) + " ms");
    }
    if (got != IoResult::kOk) {
      return lost("HELLO: no reply from " + opts.node.str() + (why.empty() ? "" : ": " + why));
    }
    if (f.header.opcode != Opcode::kHello || f.header.request_id != id) {
      return make_error(Status::kBadFrame, "HELLO: the node answered with another frame");
    }
    if (f.header.status != Status::kOk)
      return Error::node(f.header.status, "HELLO: " + std::string(wire::as_chars(f.payload)));
    auto reply = wire::decode_payload<wire::HelloReply>(f.payload, wire::Limits{});
    if (!reply) return with_context(std::move(reply).error(), "HELLO reply");
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

  // Makes `s` the live socket and queues every outstanding request for it:
  // those not yet written, and those written on an earlier socket that are
  // safe to repeat (same request id); fails the others. False (and `s`
  // dropped) when the connection was closed meanwhile.
  bool install_locked(std::shared_ptr<Socket> s) {
    if (state == State::kClosed) return false;
    sock = std::move(s);
    ++gen;
    state = State::kConnected;
    std::vector<std::shared_ptr<Slot>> todo;
    todo.reserve(pending.size());
    for (auto& [id, slot] : pending) todo.push_back(slot);
    std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    outq.clear();
    for (auto& slot : todo) {
      if (slot->written_gen != 0 && !slot->retry_safe) {
        complete_locked(*slot, lost(std::string(wire::opcode_name(slot->op)) +
                                    ": connection lost with the request in flight; not resent "
                                    "because repeating it is not safe"));
        continue;
      }
      if (slot->written_gen != 0) {
        slot->resent = true;
        stats.resent++;
      }
      outq.push_back(slot);
    }
    return true;
  }

  // ---- Writing ----

  // Writes the queued frames unless another thread is doing so.
  // REQUIRES: lk holds mu.
  void flush_locked(std::unique_lock<std::mutex>& lk) {
    if (writing) return;
    writing = true;
    while (!outq.empty()) {
      auto slot = std::move(outq.front());
      outq.pop_front();
      if (slot->done || !sock || state != State::kConnected || slot->written_gen == gen) continue;
      std::shared_ptr<Socket> s = sock;
      const uint64_t g = gen;
      std::shared_ptr<const Bytes> held = slot->payload;
      lk.unlock();
      static const Bytes kNone;
      const Bytes& payload = held ? *held : kNone;
      wire::FrameHeader h;
      h.opcode = slot->op;
      h.request_id = slot->id;
      h.lease_id = slot->lease_id;
      const bool ok = write_frame(s->fd, h, slot->token, payload, slot->progress, slot->timeout,
                                  [this, &s] { return help_read(s); });
      // A partial frame leaves the stream unusable: the next reader sees the
      // socket fail and reconnects.
      if (!ok) s->shutdown();
      held.reset();
      lk.lock();
      if (!ok || slot->done) continue;
      slot->written_gen = g;
      if (g != gen) {
        // It went out on a socket that was replaced meanwhile, and
        // install_locked() queued it again as never sent: the node may have
        // run it, so it is now a resend, or fails if that is not safe.
        if (!slot->retry_safe) {
          complete_locked(*slot, lost(std::string(wire::opcode_name(slot->op)) +
                                      ": connection lost with the request in flight; not resent "
                                      "because repeating it is not safe"));
        } else if (!slot->resent) {
          slot->resent = true;
          stats.resent++;
        }
      }
    }
    writing = false;
  }

  // ---- Reading ----

  // Completes the request `f` answers (a late reply to a request given up on
  // is dropped). REQUIRES: mu held.
  void deliver_locked(Frame&& f) {
    stats.replies++;
    auto it = pending.find(f.header.request_id);
    if (it == pending.end()) return;
    auto slot = it->second;
    if (f.header.status != Status::kOk) {
      complete_locked(*slot, Error::node(f.header.status, std::string(wire::as_chars(f.payload))));
    } else {
      complete_locked(*slot, Reply{f.header, std::move(f.payload)});
    }
  }

  // REQUIRES: mu held.
  void complete_locked(Slot& slot, Result<Reply> r) {
    slot.result.emplace(std::move(r));
    slot.done = true;
    slot.payload.reset();  // a writer still sending holds its own reference
    pending.erase(slot.id);
    cv.notify_all();
  }

  // REQUIRES: mu held.
  void fail_all_locked(const Error& e) {
    for (auto& [id, slot] : pending) {
      slot->result.emplace(with_context(e, wire::opcode_name(slot->op)));
      slot->done = true;
      slot->payload.reset();
    }
    pending.clear();
    outq.clear();
    cv.notify_all();
  }

  // The function to call as a large reply arrives: the request's progress,
  // as long as someone still waits for it.
  ProgressFn progress_for(const wire::FrameHeader& h) {
    std::shared_ptr<Slot> slot;
    {
      std::lock_guard lock(mu);
      auto it = pending.find(h.request_id);
      if (it == pending.end() || !it->second->progress) return {};
      slot = it->second;
    }
    return [this, slot](uint64_t done, uint64_t total) {
      {
        std::lock_guard lock(mu);
        if (slot->done) return;  // wait() gave up on it
      }
      slot->progress(done, total);
    };
  }

  IoResult read_one(Socket& s, int wait_ms, Frame& f, std::string& why) {
    return read_frame(s, wait_ms, clamp_ms(opts.request_timeout), f, why,
                      [this](const wire::FrameHeader& h) { return progress_for(h); });
  }

  // Run by a writer blocked on a full socket `s`: reads the replies waiting
  // there when no leader does. False when it could not (someone else reads).
  bool help_read(const std::shared_ptr<Socket>& s) {
    {
      std::lock_guard lock(mu);
      if (leader || sock != s || state != State::kConnected) return false;
      leader = true;
    }
    Frame f;
    std::string why;
    IoResult r = IoResult::kOk;
    for (int n = 0; n < 64 && r == IoResult::kOk; ++n) {
      r = read_one(*s, 0, f, why);
      if (r == IoResult::kOk) {
        std::lock_guard lock(mu);
        deliver_locked(std::move(f));
      }
    }
    if (r == IoResult::kBroken) s->shutdown();  // the next leader reconnects
    std::lock_guard lock(mu);
    leader = false;
    cv.notify_all();
    return true;
  }

  // Runs the connection until pred() holds or the deadline passes (with
  // `block` false: only reads what has already arrived). Returns pred().
  // REQUIRES: lk holds mu.
  template <typename Pred>
  bool drive(std::unique_lock<std::mutex>& lk, Pred pred, Clock::time_point deadline, bool block) {
    while (!pred()) {
      if (state == State::kClosed || state == State::kFailed) return false;
      if (leader) {
        // Someone reads for everyone; it wakes us when a reply completes,
        // and when it stops leading.
        if (!block) return false;
        if (cv.wait_until(lk, deadline) == std::cv_status::timeout) return pred();
        continue;
      }
      leader = true;
      lead(lk, pred, deadline, block);
      leader = false;
      cv.notify_all();  // another waiter may take over
      return pred();
    }
    return true;
  }

  // The leader's loop: reads and delivers replies until pred() holds, the
  // deadline passes, or the connection is closed or lost for good.
  // REQUIRES: lk holds mu; this thread is the leader.
  template <typename Pred>
  void lead(std::unique_lock<std::mutex>& lk, Pred& pred, Clock::time_point deadline, bool block) {
    Frame f;
    std::string why;
    while (!pred()) {
      if (state != State::kConnected || !sock) return;
      std::shared_ptr<Socket> s = sock;
      const int wait_ms = block ? ms_until(deadline) : 0;
      lk.unlock();
      IoResult r = read_one(*s, wait_ms, f, why);
      lk.lock();
      if (r == IoResult::kOk) {
        deliver_locked(std::move(f));
        continue;
      }
      if (r == IoResult::kIdle) {
        if (!block || Clock::now() >= deadline) return;
        continue;
      }
      if (s != sock) continue;  // already replaced
      reconnect(lk, why);
    }
  }

  // The live socket failed: reconnect with backoff, say HELLO again and
  // queue the outstanding requests. REQUIRES: lk holds mu; this thread leads.
  void reconnect(std::unique_lock<std::mutex>& lk, const std::string& why) {
    if (state == State::kClosed) return;  // close() failed everything
    state = State::kReconnecting;
    std::shared_ptr<Socket> old = std::move(sock);
    lk.unlock();
    old->shutdown();  // a writer fails at once instead of filling a dead socket
    old.reset();
    Result<std::shared_ptr<Socket>> next = lost(why);
    auto backoff = opts.reconnect_initial_backoff;
    for (unsigned attempt = 0; attempt < opts.reconnect_attempts && !closed(); ++attempt) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(opts.reconnect_max_backoff, backoff * 2);
      if (closed()) break;
      next = open();
      if (next.ok()) break;
      // A node that answers but refuses us will not change its mind.
      if (!next.error().is_connection_lost() && !next.error().is_timeout()) break;
    }
    lk.lock();
    if (state == State::kClosed) return;
    if (!next.ok()) {
      state = State::kFailed;
      fail_all_locked(lost("connection to " + opts.node.str() + " lost (" + why +
                           ") and not re-established: " + next.error().message()));
      return;
    }
    if (install_locked(std::move(next).value())) {
      stats.reconnects++;
      flush_locked(lk);
    }
  }

  bool closed() const {
    std::lock_guard lock(mu);
    return state == State::kClosed;
  }

  // After a reconnect gave up: one attempt, on the next request.
  // REQUIRES: lk holds mu.
  void revive(std::unique_lock<std::mutex>& lk) {
    if (state != State::kFailed || leader) return;
    leader = true;  // nobody else reads or reconnects meanwhile
    lk.unlock();
    auto s = open();
    lk.lock();
    if (s.ok() && state == State::kFailed) {
      state = State::kReconnecting;  // install_locked refuses only kClosed
      if (install_locked(std::move(s).value())) stats.reconnects++;
    }
    leader = false;
    cv.notify_all();
  }

  void close() {
    std::shared_ptr<Socket> s;
    {
      std::lock_guard lock(mu);
      if (state == State::kClosed) return;
      state = State::kClosed;
      s = std::move(sock);
      fail_all_locked(lost("connection closed"));
    }
    // A leader blocked reading it, or a writer blocked on a full socket,
    // returns at once.
    if (s) s->shutdown();
  }

  std::shared_ptr<Slot> enqueue(Opcode op, Bytes payload, RequestOptions& o) {
    auto slot = std::make_shared<Slot>();
    slot->op = op;
    slot->lease_id = o.lease_id;
    const uint64_t payload_size = payload.size();
    slot->timeout = o.timeout.count() > 0 ? o.timeout : opts.request_timeout;
    slot->progress = std::move(o.progress);
    auto finish = [&](Error e) {
      slot->result.emplace(std::move(e));
      slot->done = true;
      return slot;
    };
    const wire::OpcodeInfo* info = wire::find_opcode(static_cast<uint16_t>(op));
    if (info == nullptr) {
      return finish(make_error(Status::kInvalidArgument,
                               "opcode " + std::to_string(static_cast<uint16_t>(op)) +
                                   " is not in the protocol's opcode table"));
    }
    if (info->lease_rule == wire::LeaseRule::kZero && o.lease_id != 0) {
      return finish(make_error(
          Status::kInvalidArgument,
          std::string(info->name) + ": lease_id must be 0 for " + std::string(info->name)));
    }
    if (info->lease_rule == wire::LeaseRule::kRequired && o.lease_id == 0) {
      return finish(
          make_error(Status::kInvalidArgument, std::string(info->name) + ": lease_id required"));
    }
    slot->retry_safe = o.retry_safe.value_or(info->resend_safe);
    const bool with_token = info->needs_token;
    std::unique_lock lk(mu);
    if (state == State::kFailed) revive(lk);
    if (payload_size > max_payload) {
      return finish(Error::local(
          Status::kFrameTooLarge,
          std::string(wire::opcode_name(op)) + ": payload of " + std::to_string(payload_size) +
              " bytes exceeds the node's limit of " + std::to_string(max_payload) + " bytes"));
    }
    if (with_token) slot->token = o.token.empty() ? token : std::move(o.token);
    // A free in-flight slot: replies free them, so wait by reading them.
    const bool room = drive(
        lk, [&] { return pending.size() < window; }, Clock::now() + slot->timeout, true);
    if (state == State::kClosed || state == State::kFailed) {
      return finish(
          lost(std::string(wire::opcode_name(op)) + ": not connected to " + opts.node.str()));
    }
    if (!room) {
      return finish(Error::timeout(std::string(wire::opcode_name(op)) +
                                   ": no request slot free within " +
                                   std::to_string(slot->timeout.count()) + " ms"));
    }
    slot->payload = std::make_shared<const Bytes>(std::move(payload));
    slot->id = next_id++;
    pending.emplace(slot->id, slot);
    stats.requests++;
    stats.max_inflight =
        std::max<uint32_t>(stats.max_inflight, static_cast<uint32_t>(pending.size()));
    outq.push_back(slot);
    // While reconnecting the leader writes it once the connection is back.
    if (state == State::kConnected) flush_locked(lk);
    return slot;
  }

  Result<Reply> wait(const std::shared_ptr<Slot>& slot) {
    std::unique_lock lk(mu);
    if (!drive(
            lk, [&] { return slot->done; }, Clock::now() + slot->timeout, true)) {
      if (!slot->done) {
        pending.erase(slot->id);
        slot->done = true;  // no more progress calls; the writer skips it
        slot->payload.reset();
        cv.notify_all();
        return Error::timeout(std::string(wire::opcode_name(slot->op)) + ": no reply within " +
                              std::to_string(slot->timeout.count()) + " ms");
      }
    }
    if (!slot->result) return make_error(Status::kInternal, "PendingReply::wait() called twice");
    Result<Reply> r = std::move(*slot->result);
    slot->result.reset();
    return r;
  }

  bool ready(const std::shared_ptr<Slot>& slot) {
    std::unique_lock lk(mu);
    return drive(
        lk, [&] { return slot->done; }, Clock::now(), false);
  }
};

// What Connection handles share: closing the connection when the last handle
// goes (a PendingReply keeps only the ConnectionImpl alive).
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
  return conn_->ready(slot_);
}

bool PendingReply::resent() const {
  if (!slot_) return false;
  std::lock_guard lock(conn_->mu);
  return slot_->resent;
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
    std::lock_guard lock(impl->mu);
    impl->sock = std::move(s).value();
    impl->gen = 1;
  }
  // Handles share the owner (which closes on the last one).
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
