#include "gpulease/client/errors.hpp"

namespace gpulease::client {

std::string_view status_string(wire::Status s) noexcept {
  if (s == kConnectionLost) return "CONNECTION_LOST";
  return wire::status_name(s);
}

std::string describe(const Error& e) {
  std::string out(status_string(e.status));
  if (!e.message.empty()) {
    out += ": ";
    out += e.message;
  }
  return out;
}

bool is_lease_lost(const Error& e) noexcept {
  return e.status == wire::Status::kLeaseExpired || e.status == wire::Status::kLeaseFaulted ||
         e.status == wire::Status::kLeaseNotFound;
}

bool is_connection_lost(const Error& e) noexcept {
  return e.status == kConnectionLost;
}

Error with_context(Error e, std::string_view op) {
  std::string m(op);
  if (!e.message.empty()) {
    m += ": ";
    m += e.message;
  }
  e.message = std::move(m);
  return e;
}

}  // namespace gpulease::client
