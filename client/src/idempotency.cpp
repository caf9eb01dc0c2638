#include "gpulease/client/idempotency.hpp"

#include <sodium.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <thread>

#include "etcd_util.hpp"
#include "gpulease/capability/encoding.hpp"
#include "gpulease/client/fleet.hpp"

namespace gpulease::client {

using wire::Status;

Result<void> check_request_id(std::string_view id) {
  if (id.empty() || id.size() > 256)
    return make_error(Status::kInvalidArgument, "request id: 1..256 bytes");
  for (char c : id) {
    if (c < 0x21 || c > 0x7e || c == '/')
      return make_error(Status::kInvalidArgument,
                        "request id: printable ASCII without spaces or '/' only");
  }
  return {};
}

Result<std::optional<IdempotencyRecord>> IdempotencyStore::wait_settled(
    std::string_view request_id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    auto r = read(request_id);
    if (!r) return r;
    if (!*r || (*r)->state == IdempotencyRecord::State::kCompleted) return r;
    if (std::chrono::steady_clock::now() + pause > deadline)
      return Error::timeout("request " + std::string(request_id) + " is still in progress (owner " +
                            (*r)->owner + ")");
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

// ---- In memory ---------------------------------------------------------------------

Result<IdempotencyRecord> MemoryIdempotencyStore::reserve(std::string_view request_id) {
  if (auto ok = check_request_id(request_id); !ok) return std::move(ok).error();
  std::lock_guard lock(mu_);
  auto [it, fresh] = state_.try_emplace(std::string(request_id));
  IdempotencyRecord rec;
  rec.owner = owner_;
  if (fresh) {
    it->second.fence = next_fence_++;
    rec.state = IdempotencyRecord::State::kReservedByUs;
    rec.fence = it->second.fence;
  } else if (it->second.complete) {
    rec.state = IdempotencyRecord::State::kCompleted;
    rec.result = it->second.result;
  } else {
    rec.state = IdempotencyRecord::State::kInProgress;
  }
  return rec;
}

Result<void> MemoryIdempotencyStore::complete(std::string_view request_id, int64_t fence,
                                              wire::ByteSpan result) {
  if (result.size() > kMaxIdempotencyResultBytes)
    return make_error(Status::kInvalidArgument, "idempotency result over the limit");
  std::lock_guard lock(mu_);
  auto it = state_.find(std::string(request_id));
  if (it == state_.end() || it->second.complete || it->second.fence != fence)
    return Error::local(Status::kIdempotencyConflict,
                        "request " + std::string(request_id) + ": the reservation is not ours");
  it->second.complete = true;
  it->second.result.assign(result.begin(), result.end());
  return {};
}

Result<void> MemoryIdempotencyStore::abandon(std::string_view request_id, int64_t fence) {
  std::lock_guard lock(mu_);
  auto it = state_.find(std::string(request_id));
  if (it == state_.end() || it->second.complete || it->second.fence != fence)
    return Error::local(Status::kIdempotencyConflict,
                        "request " + std::string(request_id) + ": the reservation is not ours");
  state_.erase(it);
  return {};
}

Result<std::optional<IdempotencyRecord>> MemoryIdempotencyStore::read(std::string_view request_id) {
  std::lock_guard lock(mu_);
  auto it = state_.find(std::string(request_id));
  if (it == state_.end()) return std::optional<IdempotencyRecord>();
  IdempotencyRecord rec;
  rec.owner = owner_;
  rec.state = it->second.complete ? IdempotencyRecord::State::kCompleted
                                  : IdempotencyRecord::State::kInProgress;
  rec.result = it->second.result;
  return std::optional<IdempotencyRecord>(std::move(rec));
}

// ---- On etcd -------------------------------------------------------------------------

namespace {

std::string to_base64(wire::ByteSpan b) {
  capability::require_sodium();
  std::string out(sodium_base64_ENCODED_LEN(b.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(b.data()),
                    b.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<wire::Bytes> from_base64(const std::string& s) {
  capability::require_sodium();
  wire::Bytes out(s.size() / 4 * 3 + 3);
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(),
                        s.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string default_owner() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + "/" + std::to_string(::getpid());
}

}  // namespace

struct EtcdIdempotencyStore::Impl {
  std::shared_ptr<etcd::Client> etcd;
  EtcdIdempotencyOptions opts;
  std::string prefix;  // /gpulease/<fleet>/idempotency/

  // A stored value, as a record seen from `kv` (fence: its mod_revision).
  Result<IdempotencyRecord> decode(const etcd::KeyValue& kv) const {
    if (kv.value.size() > 2 * kMaxIdempotencyResultBytes)
      return make_error(Status::kInternal, "idempotency record " + kv.key + ": too large");
    nlohmann::json j = nlohmann::json::parse(kv.value, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("state") || !j["state"].is_string())
      return make_error(Status::kInternal, "idempotency record " + kv.key + ": not a record");
    IdempotencyRecord rec;
    rec.fence = kv.mod_revision;
    if (auto o = j.find("owner"); o != j.end() && o->is_string()) rec.owner = o->get<std::string>();
    const auto state = j["state"].get<std::string>();
    if (state == "reserved") {
      rec.state = IdempotencyRecord::State::kInProgress;
    } else if (state == "complete") {
      rec.state = IdempotencyRecord::State::kCompleted;
      auto r = j.find("result");
      if (r != j.end()) {
        if (!r->is_string())
          return make_error(Status::kInternal, "idempotency record " + kv.key + ": bad result");
        auto b = from_base64(r->get<std::string>());
        if (!b)
          return make_error(Status::kInternal, "idempotency record " + kv.key + ": bad base64");
        rec.result = std::move(*b);
      }
    } else {
      return make_error(Status::kInternal,
                        "idempotency record " + kv.key + ": unknown state '" + state + "'");
    }
    return rec;
  }

  // A fresh etcd lease of `ttl` (0: none).
  Result<int64_t> lease(std::chrono::seconds ttl) const {
    if (ttl.count() <= 0) return int64_t{0};
    auto g = etcd->lease_grant(ttl.count());
    if (!g) return detail::from_etcd(g.error(), "idempotency store: lease grant");
    return g->id;
  }
};

EtcdIdempotencyStore::EtcdIdempotencyStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdIdempotencyStore::~EtcdIdempotencyStore() = default;

Result<std::unique_ptr<EtcdIdempotencyStore>> EtcdIdempotencyStore::open(EtcdIdempotencyOptions o) {
  if (o.registry.empty()) {
    const char* env = std::getenv("GPULEASE_REGISTRY");
    if (env != nullptr) o.registry = env;
  }
  if (o.registry.empty())
    return make_error(Status::kInvalidArgument,
                      "idempotency store: no registry (etcd://HOST:PORT[,...] or "
                      "GPULEASE_REGISTRY)");
  if (o.fleet.empty()) {
    const char* env = std::getenv("GPULEASE_FLEET");
    o.fleet = env != nullptr && *env != '\0' ? env : "default";
  }
  if (auto ok = check_fleet_name(o.fleet); !ok) return std::move(ok).error();
  if (o.owner.empty()) o.owner = default_owner();
  if (o.reservation_ttl.count() <= 0)
    return make_error(Status::kInvalidArgument, "idempotency store: reservation_ttl must be > 0");
  auto c = detail::etcd_client(o.registry, o.timeout);
  if (!c) return std::move(c).error();
  auto impl = std::make_unique<Impl>();
  impl->etcd = std::move(c).value();
  impl->prefix = "/gpulease/" + o.fleet + "/idempotency/";
  impl->opts = std::move(o);
  return std::unique_ptr<EtcdIdempotencyStore>(new EtcdIdempotencyStore(std::move(impl)));
}

const std::string& EtcdIdempotencyStore::owner() const noexcept {
  return impl_->opts.owner;
}

std::string EtcdIdempotencyStore::key(std::string_view request_id) const {
  return impl_->prefix + std::string(request_id);
}

Result<IdempotencyRecord> EtcdIdempotencyStore::reserve(std::string_view request_id) {
  if (auto ok = check_request_id(request_id); !ok) return std::move(ok).error();
  const std::string k = key(request_id);
  auto lease = impl_->lease(impl_->opts.reservation_ttl);
  if (!lease) return std::move(lease).error();
  const std::string value =
      nlohmann::json{{"state", "reserved"}, {"owner", impl_->opts.owner}}.dump();
  etcd::Txn t;
  t.compare.push_back(etcd::Compare::create_revision(k, etcd::Compare::Op::kEqual, 0));
  t.success.push_back(etcd::TxnOp::put(k, value, *lease));
  t.failure.push_back(etcd::TxnOp::range(k));
  auto r = impl_->etcd->txn(t);
  if (!r) {
    if (r.error().outcome_unknown) {
      // The put may have happened: read back. Ours if the record names us
      // (an owner name is unique per process) and is still a reservation.
      auto back = read(request_id);
      if (back && *back && (*back)->owner == impl_->opts.owner &&
          (*back)->state == IdempotencyRecord::State::kInProgress) {
        IdempotencyRecord rec = **back;
        rec.state = IdempotencyRecord::State::kReservedByUs;
        return rec;
      }
    }
    if (*lease != 0) (void)impl_->etcd->lease_revoke(*lease);
    return detail::from_etcd(r.error(), "idempotency store: reserve " + k);
  }
  if (r->succeeded) {
    IdempotencyRecord rec;
    rec.state = IdempotencyRecord::State::kReservedByUs;
    rec.owner = impl_->opts.owner;
    rec.fence = r->revision;  // the put's revision: the key's mod_revision now
    return rec;
  }
  if (*lease != 0) (void)impl_->etcd->lease_revoke(*lease);
  if (r->responses.empty() || r->responses[0].range.kvs.empty()) {
    // Deleted between the compare and the get (an abandon, an expiry): the
    // caller may try again.
    return make_error(Status::kBusy, "idempotency store: " + k + " changed while reserving");
  }
  return impl_->decode(r->responses[0].range.kvs[0]);
}

Result<void> EtcdIdempotencyStore::complete(std::string_view request_id, int64_t fence,
                                            wire::ByteSpan result) {
  if (auto ok = check_request_id(request_id); !ok) return std::move(ok).error();
  if (result.size() > kMaxIdempotencyResultBytes)
    return make_error(
        Status::kInvalidArgument,
        "idempotency result over " + std::to_string(kMaxIdempotencyResultBytes) + " bytes");
  const std::string k = key(request_id);
  auto lease = impl_->lease(impl_->opts.result_ttl);
  if (!lease) return std::move(lease).error();
  const std::string value = nlohmann::json{
      {"state", "complete"},
      {"owner", impl_->opts.owner},
      {"fence", fence},
      {"result",
       to_base64(result)}}.dump();
  etcd::Txn t;
  t.compare.push_back(etcd::Compare::mod_revision(k, etcd::Compare::Op::kEqual, fence));
  t.success.push_back(etcd::TxnOp::put(k, value, *lease));
  auto r = impl_->etcd->txn(t);
  if (!r) {
    if (r.error().outcome_unknown) {
      auto back = read(request_id);
      if (back && *back && (*back)->state == IdempotencyRecord::State::kCompleted &&
          (*back)->owner == impl_->opts.owner)
        return {};
    }
    return detail::from_etcd(r.error(), "idempotency store: complete " + k);
  }
  if (!r->succeeded) {
    if (*lease != 0) (void)impl_->etcd->lease_revoke(*lease);
    return Error::local(Status::kIdempotencyConflict,
                        "idempotency store: " + k + " is no longer reserved by " +
                            impl_->opts.owner + " at revision " + std::to_string(fence));
  }
  return {};
}

Result<void> EtcdIdempotencyStore::abandon(std::string_view request_id, int64_t fence) {
  if (auto ok = check_request_id(request_id); !ok) return std::move(ok).error();
  const std::string k = key(request_id);
  etcd::Txn t;
  t.compare.push_back(etcd::Compare::mod_revision(k, etcd::Compare::Op::kEqual, fence));
  t.success.push_back(etcd::TxnOp::del(k));
  auto r = impl_->etcd->txn(t);
  if (!r) {
    if (r.error().outcome_unknown) {
      auto back = read(request_id);
      if (back && !*back) return {};
    }
    return detail::from_etcd(r.error(), "idempotency store: abandon " + k);
  }
  if (!r->succeeded)
    return Error::local(Status::kIdempotencyConflict,
                        "idempotency store: " + k + " is no longer reserved by " +
                            impl_->opts.owner + " at revision " + std::to_string(fence));
  return {};
}

Result<std::optional<IdempotencyRecord>> EtcdIdempotencyStore::read(std::string_view request_id) {
  if (auto ok = check_request_id(request_id); !ok) return std::move(ok).error();
  const std::string k = key(request_id);
  auto r = impl_->etcd->get(k);
  if (!r) return detail::from_etcd(r.error(), "idempotency store: read " + k);
  if (!*r) return std::optional<IdempotencyRecord>();
  auto rec = impl_->decode(**r);
  if (!rec) return std::move(rec).error();
  return std::optional<IdempotencyRecord>(std::move(rec).value());
}

}  // namespace gpulease::client
