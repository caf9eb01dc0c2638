// One client connection of the node (see net.hpp for the whole picture).
//
// A connection is one coroutine, `reader || watchdog`, on the connection's
// strand, plus a writer driven by completions on the same strand:
//  - the reader takes frames from a fixed 64 KiB input buffer: the 48-byte
//    header is decoded once by wire::decode_header before anything is
//    allocated (docs: /work/coord/DECISIONS.md order), the token section is
//    verified before the payload is buffered, and a body is reserved against
//    the frame-bytes budget (connection, tenant and total shares) and filled
//    as its bytes arrive;
//  - the watchdog enforces the frame deadline (from a frame's first byte,
//    partial header included), the idle deadline (between frames, not while
//    a reply is owed) and the write deadline (no write progress);
//  - replies are queued and written in gathered batches; the reader reads no
//    new frame while the queued reply bytes (and those promised to MEM_READs
//    in flight) pass the reply bound, and dispatches no frame of a tenant
//    whose replies on all its connections pass reply_bytes_per_tenant;
//  - a peer's half-close ends reading: the replies of every request received
//    are sent, then the connection closes.
#pragma once

#include <xxhash.h>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config.hpp"
#include "frame_budget.hpp"
#include "gpulease/wire/frame.hpp"
#include "node.hpp"
#include "reply_budget.hpp"

namespace gpulease::server {

class Server;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Strand = asio::strand<asio::io_context::executor_type>;
  using Clock = std::chrono::steady_clock;
  // Bytes of the input buffer: also the scratch into which refused bodies
  // are read and dropped.
  static constexpr size_t kInputBytes = 64u << 10;
  // Reply bound of a connection on which no token has verified yet.
  static constexpr uint64_t kAnonymousReplyBytes = 256u << 10;

