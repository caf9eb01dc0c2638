// A connection to one gpuleased node.
//
//   auto conn = gpulease::client::Connection::connect({.node = {"127.0.0.1", 7070},
//                                                      .token = token_bytes});
//   if (!conn) { ... conn.error() ... }
//   std::printf("%s runs %s\n", conn->node_info().node_id.c_str(),
//   conn->node_info().backend.c_str());
//
// What it does:
//  - TCP with TCP_NODELAY and keepalive; HELLO on connect (the node's limits,
//    devices and identity come back in node_info()).
//  - No thread of its own. send() writes the request on the caller's thread
//    (or leaves it to the thread already writing) and returns a PendingReply.
//    A caller in wait() reads the socket itself when no other thread is
//    reading, and completes whichever requests the replies answer; the other
//    waiters sleep until their reply is in or the reader steps down, and then
//    one of them takes over. A lone caller's round trip is thus one write and
//    one read on its own thread. Replies nobody waits for stay in the socket
//    until someone waits (or calls ready(), which reads what has arrived).
//  - Pipelining: replies may come back in any order and are matched by
//    request id. At most the node's announced max_inflight requests are
//    outstanding; send() beyond that reads replies (or waits for the reader)
//    until a slot frees (the node would answer BUSY).
//  - Reconnect: when the thread reading finds the connection dropped, it
//    reconnects with exponential backoff, says HELLO again and resends every
//    outstanding request marked retry-safe with the SAME request id (the
//    node's replay window then answers a repeated MEM_ALLOC / MODULE_LOAD with
//    its first answer; LEASE_ACQUIRE carries its own idempotency key).
//    Requests that are not safe to repeat (LAUNCH, MEM_FREE, MODULE_UNLOAD)
//    and were already on the old connection fail with a connection-lost
//    error (Error::is_connection_lost()).
//    PendingReply::resent() tells whether a reply answers a resend (what that
//    means for an op is its caller's business: see Lease::release()). A drop
//    is noticed by the next thread that reads. Request ids start at a random
//    64-bit base per Connection and never repeat within it.
//  - Errors (client::Error, errors.hpp): a reply with a non-OK status becomes
//    a kNodeStatus error carrying that wire status and the node's message; a
//    wait that runs past the request's timeout is kTimeout (never the node's
//    BUSY); a drop that could not be repaired is kConnectionLost; a request
//    refused before it was sent, or a reply that does not decode, is kLocal.
//
// THREAD SAFETY: Connection is a cheap, copyable handle to shared state;
// copies talk over the same socket; its members are const because they act on
// that shared state. Every member of Connection may be called from any thread,
// concurrently. A PendingReply belongs to one thread at a time (wait() once);
// different PendingReplies may be waited on from different threads at once.
// Progress callbacks run on whichever thread is writing the request (send
// side) or reading the reply (receive side) -- often the caller's own, with
// no library lock held. A callback may call send() and close(); it must not
// wait for a reply (wait(), call(), ping()): on the reading thread that waits
// for a reply only it would read, until the request's timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gpulease/client/errors.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"
#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::client {

struct NodeAddress {
  std::string host = "127.0.0.1";
  uint16_t port = 7070;

  // "HOST:PORT" or "[V6ADDR]:PORT". INVALID_ARGUMENT otherwise.
  [[nodiscard]] static Result<NodeAddress> parse(std::string_view text);
  [[nodiscard]] std::string str() const;
};

// Reads a token given as text ("glt1....") into its binary form.
// UNAUTHENTICATED when it is not a token's text form.
[[nodiscard]] Result<wire::Bytes> token_from_text(std::string_view text);

struct ConnectOptions {
  NodeAddress node;
  wire::Bytes token;  // binary capability token sent with every frame but HELLO/PING
  std::string client_name = "gpulease-client";
  std::chrono::milliseconds connect_timeout{5000};
  // How long wait() waits for any one reply before giving up (a kTimeout
  // error). HELLO waits at most connect_timeout (also kTimeout).
  std::chrono::milliseconds request_timeout{300'000};
  // Reconnect attempts after a drop (0 = never reconnect), with exponential
  // backoff from initial to max between attempts.
  unsigned reconnect_attempts = 8;
  std::chrono::milliseconds reconnect_initial_backoff{20};
  std::chrono::milliseconds reconnect_max_backoff{2000};
  // Largest MEM_WRITE / MEM_READ chunk (also capped below the node's max payload).
  uint32_t max_chunk_bytes = 4u << 20;
};

// One reply: its header (status OK) and payload.
struct Reply {
  wire::FrameHeader header;
  wire::Bytes payload;
};

// Called as bytes of a request (sending) or its reply (receiving) move; on
// the thread writing the frame while sending, on the thread reading replies
// while receiving (see THREAD SAFETY at the top). It may call send() and
// close() on the same Connection (a send from a send-side callback goes out
// after the frame); it must not wait for a reply.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct RequestOptions {
  uint64_t lease_id = 0;
  // Token for this frame instead of the connection's (scoped grants). Empty =
  // the connection's token.
  wire::Bytes token;
  // Whether the request may be resent after a reconnect (see top of file).
  // Unset: the opcode's resend_safe in wire::opcode_info().
  std::optional<bool> retry_safe;
  // May run once more after wait() gave up on the request: keep what it
  // captures alive until the Connection is closed (or capture shared state).
  ProgressFn progress;
  // How long this request may wait: for an in-flight slot, for the socket to
  // take more of the frame (a node that stops reading), and in wait() for
  // the reply; each gives up after it. 0 = the connection's request_timeout.
  std::chrono::milliseconds timeout{0};
};

