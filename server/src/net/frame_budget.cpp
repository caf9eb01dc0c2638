#include "frame_budget.hpp"

#include <algorithm>

namespace gpulease::server {

struct FrameBudget::State {
  explicit State(Shares s) : shares(s) {}
  const Shares shares;
  mutable std::mutex mu;
  uint64_t held = 0;                                     // GUARDED_BY(mu)
  uint64_t peak = 0;                                     // GUARDED_BY(mu)
  uint64_t waits = 0;                                    // GUARDED_BY(mu)
  uint64_t released = 0;                                 // GUARDED_BY(mu)
  std::map<std::string, uint64_t, std::less<>> tenants;  // GUARDED_BY(mu); no zero entries
  std::map<uint64_t, std::function<void()>> waiters;     // GUARDED_BY(mu)
  uint64_t next_waiter = 1;                              // GUARDED_BY(mu)

  void release(Account& a, const std::string& tenant, uint64_t n) {
    std::vector<std::function<void()>> wake;
    {
      std::lock_guard lock(mu);
      held -= n;
      released += n;
      a.held_ -= n;
      auto it = tenants.find(tenant);
      if (it != tenants.end()) {
        it->second -= n;
        if (it->second == 0) tenants.erase(it);
      }
      wake.reserve(waiters.size());
      for (auto& [id, w] : waiters) wake.push_back(w);
    }
    for (auto& w : wake) w();
  }
};

uint64_t FrameBudget::Account::held() const {
  std::lock_guard lock(state_->mu);
  return held_;
}

FrameBudget::Reservation& FrameBudget::Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    reset();
    state_ = std::move(o.state_);
    account_ = std::move(o.account_);
    tenant_ = std::move(o.tenant_);
    bytes_ = o.bytes_;
    o.state_.reset();
    o.bytes_ = 0;
  }
  return *this;
}

void FrameBudget::Reservation::reset() {
  if (!state_) return;
  state_->release(*account_, tenant_, bytes_);
  state_.reset();
  account_.reset();
  bytes_ = 0;
}

FrameBudget::FrameBudget(Shares shares)
    : shares_(shares), state_(std::make_shared<State>(shares)) {}

std::shared_ptr<FrameBudget::Account> FrameBudget::open_account() {
  auto a = std::make_shared<Account>();
  a->state_ = state_;
  return a;
}

FrameBudget::Reservation FrameBudget::try_reserve(const std::shared_ptr<Account>& account,
                                                  std::string_view tenant, uint64_t n) {
  Reservation r;
  std::lock_guard lock(state_->mu);
  auto it = state_->tenants.find(tenant);
  const uint64_t tenant_held = it == state_->tenants.end() ? 0 : it->second;
  // Each share admits a frame that fits, or one frame alone.
  auto fits = [n](uint64_t held, uint64_t share) { return held == 0 || held + n <= share; };
  if (!fits(state_->held, shares_.total) || !fits(tenant_held, shares_.per_tenant) ||
      !fits(account->held_, shares_.per_connection)) {
    state_->waits += 1;
    return r;
  }
  state_->held += n;
  state_->peak = std::max(state_->peak, state_->held);
  account->held_ += n;
  if (it == state_->tenants.end()) {
    state_->tenants.emplace(std::string(tenant), n);
  } else {
    it->second += n;
  }
  r.state_ = state_;
  r.account_ = account;
  r.tenant_ = std::string(tenant);
  r.bytes_ = n;
  return r;
}

uint64_t FrameBudget::add_waiter(std::function<void()> wake) {
  std::lock_guard lock(state_->mu);
  uint64_t id = state_->next_waiter++;
  state_->waiters.emplace(id, std::move(wake));
  return id;
}

void FrameBudget::remove_waiter(uint64_t id) {
  std::lock_guard lock(state_->mu);
  state_->waiters.erase(id);
}

FrameBudget::Counters FrameBudget::counters() const {
  std::lock_guard lock(state_->mu);
  return Counters{state_->held, state_->peak, state_->waits, state_->tenants.size(),
                  state_->released};
}

uint64_t FrameBudget::tenant_held(std::string_view tenant) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->tenants.find(tenant);
  return it == state_->tenants.end() ? 0 : it->second;
}

// ---- BodyPool ------------------------------------------------------------------

BodyPool::BodyPool(size_t cap_bytes) : cap_(cap_bytes) {}

wire::Bytes BodyPool::take(size_t n) {
  if (n >= kMinPooledBytes) {
    std::lock_guard lock(state_->mu);
    for (auto it = state_->free.begin(); it != state_->free.end(); ++it) {
      // Reuse a buffer that fits without holding one far larger than needed.
      if (it->size() >= n && it->size() <= 2 * n) {
        wire::Bytes b = std::move(*it);
        state_->free.erase(it);
        state_->bytes -= b.capacity();
        return b;
      }
    }
  }
  wire::Bytes b;
  // Address space only: pages are touched as the body fills.
  b.reserve(n);
  return b;
}

void BodyPool::give(wire::Bytes b) {
  if (b.capacity() < kMinPooledBytes) return;
  std::lock_guard lock(state_->mu);
  if (state_->bytes + b.capacity() > cap_) return;  // freed: back to the OS
  // A pooled buffer is kept at its full size, so a reuse never zero-fills
  // (what a reply left unused past its size is filled once, here).
  b.resize(b.capacity());
  state_->bytes += b.capacity();
  state_->free.push_back(std::move(b));
}

size_t BodyPool::pooled_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->bytes;
}

}  // namespace gpulease::server