  Connection(asio::ip::tcp::socket sock, Strand strand, Server& srv, Node& node,
             const NodeConfig& cfg, uint64_t id, std::string peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();

  // Thread-safe: queues the reply to `req`. `promised` is what the reader
  // counted against the reply bound for it when it was dispatched, and
  // `charge` what it charged to the request's tenant (empty: a frame
  // without a token): given back once the reply is sent, resized to the
  // reply's unsent bytes while it is queued.
  void send(const wire::FrameHeader& req, uint16_t raw_opcode, wire::Status s, ReplyPayload payload,
            uint64_t promised, ReplyBudget::Charge charge = {});

  // Graceful close (drain): the queued replies are written, then the socket
  // closes. Thread-safe.
  void close_after_flush();

  [[nodiscard]] std::string_view peer() const { return peer_; }
  [[nodiscard]] uint64_t id() const { return id_; }
  // Thread-safe: a token has verified on this connection.
  [[nodiscard]] bool authenticated() const { return authenticated_.load(); }
  // The tenant this connection counts against (its first verified token's),
  // or empty. Read by the server when the connection has ended.
  [[nodiscard]] const std::string& counted_tenant() const { return counted_tenant_; }

  // The server needs this connection's slot for another (connection.cpp:
  // only a connection on which no token has verified is evicted). Closes it
  // on its strand. Thread-safe; `evicted` is the server's mark, set under
  // its lock before the call.
  void evict();
  std::atomic<bool> evicted{false};

 private:
  struct OutFrame {
    wire::HeaderBytes header;
    wire::Bytes payload;
    std::shared_ptr<LentBytes> lent;  // the payload instead, when lent device memory
    size_t sent = 0;                  // bytes already written
    ReplyBudget::Charge charge;       // the unsent bytes, charged to the request's tenant
    [[nodiscard]] size_t size() const {
      return header.size() + (lent ? lent->size() : payload.size());
    }
  };
  static constexpr size_t kMaxFramesPerWrite = 64;
  // The unsent bytes of up to kMaxFramesPerWrite frames for one sendmsg,
  // with the locks of the loans among them (leases/lent_bytes.hpp).
  struct Gather {
    void add(const OutFrame& f);
    size_t send(int fd);
    std::array<iovec, 2 * kMaxFramesPerWrite> iov{};
    std::array<std::unique_lock<std::mutex>, kMaxFramesPerWrite> held;
    size_t count = 0, loans = 0;
  };

  asio::awaitable<void> session();
  asio::awaitable<void> read_loop();
  asio::awaitable<void> watchdog();
  asio::awaitable<void> wait_closed();

  struct Refusal {
    wire::FrameHeader header;
    wire::Status status;
    std::string message;
    bool check_checksum;
  };

  // Reader helpers; each returns false when the connection is done (closed,
  // read error, end of stream).
  asio::awaitable<bool> fill(size_t n);
  asio::awaitable<bool> discard(size_t n, XXH3_state_t* hash);
  // Waits for signal_ (false: the connection closed). `still_blocked`, when
  // given, is checked again once the wait is announced (reader_waiting_), so
  // a wake-up from another thread in between is not lost.
  asio::awaitable<bool> wait_signal(const std::function<bool()>& still_blocked = {});
  asio::awaitable<bool> handle_bad_header(const wire::HeaderBytes& hb, const Error& e);
  // Coroutines: every co_await of these is a statement of its own, with
  // arguments that are named objects of the caller (g++ 12 mishandles
  // temporaries and short-circuits around co_await).
  asio::awaitable<bool> refuse_body(const Refusal& r);

  [[nodiscard]] size_t buffered() const { return wpos_ - rpos_; }
  [[nodiscard]] uint64_t reply_bound() const;
  void start_frame();
  void rearm_watchdog(Clock::time_point deadline);

  // REQUIRES: on the strand.
  void reject(uint64_t request_id, uint64_t lease_id, uint16_t raw_op, wire::Status s,
              const std::string& msg, bool close);
  // Any thread: sends the reply at once when nothing is queued ahead of it
  // (a non-blocking send under wmu_), else queues it for the strand's writer.
  void queue_reply(OutFrame f, uint64_t promised, ReplyBudget::Charge charge = {});
  [[nodiscard]] size_t send_now(const OutFrame& f);  // REQUIRES: wmu_ held
  // Sends what the socket takes of outq_'s head; moves the frames sent in
  // full to `finished`. Bytes written or kSendFailed. REQUIRES: wmu_ held.
  [[nodiscard]] size_t write_queued(std::vector<OutFrame>& finished);
  // Starts the writer on replies queued while corked. REQUIRES: on the strand.
  void uncork();
  void poke_strand();  // wakes a waiting reader and re-checks closing, on the strand
  [[nodiscard]] bool write_idle() const;
  // REQUIRES: on the strand.
  void start_write();
  void maybe_close();
  void do_close();

  asio::ip::tcp::socket sock_;
  Strand strand_;
  Server& srv_;
  Node& node_;
  const NodeConfig& cfg_;
  const uint64_t id_;
  const std::string peer_;
  const std::string auth_key_;  // the peer's address as the auth limiter keys it
  std::shared_ptr<FrameBudget::Account> account_;

  // Reader state.
  std::vector<std::byte> in_;
  size_t rpos_ = 0, wpos_ = 0;
  XXH3_state_t* hash_ = nullptr;            // owned; XXH3 state wants 64-byte alignment
  std::atomic<bool> authenticated_{false};  // a token has verified on this connection
  std::string counted_tenant_;              // strand only, until the connection has ended
  // The reply-budget state of the tenant of the last tokened frame.
  std::string reply_tenant_name_;
  std::shared_ptr<ReplyBudget::Tenant> reply_tenant_;
  bool waiting_reply_room_ = false;  // the reader waits for its tenant's replies to drain
  bool corked_ = false;              // in Node::handle with the next frame's header buffered
  std::atomic<bool> eof_{false};     // the peer half-closed
  asio::steady_timer signal_;        // wakes the reader (budget room, replies drained)
  std::atomic<bool> reader_waiting_{false};

  // Deadlines (on the strand).
  asio::steady_timer wd_timer_;
  Clock::time_point armed_ = Clock::time_point::max();
  bool mid_frame_ = false;
  Clock::time_point frame_deadline_{};
  Clock::time_point last_activity_ = Clock::now();
  Clock::time_point write_progress_{};

  // Writer state. Replies come from any thread (queue_reply); wmu_ orders
  // them and keeps the socket open while a direct send uses it.
  mutable std::mutex wmu_;
  std::deque<OutFrame> outq_;             // GUARDED_BY(wmu_)
  bool writing_ = false;                  // GUARDED_BY(wmu_): the strand's writer owns the output
  bool sock_closed_ = false;              // GUARDED_BY(wmu_)
  std::atomic<uint64_t> reply_bytes_{0};  // queued + promised to requests in flight
  // Strand only: the writer waits for the socket to take more.
  bool async_writing_ = false;

  bool closed_ = false;  // strand only
  std::atomic<bool> close_after_flush_{false};
  std::atomic<uint32_t> inflight_{0};
  // Requests handed to the node whose reply is not yet queued or sent.
  // inflight_ drops just before the reply is sent (so a client waiting for
  // each reply is never answered BUSY); this drops just after, so a
  // half-closed connection never closes between the two.
  std::atomic<uint32_t> replies_owed_{0};
};

}  // namespace gpulease::server
