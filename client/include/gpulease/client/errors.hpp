// Errors of the client library.
//
// Error model: every call that can fail returns gpulease::Result<T> (see
// wire/result.hpp) carrying a Status and a human message; the library never
// throws on a failure that comes from the node or the network. Statuses are the
// wire's, so an error reply's status reaches the caller unchanged; messages are
// prefixed with the op that failed ("LAUNCH 'bias': no kernel ..."), which
// matters for pipelined ops whose errors surface later, at sync() or a read.
//
// One status exists only on the client side: kConnectionLost, for a request
// whose outcome is unknown because the connection dropped and could not be
// re-established (or the request could not be safely resent). It never
// appears on the wire.
//
// Programs that prefer exceptions (examples, tools, tests) can wrap a call in
// unwrap(), which throws ClientError carrying the same status and message.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "gpulease/wire/result.hpp"
#include "gpulease/wire/status.hpp"

namespace gpulease::client {

// Client-only status: the connection to the node was lost and the request's
// outcome is unknown. Value chosen far above the wire's range.
inline constexpr wire::Status kConnectionLost = static_cast<wire::Status>(0x7f01);

// wire::status_name, plus "CONNECTION_LOST" for kConnectionLost. (Not named
// status_name: that would be ambiguous with wire::status_name through ADL.)
[[nodiscard]] std::string_view status_string(wire::Status s) noexcept;

// "STATUS_NAME: message".
[[nodiscard]] std::string describe(const Error& e);

// The lease behind an op is gone or unusable; a new lease may succeed
// (LEASE_EXPIRED, LEASE_FAULTED, LEASE_NOT_FOUND).
[[nodiscard]] bool is_lease_lost(const Error& e) noexcept;
[[nodiscard]] bool is_connection_lost(const Error& e) noexcept;

// Returns `e` with "<op>: " in front of its message.
[[nodiscard]] Error with_context(Error e, std::string_view op);

// Thrown only by unwrap() (and by the top level of programs that choose it).
class ClientError : public std::runtime_error {
 public:
  explicit ClientError(Error e) : std::runtime_error(describe(e)), error_(std::move(e)) {}
  [[nodiscard]] wire::Status status() const noexcept { return error_.status; }
  [[nodiscard]] const std::string& message() const noexcept { return error_.message; }
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

}  // namespace gpulease::client
