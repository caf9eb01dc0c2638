// Errors of the client library: client::Error, client::ClientStatus and
// client::Result<T>.
//
// Every call that can fail returns client::Result<T>: a value, or a
// client::Error. The library never throws on a failure that comes from the
// node or the network. An Error has a kind:
//
//   kNodeStatus      the node answered with a non-OK status; node_status() is
//                    the wire::Status it sent, message() its text.
//   kTimeout         the library gave up waiting (for the reply, for an
//                    in-flight slot, or for the socket to take the frame)
//                    within the request's timeout. Not the node's BUSY.
//   kConnectionLost  the node could not be reached, the connection dropped
//                    and was not re-established, the request could not be
//                    safely resent, or the Connection was closed: the
//                    request's outcome is unknown.
//   kLocal           found by the library itself: a request refused before it
//                    was sent (bad argument, payload over the node's limit, a
//                    token text that is not one) or a reply that does not
//                    decode. local_status() names the mistake with the wire
//                    status a node would use for it (INVALID_ARGUMENT,
//                    FRAME_TOO_LARGE, BAD_FRAME, ...).
//
// Messages are prefixed with the op that failed ("LAUNCH 'bias': no kernel
// ..."), which matters for pipelined ops whose errors surface later, at
// sync() or a read. to_string() gives "NAME: message", NAME being the node's
// status name ("LEASE_EXPIRED"), "TIMEOUT", "CONNECTION_LOST", or the local
// status name with " (local)" ("INVALID_ARGUMENT (local)").
//
//   auto r = lease.query();
//   if (!r) {
//     if (r.error().is_node_status(wire::Status::kLeaseExpired)) ...;
//     else if (r.error().is_timeout()) ...;
//     std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
//   }
//   EXPECT_EQ(r.status(), wire::Status::kLeaseExpired);  // a node status
//   EXPECT_EQ(r.status(), ClientStatus::timeout());
//
// A wire-level gpulease::Error (what wire/ and capability/ return) converts
// implicitly into a kLocal client::Error with the same status and message,
// and a gpulease::Result<T> into a client::Result<T>: the library's own
// checks and decoding are local by construction. Node statuses come only from
// replies (Error::node()).
//
// Programs that prefer exceptions (examples, tools, tests) can wrap a call in
// unwrap(), which throws ClientError carrying the same Error.
#pragma once

#include <cassert>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "gpulease/wire/result.hpp"
#include "gpulease/wire/status.hpp"

namespace gpulease::client {

enum class StatusKind : uint8_t {
  kOk = 0,
  kNodeStatus,
  kTimeout,
  kConnectionLost,
  kLocal,
};

// The outcome of a call without its message: OK, or an error's kind and (for
// kNodeStatus and kLocal) its wire status. Small, copyable, comparable.
// A wire::Status converts implicitly into the node's status (kOk: OK), so
// `r.status() == wire::Status::kLeaseNotFound` asks "did the node say
// LEASE_NOT_FOUND?" (a local INVALID_ARGUMENT is not equal to the node's).
class ClientStatus {
 public:
  constexpr ClientStatus() noexcept = default;               // OK
  constexpr ClientStatus(wire::Status node_status) noexcept  // NOLINT(google-explicit-constructor)
      : kind_(node_status == wire::Status::kOk ? StatusKind::kOk : StatusKind::kNodeStatus),
        wire_(node_status) {}

  [[nodiscard]] static constexpr ClientStatus node(wire::Status s) noexcept { return {s}; }
  [[nodiscard]] static constexpr ClientStatus timeout() noexcept {
    return {StatusKind::kTimeout, wire::Status::kOk};
  }
  [[nodiscard]] static constexpr ClientStatus connection_lost() noexcept {
    return {StatusKind::kConnectionLost, wire::Status::kOk};
  }
  // `what`: the wire status naming the mistake (not kOk).
  [[nodiscard]] static constexpr ClientStatus local(wire::Status what) noexcept {
    return {StatusKind::kLocal, what};
  }

  [[nodiscard]] constexpr bool ok() const noexcept { return kind_ == StatusKind::kOk; }
  [[nodiscard]] constexpr StatusKind kind() const noexcept { return kind_; }
  [[nodiscard]] constexpr bool is_node_status(wire::Status s) const noexcept {
    return kind_ == StatusKind::kNodeStatus && wire_ == s;
  }
  [[nodiscard]] constexpr bool is_timeout() const noexcept { return kind_ == StatusKind::kTimeout; }
  [[nodiscard]] constexpr bool is_connection_lost() const noexcept {
    return kind_ == StatusKind::kConnectionLost;
  }
  [[nodiscard]] constexpr bool is_local() const noexcept { return kind_ == StatusKind::kLocal; }
  [[nodiscard]] constexpr bool is_local(wire::Status s) const noexcept {
    return kind_ == StatusKind::kLocal && wire_ == s;
  }
  // The status the node sent; nullopt unless kind() is kNodeStatus.
  [[nodiscard]] constexpr std::optional<wire::Status> node_status() const noexcept {
    if (kind_ != StatusKind::kNodeStatus) return std::nullopt;
    return wire_;
  }
  // The status naming a local mistake; nullopt unless kind() is kLocal.
  [[nodiscard]] constexpr std::optional<wire::Status> local_status() const noexcept {
    if (kind_ != StatusKind::kLocal) return std::nullopt;
    return wire_;
  }

  // "OK", "LEASE_EXPIRED", "TIMEOUT", "CONNECTION_LOST", "INVALID_ARGUMENT (local)".
  [[nodiscard]] std::string to_string() const;

