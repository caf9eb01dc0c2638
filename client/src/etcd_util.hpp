// The client's use of gpulease_etcd: one way to open a client from a
// registry URL, and etcd's errors as the client's statuses.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "gpulease/client/errors.hpp"
#include "gpulease/etcd/client.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::client::detail {

// etcd's error as a client Error, "<what>: <etcd's message>": unreachable
// (or stopped) -> connection lost, timed out -> timeout (the outcome may be
// unknown either way), a bad argument -> local INVALID_ARGUMENT, anything
// else etcd answered -> local INTERNAL (no gpulease node said it).
[[nodiscard]] inline Error from_etcd(const etcd::Error& e, std::string_view what) {
  std::string msg = std::string(what) + ": " + e.message;
  switch (e.code) {
    case etcd::ErrorCode::kUnavailable:
    case etcd::ErrorCode::kCancelled:
      return Error::connection_lost(std::move(msg));
    case etcd::ErrorCode::kTimeout:
      return Error::timeout(std::move(msg));
    case etcd::ErrorCode::kInvalidArgument:
      return Error::local(wire::Status::kInvalidArgument, std::move(msg));
    default:
      return Error::local(wire::Status::kInternal, std::move(msg));
  }
}

// A client over the registry's endpoints; `timeout` bounds each request to
// one endpoint.
[[nodiscard]] inline Result<std::shared_ptr<etcd::Client>> etcd_client(
    std::string_view registry_url, std::chrono::milliseconds timeout) {
  auto eps = etcd::parse_registry_url(registry_url);
  if (!eps) return from_etcd(eps.error(), "registry");
  etcd::ClientOptions o;
  o.endpoints = std::move(eps).value();
  o.connect_timeout = std::min(timeout, std::chrono::milliseconds(1000));
  o.request_timeout = timeout;
  auto c = etcd::Client::create(std::move(o));
  if (!c) return from_etcd(c.error(), "registry");
  return std::shared_ptr<etcd::Client>(std::move(c).value());
}

}  // namespace gpulease::client::detail
