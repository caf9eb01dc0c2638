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

// etcd's error as a client Error, "<what>: <etcd's message>": unreachable or
// timed out -> kConnectionLost (the outcome may be unknown), a bad argument
// -> INVALID_ARGUMENT, anything else -> INTERNAL.
[[nodiscard]] inline Error from_etcd(const etcd::Error& e, std::string_view what) {
  wire::Status s = wire::Status::kInternal;
  switch (e.code) {
    case etcd::ErrorCode::kUnavailable:
    case etcd::ErrorCode::kTimeout:
    case etcd::ErrorCode::kCancelled:
      s = kConnectionLost;
      break;
    case etcd::ErrorCode::kInvalidArgument:
      s = wire::Status::kInvalidArgument;
      break;
    default:
      break;
  }
  return make_error(s, std::string(what) + ": " + e.message);
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
