// Reply bytes the node holds per tenant: replies queued for writing on any
// of the tenant's connections, plus what was promised to its requests in
// flight (a MEM_READ's length, or a small allowance). A connection's reader
// dispatches no new frame of a tenant whose total would pass the cap (the
// per-connection bound, reply_queue_bytes, applies as well), so one tenant
// with many connections that never reads its replies holds at most
// reply_bytes_per_tenant, not connections x reply_queue_bytes.
//
// A tenant holding nothing always admits one request, so a reply larger
// than the cap cannot wait forever.
//
// THREAD SAFETY: every member may be called from any thread. Charges may
// outlive the ReplyBudget (they share the tenant's state).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace gpulease::server {

class ReplyBudget {
 public:
  // One tenant's reply bytes and the readers waiting for them to drop.
  class Tenant {
   public:
    [[nodiscard]] uint64_t held() const noexcept { return held_.load(); }
    // Adds n bytes when they fit (or the tenant holds nothing), in one step
    // with the check, so readers on two threads cannot both pass the cap.
    [[nodiscard]] bool try_add(uint64_t n);
    void add(uint64_t n);
    void sub(uint64_t n);
    // `wake` is called (with no lock held, on the thread that gave bytes
    // back) after every drop of held() until the id is removed.
    [[nodiscard]] uint64_t add_waiter(std::function<void()> wake);
    void remove_waiter(uint64_t id);

   private:
    friend class ReplyBudget;
    explicit Tenant(uint64_t cap) : cap_(cap) {}
    const uint64_t cap_;
    std::atomic<uint64_t> held_{0};
    std::atomic<uint64_t> peak_{0};
    std::atomic<bool> has_waiters_{false};
    std::mutex mu_;
    std::map<uint64_t, std::function<void()>> waiters_;  // GUARDED_BY(mu_)
    uint64_t next_waiter_ = 1;                           // GUARDED_BY(mu_)
  };

  // Bytes charged to a tenant, given back when destroyed. Move-only.
  class Charge {
   public:
    Charge() = default;
    // Charges n bytes unconditionally (a reply that exists).
    Charge(std::shared_ptr<Tenant> t, uint64_t n) : tenant_(std::move(t)), bytes_(n) {
      if (tenant_ && bytes_ != 0) tenant_->add(bytes_);
    }
    // Charges n bytes if they fit the tenant's cap; else an empty Charge.
    [[nodiscard]] static Charge try_make(std::shared_ptr<Tenant> t, uint64_t n) {
      Charge c;
      if (t && t->try_add(n)) {
        c.tenant_ = std::move(t);
        c.bytes_ = n;
      }
      return c;
    }
    Charge(Charge&& o) noexcept : tenant_(std::move(o.tenant_)), bytes_(o.bytes_) { o.bytes_ = 0; }
    Charge& operator=(Charge&& o) noexcept {
      if (this != &o) {
        reset();
        tenant_ = std::move(o.tenant_);
        bytes_ = o.bytes_;
        o.bytes_ = 0;
      }
      return *this;
    }
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    ~Charge() { reset(); }
    void reset() {
      if (tenant_ && bytes_ != 0) tenant_->sub(bytes_);
      tenant_.reset();
      bytes_ = 0;
    }
    // Charges n bytes instead of bytes() (e.g. a promise becoming the reply
    // that was made), without giving the tenant's bytes back in between.
    void resize(uint64_t n) {
      if (!tenant_) return;
      if (n > bytes_) tenant_->add(n - bytes_);
      if (n < bytes_) tenant_->sub(bytes_ - n);
      bytes_ = n;
    }
    [[nodiscard]] explicit operator bool() const noexcept { return tenant_ != nullptr; }
    [[nodiscard]] uint64_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] const std::shared_ptr<Tenant>& tenant() const noexcept { return tenant_; }

   private:
    std::shared_ptr<Tenant> tenant_;
    uint64_t bytes_ = 0;
  };

  explicit ReplyBudget(uint64_t per_tenant) : per_tenant_(per_tenant) {}

  // The tenant's state (created on first use; forgotten once no connection
  // or charge holds it).
  [[nodiscard]] std::shared_ptr<Tenant> tenant(std::string_view name);
  // Bytes the tenant holds now, and the most it ever held at once (while
  // its state lived); 0 for a tenant not known.
  [[nodiscard]] uint64_t held(std::string_view name) const;
  [[nodiscard]] uint64_t peak(std::string_view name) const;
  [[nodiscard]] uint64_t per_tenant() const noexcept { return per_tenant_; }

 private:
  const uint64_t per_tenant_;
  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<Tenant>, std::less<>> tenants_;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::server