  friend constexpr bool operator==(const ClientStatus&, const ClientStatus&) noexcept = default;

 private:
  constexpr ClientStatus(StatusKind k, wire::Status w) noexcept : kind_(k), wire_(w) {}
  StatusKind kind_ = StatusKind::kOk;
  wire::Status wire_ = wire::Status::kOk;
};

std::ostream& operator<<(std::ostream& os, const ClientStatus& s);

// A failed call: its ClientStatus (never OK) and a human message.
class Error {
 public:
  // `s` must not be OK (an OK status becomes a local INTERNAL error).
  Error(ClientStatus s, std::string message);
  // A wire-level error found by the library itself: kLocal, same status.
  Error(gpulease::Error e);  // NOLINT(google-explicit-constructor)
  // Say which: Error::node(s, m) or Error::local(s, m).
  Error(wire::Status, std::string) = delete;

  [[nodiscard]] static Error node(wire::Status s, std::string message) {
    return {ClientStatus::node(s), std::move(message)};
  }
  [[nodiscard]] static Error timeout(std::string message) {
    return {ClientStatus::timeout(), std::move(message)};
  }
  [[nodiscard]] static Error connection_lost(std::string message) {
    return {ClientStatus::connection_lost(), std::move(message)};
  }
  [[nodiscard]] static Error local(wire::Status what, std::string message) {
    return {ClientStatus::local(what), std::move(message)};
  }

  [[nodiscard]] ClientStatus status() const noexcept { return status_; }
  [[nodiscard]] StatusKind kind() const noexcept { return status_.kind(); }
  [[nodiscard]] bool is_node_status(wire::Status s) const noexcept {
    return status_.is_node_status(s);
  }
  [[nodiscard]] std::optional<wire::Status> node_status() const noexcept {
    return status_.node_status();
  }
  [[nodiscard]] bool is_timeout() const noexcept { return status_.is_timeout(); }
  [[nodiscard]] bool is_connection_lost() const noexcept { return status_.is_connection_lost(); }
  [[nodiscard]] bool is_local() const noexcept { return status_.is_local(); }
  [[nodiscard]] bool is_local(wire::Status s) const noexcept { return status_.is_local(s); }
  [[nodiscard]] std::optional<wire::Status> local_status() const noexcept {
    return status_.local_status();
  }
  // The lease behind the op is gone or unusable; a new lease may succeed:
  // the node said LEASE_EXPIRED, LEASE_FAULTED or LEASE_NOT_FOUND.
  [[nodiscard]] bool is_lease_lost() const noexcept;

  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  // "NAME: message" (see the top of this file).
  [[nodiscard]] std::string to_string() const;
  // The same error with "<op>: " in front of its message.
  [[nodiscard]] Error with_context(std::string_view op) &&;

 private:
  ClientStatus status_;
  std::string message_;
};

// Free-function spellings of the above (kept for retry logic written as
// predicates): e.to_string(), e.is_lease_lost(), e.is_connection_lost(),
// std::move(e).with_context(op).
[[nodiscard]] std::string describe(const Error& e);
[[nodiscard]] bool is_lease_lost(const Error& e) noexcept;
[[nodiscard]] bool is_connection_lost(const Error& e) noexcept;
[[nodiscard]] Error with_context(Error e, std::string_view op);

// A value or a client::Error. The same shape as gpulease::Result (ok(),
// value(), error(), ->, *), with status() a ClientStatus.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                   // NOLINT(google-explicit-constructor)
  Result(Error err) : v_(std::move(err)) {}                   // NOLINT(google-explicit-constructor)
  Result(gpulease::Error err) : v_(Error(std::move(err))) {}  // NOLINT: local
  Result(gpulease::Result<T> r)  // NOLINT(google-explicit-constructor): errors are local
      : v_(r.ok() ? std::variant<T, Error>(std::in_place_index<0>, std::move(r).value())
                  : std::variant<T, Error>(std::in_place_index<1>, Error(std::move(r).error()))) {}

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
  ClientStatus status() const noexcept { return ok() ? ClientStatus{} : std::get<1>(v_).status(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err)) {}  // NOLINT(google-explicit-constructor)
  Result(gpulease::Error err) : err_(Error(std::move(err))) {}  // NOLINT: local
  Result(gpulease::Result<void> r) {  // NOLINT(google-explicit-constructor): errors are local
    if (!r.ok()) err_.emplace(std::move(r).error());
  }
  bool ok() const noexcept { return !err_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const& {
    assert(!ok());
    return *err_;
  }
  Error&& error() && {
    assert(!ok());
    return std::move(*err_);
  }
  ClientStatus status() const noexcept { return ok() ? ClientStatus{} : err_->status(); }

 private:
  std::optional<Error> err_;
};

// Thrown only by unwrap() (and by the top level of programs that choose it).
class ClientError : public std::runtime_error {
 public:
  explicit ClientError(Error e) : std::runtime_error(e.to_string()), error_(std::move(e)) {}
  [[nodiscard]] ClientStatus status() const noexcept { return error_.status(); }
  [[nodiscard]] const std::string& message() const noexcept { return error_.message(); }
  [[nodiscard]] const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

// The value of `r`, or throws ClientError.
template <typename T>
T unwrap(Result<T> r) {
  if (!r.ok()) throw ClientError(std::move(r).error());
  return std::move(r).value();
}
inline void unwrap(Result<void> r) {
  if (!r.ok()) throw ClientError(std::move(r).error());
}
// A wire-level result (its error is local).
template <typename T>
T unwrap(gpulease::Result<T> r) {
  return unwrap(Result<T>(std::move(r)));
}

}  // namespace gpulease::client
