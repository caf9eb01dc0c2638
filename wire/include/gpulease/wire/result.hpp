// Result<T>: a value or a (Status, message) error. Used for every expected
// failure across the code base (no exceptions on peer input paths).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

#include "gpulease/wire/status.hpp"

namespace gpulease {

struct Error {
  wire::Status status = wire::Status::kInternal;
  std::string message;
};

[[nodiscard]] inline Error make_error(wire::Status s, std::string msg = {}) {
  return Error{s, std::move(msg)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error err) : v_(std::move(err)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }
  wire::Status status() const noexcept { return ok() ? wire::Status::kOk : std::get<1>(v_).status; }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return err_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(err_);
  }
  wire::Status status() const noexcept { return ok_ ? wire::Status::kOk : err_.status; }

 private:
  Error err_;
  bool ok_ = true;
};

using Status = wire::Status;

}  // namespace gpulease
