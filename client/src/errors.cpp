#include "gpulease/client/errors.hpp"

#include <ostream>

namespace gpulease::client {

std::string ClientStatus::to_string() const {
  switch (kind_) {
    case StatusKind::kOk:
      return "OK";
    case StatusKind::kNodeStatus:
      return std::string(wire::status_name(wire_));
    case StatusKind::kTimeout:
      return "TIMEOUT";
    case StatusKind::kConnectionLost:
      return "CONNECTION_LOST";
    case StatusKind::kLocal:
      return std::string(wire::status_name(wire_)) + " (local)";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, const ClientStatus& s) {
  return os << s.to_string();
}

Error::Error(ClientStatus s, std::string message)
    : status_(s.ok() ? ClientStatus::local(wire::Status::kInternal) : s),
      message_(std::move(message)) {}

Error::Error(gpulease::Error e) : Error(ClientStatus::local(e.status), std::move(e.message)) {}

bool Error::is_lease_lost() const noexcept {
  return is_node_status(wire::Status::kLeaseExpired) ||
         is_node_status(wire::Status::kLeaseFaulted) ||
         is_node_status(wire::Status::kLeaseNotFound);
}

std::string Error::to_string() const {
  std::string out = status_.to_string();
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Error Error::with_context(std::string_view op) && {
  std::string m(op);
  if (!message_.empty()) {
    m += ": ";
    m += message_;
  }
  message_ = std::move(m);
  return std::move(*this);
}

std::string describe(const Error& e) {
  return e.to_string();
}

bool is_lease_lost(const Error& e) noexcept {
  return e.is_lease_lost();
}

bool is_connection_lost(const Error& e) noexcept {
  return e.is_connection_lost();
}

Error with_context(Error e, std::string_view op) {
  return std::move(e).with_context(op);
}

}  // namespace gpulease::client
