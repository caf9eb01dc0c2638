// Memory the network layer holds for request bodies: the frame-bytes budget
// (shares per connection, per tenant and in all) and the pool that recycles
// large body buffers.
//
// A frame's body (token section + payload) is reserved against the budget
// before any of it is read, once its token has verified: the reservation
// covers the declared size, but memory is only touched as bytes arrive (the
// buffer grows with them). The reservation is given back when the last
// reference to the body goes (the reply sent, the device op done).
//
// THREAD SAFETY: every member may be called from any thread. Reservations
// and pooled buffers may outlive the FrameBudget / BodyPool (they share the
// state).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gpulease/wire/bytes.hpp"

namespace gpulease::server {

class FrameBudget {
 public:
  struct Shares {
    uint64_t total = 0;           // all connections together
    uint64_t per_tenant = 0;      // all connections of one tenant
    uint64_t per_connection = 0;  // one connection
  };
  struct Counters {
    uint64_t held = 0;      // bytes reserved now, all connections
    uint64_t peak = 0;      // most ever reserved at once
    uint64_t waits = 0;     // reservations that had to wait
    uint64_t tenants = 0;   // tenants holding a reservation now
    uint64_t released = 0;  // bytes given back, ever
  };

 private:
  struct State;

 public:
  // One connection's account: what it holds now.
  class Account {
   public:
    [[nodiscard]] uint64_t held() const;

   private:
    friend class FrameBudget;
    std::shared_ptr<State> state_;
    uint64_t held_ = 0;  // GUARDED_BY(state_->mu)
  };

  // Move-only: gives its bytes back when destroyed.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& o) noexcept { *this = std::move(o); }
    Reservation& operator=(Reservation&& o) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { reset(); }
    void reset();
    [[nodiscard]] uint64_t bytes() const noexcept { return bytes_; }
    explicit operator bool() const noexcept { return state_ != nullptr; }

   private:
    friend class FrameBudget;
    std::shared_ptr<State> state_;
    std::shared_ptr<Account> account_;
    std::string tenant_;
    uint64_t bytes_ = 0;
  };

  explicit FrameBudget(Shares shares);

  [[nodiscard]] std::shared_ptr<Account> open_account();

  // Reserves n bytes for a frame of `tenant` (empty: a frame without a
  // token) read on `account`, or returns an empty Reservation when that
  // would pass a share. A share holding nothing always admits one frame, so
  // a frame larger than a share cannot wait forever.
  [[nodiscard]] Reservation try_reserve(const std::shared_ptr<Account>& account,
                                        std::string_view tenant, uint64_t n);

  // Wake-ups for readers waiting for room: `wake` is called (on the thread
  // that gives bytes back, with no lock held) after every release until
  // the returned id is removed.
  [[nodiscard]] uint64_t add_waiter(std::function<void()> wake);
  void remove_waiter(uint64_t id);

  [[nodiscard]] Counters counters() const;
  [[nodiscard]] uint64_t tenant_held(std::string_view tenant) const;
  [[nodiscard]] const Shares& shares() const noexcept { return shares_; }

 private:
  const Shares shares_;
  std::shared_ptr<State> state_;
};

// Recycles large body buffers (bulk MEM_WRITE chunks, module images) so a
// transfer does not map and fault in fresh pages for every chunk; keeps at
// most `cap_bytes` of them; the rest go back to the OS when freed.
// A taken buffer may be larger than asked for: readers use the frame's
// declared lengths, never the buffer's size.
class BodyPool {
 public:
  static constexpr size_t kMinPooledBytes = 256u << 10;
  explicit BodyPool(size_t cap_bytes);

  // A pooled buffer whose size is at least n (and at most 2n), or an empty
  // one with capacity for n bytes, which the caller grows as bytes arrive.
  [[nodiscard]] wire::Bytes take(size_t n);
  // Hands a buffer back: pooled when it is large and the pool has room
  // (a reply payload shorter than its buffer is grown back to full size).
  void give(wire::Bytes b);
  [[nodiscard]] size_t pooled_bytes() const;

 private:
  struct State {
    mutable std::mutex mu;
    std::vector<wire::Bytes> free;  // GUARDED_BY(mu)
    size_t bytes = 0;               // GUARDED_BY(mu)
  };
  const size_t cap_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace gpulease::server
