// Device memory lent to a reply: a zero-copy MEM_READ.
//
// A bulk MEM_READ on an idle sim context does not copy the buffer into a
// reply. The executor lends the reply a view of the device's bytes
// (DeviceContext::try_view), and the connection sends straight from them.
// The loan lasts until the reply is sent or the lease is about to change
// what the view shows: before a write, a launch, a free, an unload or the
// lease's end, the executor revokes every loan it has out. A revoked loan
// copies the bytes into memory of its own (the reply's unsent bytes are
// charged to its tenant already) and lets go of the device's, so a reply
// never shows a later op's bytes and never holds device memory the lease
// no longer pays for.
//
// THREAD SAFETY: whoever reads the bytes holds lock() for as long as it
// uses the span bytes() returned (the connection, around each send);
// revoke() takes the same lock, so it waits for a send in progress.
#pragma once

#include <cstring>
#include <memory>
#include <mutex>
#include <span>

#include "gpulease/server/device_backend.hpp"
#include "gpulease/wire/bytes.hpp"

namespace gpulease::server {

class LentBytes {
 public:
  explicit LentBytes(DeviceContext::HostView view)
      : view_(view.bytes), keep_(std::move(view.keep)), size_(view.bytes.size()) {}
  LentBytes(const LentBytes&) = delete;
  LentBytes& operator=(const LentBytes&) = delete;

  [[nodiscard]] size_t size() const { return size_; }

  [[nodiscard]] std::unique_lock<std::mutex> lock() const { return std::unique_lock(mu_); }
  // REQUIRES: lock() held. Valid while it is held.
  [[nodiscard]] std::span<const std::byte> bytes() const {
    return revoked_ ? std::span<const std::byte>(copy_) : view_;
  }

  // Copies the bytes into `buffer` (resized to size(); a recycled one from
  // the caller's pool, or empty) and stops using the device's. REQUIRES:
  // called at most once.
  void revoke(wire::Bytes buffer) {
    std::lock_guard lk(mu_);
    copy_ = std::move(buffer);
    copy_.resize(size_);
    std::memcpy(copy_.data(), view_.data(), size_);
    view_ = {};
    keep_.reset();
    revoked_ = true;
  }

 private:
  mutable std::mutex mu_;
  std::span<const std::byte> view_;   // GUARDED_BY(mu_)
  std::shared_ptr<const void> keep_;  // GUARDED_BY(mu_): keeps view_ readable
  wire::Bytes copy_;                  // GUARDED_BY(mu_): the bytes once revoked
  bool revoked_ = false;              // GUARDED_BY(mu_)
  const size_t size_;
};

}  // namespace gpulease::server