namespace detail {
struct ConnectionImpl;
struct Slot;
}  // namespace detail

// The reply to one request, once it arrives.
class PendingReply {
 public:
  PendingReply() = default;
  // Blocks until the reply arrives (or the request fails). A reply with a
  // non-OK status is returned as a kNodeStatus Error; no reply within the
  // request's timeout is a kTimeout Error. May be called once.
  [[nodiscard]] Result<Reply> wait();
  // True once wait() would not block. Reads the replies that have already
  // arrived when no other thread is reading; never waits for one.
  [[nodiscard]] bool ready() const;
  // Whether the request was sent again after a reconnect (its reply may then
  // answer the resend: an op that ended something the first time may report
  // it as already ended). Meaningful after wait().
  [[nodiscard]] bool resent() const;
  [[nodiscard]] bool valid() const noexcept { return slot_ != nullptr; }
  [[nodiscard]] uint64_t request_id() const noexcept;

 private:
  friend class Connection;
  PendingReply(std::shared_ptr<detail::ConnectionImpl> c, std::shared_ptr<detail::Slot> s)
      : conn_(std::move(c)), slot_(std::move(s)) {}
  std::shared_ptr<detail::ConnectionImpl> conn_;
  std::shared_ptr<detail::Slot> slot_;
};

class Connection {
 public:
  // Connects and says HELLO. Errors: kConnectionLost when the node cannot be
  // reached, kTimeout when it does not connect or answer HELLO within
  // connect_timeout, the node's status when HELLO fails, kLocal for a bad
  // address or token text.
  [[nodiscard]] static Result<Connection> connect(ConnectOptions options);
  // Convenience: "HOST:PORT" and the token's text form.
  [[nodiscard]] static Result<Connection> connect(std::string_view node,
                                                  std::string_view token_text);

  // The HELLO reply (refreshed on every reconnect).
  [[nodiscard]] wire::HelloReply node_info() const;
  [[nodiscard]] const NodeAddress& address() const noexcept;

  // Sends one request; returns without waiting for the reply. Refused
  // without being sent (kLocal errors): a payload over the node's announced
  // max_payload_bytes (FRAME_TOO_LARGE); an opcode outside the table, or a
  // lease_id that breaks the opcode's lease rule in wire::opcode_info() (0
  // where a lease is required, nonzero where none may be named):
  // INVALID_ARGUMENT. No in-flight slot within the timeout: kTimeout. The token goes with every
  // opcode whose table entry needs one (all but HELLO and PING).
  [[nodiscard]] PendingReply send(wire::Opcode op, wire::Bytes payload,
                                  RequestOptions opts = {}) const;
  // send() + wait().
  [[nodiscard]] Result<Reply> call(wire::Opcode op, wire::Bytes payload,
                                   RequestOptions opts = {}) const;
  // call() and decode the OK reply as M.
  template <typename M>
  [[nodiscard]] Result<M> call_as(wire::Opcode op, wire::Bytes payload,
                                  RequestOptions opts = {}) const {
    auto r = call(op, std::move(payload), std::move(opts));
    if (!r) return std::move(r).error();
    return decode_reply_as<M>(op, r->payload);
  }

  // PING round trip (no token).
  [[nodiscard]] Result<std::chrono::microseconds> ping(wire::ByteSpan data = {}) const;

  // Replaces the token used by later frames.
  void set_token(wire::Bytes token);
  [[nodiscard]] wire::Bytes token() const;

  // Largest chunk for MEM_WRITE / MEM_READ on this node.
  [[nodiscard]] uint32_t chunk_bytes() const;
  [[nodiscard]] std::chrono::milliseconds request_timeout() const;

  struct Stats {
    uint64_t requests = 0;      // requests sent (resends not counted)
    uint64_t replies = 0;       // replies matched to a request
    uint64_t reconnects = 0;    // successful reconnects
    uint64_t resent = 0;        // requests resent after a reconnect
    uint32_t max_inflight = 0;  // most requests outstanding at once
    uint32_t window = 0;        // current in-flight limit
  };
  [[nodiscard]] Stats stats() const;

  // Whether the connection is up as far as it knows (false while
  // reconnecting, after a reconnect gave up and after close(); a drop is
  // noticed by the next thread that reads).
  [[nodiscard]] bool connected() const;

  // Closes the socket and fails every outstanding request; later calls fail
  // with a kConnectionLost error. Idempotent; does not wait for a blocked sender or
  // reader (shutting the socket down makes them return).
  // Copies share the closed state. The last copy's destruction closes it.
  void close() const;

  // Decodes an OK reply payload of `op` as M. A local BAD_FRAME on a mismatch.
  template <typename M>
  [[nodiscard]] static Result<M> decode_reply_as(wire::Opcode op, wire::ByteSpan payload);

 private:
  explicit Connection(std::shared_ptr<detail::ConnectionImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<detail::ConnectionImpl> impl_;
};

template <typename M>
Result<M> Connection::decode_reply_as(wire::Opcode op, wire::ByteSpan payload) {
  auto m = wire::decode_reply(op, payload, wire::Limits{});
  if (!m) return with_context(std::move(m).error(), "decoding reply");
  if (auto* v = std::get_if<M>(&m.value())) return std::move(*v);
  return make_error(wire::Status::kBadFrame, "reply of unexpected type");
}

}  // namespace gpulease::client
