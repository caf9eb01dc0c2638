// gpulease_etcd: etcd v3 over the JSON gRPC-gateway with libcurl. See client.hpp.
#include "gpulease/etcd/client.hpp"

#include <curl/curl.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "gpulease/wire/host_port.hpp"

namespace gpulease::etcd {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- helpers

// A gateway answer that is not what etcd sends: turned into kProtocol at the
// boundary of each call.
struct ProtocolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  });
}

std::string b64(std::string_view bytes) {
  const size_t cap = sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string out(cap, '\0');
  // sodium wants a non-null pointer even for zero bytes.
  static const unsigned char kEmpty = 0;
  const auto* in = bytes.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(bytes.data());
  sodium_bin2base64(out.data(), cap, in, bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string unb64(const std::string& text) {
  if (text.empty()) return {};
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    throw ProtocolError("bad base64 in an etcd answer");
  }
  out.resize(len);
  return out;
}

// grpc-gateway writes int64 as a JSON string, and leaves out zero values.
int64_t i64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) {
      throw ProtocolError(std::string("etcd answer field '") + key + "' is not an integer");
    }
    return v;
  }
  throw ProtocolError(std::string("etcd answer field '") + key + "' is not an integer");
}

uint64_t u64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size()) return v;
  }
  throw ProtocolError(std::string("etcd answer field '") + key + "' is not an unsigned integer");
}

bool boolean(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw ProtocolError(std::string("etcd field '") + key + "' not a bool");
  return it->get<bool>();
}

std::string bytes_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) throw ProtocolError(std::string("etcd field '") + key + "' not a string");
  return unb64(it->get_ref<const std::string&>());
}

const json& object_or_empty(const json& j, const char* key) {
  static const json kEmpty = json::object();
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return kEmpty;
  if (!it->is_object()) throw ProtocolError(std::string("etcd field '") + key + "' not an object");
  return *it;
}

const json& array_or_empty(const json& j, const char* key) {
  static const json kEmpty = json::array();
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return kEmpty;
  if (!it->is_array()) throw ProtocolError(std::string("etcd field '") + key + "' not an array");
  return *it;
}

KeyValue parse_kv(const json& j) {
  if (!j.is_object()) throw ProtocolError("etcd key-value is not an object");
  KeyValue kv;
  kv.key = bytes_field(j, "key");
  kv.value = bytes_field(j, "value");
  kv.create_revision = i64(j, "create_revision");
  kv.mod_revision = i64(j, "mod_revision");
  kv.version = i64(j, "version");
  kv.lease = i64(j, "lease");
  return kv;
}

int64_t header_revision(const json& j) {
  return i64(object_or_empty(j, "header"), "revision");
}

RangeResult parse_range(const json& j) {
  RangeResult r;
  r.revision = header_revision(j);
  for (const auto& kv : array_or_empty(j, "kvs")) r.kvs.push_back(parse_kv(kv));
  r.count = i64(j, "count");
  r.more = boolean(j, "more");
  return r;
}

std::string num(int64_t v) {
  return std::to_string(v);
}

json range_body(std::string_view key, const RangeOptions& o) {
  json b = {{"key", b64(key)}};
  if (!o.range_end.empty()) b["range_end"] = b64(o.range_end);
  if (o.limit > 0) b["limit"] = num(o.limit);
  if (o.revision > 0) b["revision"] = num(o.revision);
  if (o.keys_only) b["keys_only"] = true;
  if (o.count_only) b["count_only"] = true;
  return b;
}

json op_body(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: {
      json p = {{"key", b64(op.key)}, {"value", b64(op.value)}};
      if (op.lease != 0) p["lease"] = num(op.lease);
      return json{{"request_put", p}};
    }
    case TxnOp::Kind::kRange: {
      RangeOptions o;
      o.range_end = op.range_end;
      return json{{"request_range", range_body(op.key, o)}};
    }
    case TxnOp::Kind::kDelete: {
      json d = {{"key", b64(op.key)}};
      if (!op.range_end.empty()) d["range_end"] = b64(op.range_end);
      return json{{"request_delete_range", d}};
    }
  }
  return json::object();
}

json compare_body(const Compare& c) {
  json j = {{"key", b64(c.key)}};
  static constexpr const char* kResult[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  j["result"] = kResult[static_cast<int>(c.op)];
  switch (c.target) {
    case Compare::Target::kVersion:
      j["target"] = "VERSION";
      j["version"] = num(c.number);
      break;
    case Compare::Target::kCreateRevision:
      j["target"] = "CREATE";
      j["create_revision"] = num(c.number);
      break;
    case Compare::Target::kModRevision:
      j["target"] = "MOD";
      j["mod_revision"] = num(c.number);
      break;
    case Compare::Target::kValue:
      j["target"] = "VALUE";
      j["value"] = b64(c.value);
      break;
    case Compare::Target::kLease:
      j["target"] = "LEASE";
      j["lease"] = num(c.number);
      break;
  }
  return j;
}

ErrorCode from_grpc(int code) {
  switch (code) {
    case 3:
      return ErrorCode::kInvalidArgument;
    case 4:
      return ErrorCode::kTimeout;
    case 5:
      return ErrorCode::kNotFound;
    case 9:
      return ErrorCode::kFailedPrecondition;
    case 1:
      return ErrorCode::kCancelled;
    case 14:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kServer;
  }
}

// The first JSON object of a body (the gateway may stream several, one a line).
json first_json(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded()) return j;
  const auto nl = body.find('\n');
  if (nl != std::string::npos) {
    j = json::parse(body.substr(0, nl), nullptr, false);
    if (!j.is_discarded()) return j;
  }
  return json();  // null
}

size_t append_body(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  constexpr size_t kMaxBody = 64u << 20;          // an etcd answer is at most a few MiB
  if (s->size() + size * n > kMaxBody) return 0;  // aborts the transfer
  s->append(data, size * n);
  return size * n;
}

enum class Resend { kYes, kNo };

}  // namespace

const char* to_string(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kFailedPrecondition:
      return "failed precondition";
    case ErrorCode::kServer:
      return "server error";
    case ErrorCode::kProtocol:
      return "protocol error";
    case ErrorCode::kCancelled:
      return "cancelled";
  }
  return "?";
}

std::string Endpoint::to_string() const {
  return wire::format_host_port(host, port);
}

Result<std::vector<Endpoint>> parse_registry_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Error{ErrorCode::kInvalidArgument,
                 "bad registry '" + std::string(url) + "': " + why +
                     " (expected etcd://HOST:PORT[,HOST:PORT...])",
                 {},
                 0,
                 false};
  };
  std::string_view rest = url;
  const auto scheme = rest.find("://");
  if (scheme != std::string_view::npos) {
    if (rest.substr(0, scheme) != "etcd") {
      return bad("unknown scheme '" + std::string(rest.substr(0, scheme)) + "'");
    }
    rest.remove_prefix(scheme + 3);
  }
  if (rest.empty()) return bad("no endpoint");
  std::vector<Endpoint> out;
  while (true) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    if (item.empty()) return bad("an empty endpoint");
    auto hp = wire::parse_host_port(item);
    if (!hp) return bad(hp.error().message);
    if (out.size() >= 32) return bad("more than 32 endpoints");
    out.push_back(Endpoint{hp->host, hp->port});
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// ---------------------------------------------------------------- Impl

struct Client::Impl {
  ClientOptions opt;
  std::vector<std::string> base_urls;  // "http://HOST:PORT"
  std::atomic<size_t> preferred{0};
  std::mutex pool_mu;
  std::vector<CURL*> pool;

  ~Impl() {
    for (CURL* h : pool) curl_easy_cleanup(h);
  }

  CURL* borrow() {
    {
      std::lock_guard lk(pool_mu);
      if (!pool.empty()) {
        CURL* h = pool.back();
        pool.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void give_back(CURL* h) {
    std::lock_guard lk(pool_mu);
    if (pool.size() < opt.max_idle_handles) {
      pool.push_back(h);
      return;
    }
    curl_easy_cleanup(h);
  }

  struct Outcome {
    CURLcode code = CURLE_OK;
    long http = 0;
    bool maybe_sent = true;
    std::string body;
    std::string curl_error;
  };

  Outcome post(size_t idx, const char* path, const std::string& payload) {
    Outcome o;
    CURL* h = borrow();
    if (h == nullptr) {
      o.code = CURLE_OUT_OF_MEMORY;
      o.maybe_sent = false;
      o.curl_error = "curl_easy_init failed";
      return o;
    }
    curl_easy_reset(h);
    char errbuf[CURL_ERROR_SIZE] = {0};
    const std::string url = base_urls[idx] + path;
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opt.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(opt.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &o.body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    o.code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &o.http);
    curl_off_t connected_us = 0;
    curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connected_us);
    if (o.code == CURLE_COULDNT_CONNECT || o.code == CURLE_COULDNT_RESOLVE_HOST ||
        (o.code == CURLE_OPERATION_TIMEDOUT && connected_us == 0)) {
      o.maybe_sent = false;
    }
    if (o.code != CURLE_OK) o.curl_error = errbuf[0] != 0 ? errbuf : curl_easy_strerror(o.code);
    curl_slist_free_all(headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    give_back(h);
    return o;
  }

  // POST `body` to `path`, failing over across endpoints. The answer's JSON
  // (for the streaming lease keep-alive: its "result").
  Result<json> call(const char* path, const json& body, Resend resend) {
    const std::string payload = body.dump();
    const size_t n = base_urls.size();
    const size_t start = preferred.load(std::memory_order_relaxed) % n;
    Error last{ErrorCode::kUnavailable, "no endpoint tried", {}, 0, false};
    for (size_t i = 0; i < n; ++i) {
      const size_t idx = (start + i) % n;
      const std::string ep = opt.endpoints[idx].to_string();
      Outcome o = post(idx, path, payload);
      bool failover = false;
      bool maybe_applied = false;
      Error e{ErrorCode::kUnavailable, {}, ep, 0, false};
      if (o.code != CURLE_OK) {
        e.code = o.code == CURLE_OPERATION_TIMEDOUT ? ErrorCode::kTimeout : ErrorCode::kUnavailable;
        e.message = "etcd " + ep + ": " + o.curl_error;
        failover = true;
        maybe_applied = o.maybe_sent;
      } else {
        json j = first_json(o.body);
        if (o.http == 200 && j.is_object() && !j.contains("error")) {
          preferred.store(idx, std::memory_order_relaxed);
          if (j.contains("result")) {
            if (!j["result"].is_object()) {
              return Error{ErrorCode::kProtocol, "etcd " + ep + ": 'result' is not an object", ep,
                           0, false};
            }
            return std::move(j["result"]);
          }
          return j;
        }
        // An error answer: {"error","message","code"} (unary) or
        // {"error":{"grpc_code","http_code","message"}} (a stream).
        int code = 0;
        std::string msg;
        if (j.is_object()) {
          const json& err = j.contains("error") && j["error"].is_object() ? j["error"] : j;
          if (err.contains("code") && err["code"].is_number_integer())
            code = err["code"].get<int>();
          if (err.contains("grpc_code") && err["grpc_code"].is_number_integer()) {
            code = err["grpc_code"].get<int>();
          }
          if (err.contains("message") && err["message"].is_string()) {
            msg = err["message"].get<std::string>();
          } else if (err.contains("error") && err["error"].is_string()) {
            msg = err["error"].get<std::string>();
          }
        }
        if (code == 0 && msg.empty()) {
          if (o.http == 503 || o.http == 502) {
            code = 14;
            msg = "HTTP " + std::to_string(o.http);
          } else {
            return Error{
                ErrorCode::kProtocol,
                "etcd " + ep + ": unexpected HTTP " + std::to_string(o.http) + " answer to " + path,
                ep, 0, false};
          }
        }
        e.code = from_grpc(code);
        e.grpc_code = code;
        e.message = "etcd " + ep + ": " + msg;
        // No leader / leader changed / the member timed out the proposal:
        // another member may do better.
        failover = e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kTimeout;
        maybe_applied = e.code == ErrorCode::kTimeout;  // "request timed out" may have committed
        if (!failover) return e;
      }
      if (maybe_applied && resend == Resend::kNo) {
        e.outcome_unknown = true;
        e.message += " (the request may have been applied: read back before retrying)";
        return e;
      }
      last = std::move(e);
    }
    if (n > 1)
      last.message =
          "no etcd endpoint answered (" + std::to_string(n) + " tried); last: " + last.message;
    return last;
  }

  template <typename T, typename F>
  Result<T> call_parse(const char* path, const json& body, Resend resend, F&& parse) {
    auto r = call(path, body, resend);
    if (!r) return std::move(r).error();
    try {
      return parse(*r);
    } catch (const std::exception& ex) {
      return Error{ErrorCode::kProtocol,
                   std::string("etcd answer to ") + path + ": " + ex.what(),
                   {},
                   0,
                   false};
    }
  }
};

// ---------------------------------------------------------------- Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::create(ClientOptions options) {
  if (options.endpoints.empty()) {
    return Error{ErrorCode::kInvalidArgument, "etcd client: no endpoint", {}, 0, false};
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return Error{
        ErrorCode::kInvalidArgument, "etcd client: timeouts must be positive", {}, 0, false};
  }
  global_init();
  auto impl = std::make_unique<Impl>();
  for (const auto& ep : options.endpoints) impl->base_urls.push_back("http://" + ep.to_string());
  impl->opt = std::move(options);
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<std::unique_ptr<Client>> Client::connect(std::string_view registry_url) {
  auto eps = parse_registry_url(registry_url);
  if (!eps) return std::move(eps).error();
  ClientOptions o;
  o.endpoints = std::move(eps).value();
  return create(std::move(o));
}

const std::vector<Endpoint>& Client::endpoints() const noexcept {
  return impl_->opt.endpoints;
}

Result<RangeResult> Client::range(std::string_view key, const RangeOptions& opt) {
  return impl_->call_parse<RangeResult>("/v3/kv/range", range_body(key, opt), Resend::kYes,
                                        [](const json& j) { return parse_range(j); });
}

Result<RangeResult> Client::range_prefix(std::string_view prefix) {
  RangeOptions o;
  o.range_end = prefix_end(prefix);
  return range(prefix, o);
}

Result<std::optional<KeyValue>> Client::get(std::string_view key) {
  auto r = range(key);
  if (!r) return std::move(r).error();
  if (r->kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(std::move(r->kvs.front()));
}

Result<PutResult> Client::put(std::string_view key, std::string_view value, int64_t lease,
                              bool prev_kv) {
  json b = {{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0) b["lease"] = num(lease);
  if (prev_kv) b["prev_kv"] = true;
  return impl_->call_parse<PutResult>("/v3/kv/put", b, Resend::kYes, [](const json& j) {
    PutResult p;
    p.revision = header_revision(j);
    const json& prev = object_or_empty(j, "prev_kv");
    if (!prev.empty()) p.prev_kv = parse_kv(prev);
    return p;
  });
}

Result<DeleteResult> Client::del(std::string_view key, std::string_view range_end) {
  json b = {{"key", b64(key)}};
  if (!range_end.empty()) b["range_end"] = b64(range_end);
  return impl_->call_parse<DeleteResult>("/v3/kv/deleterange", b, Resend::kYes, [](const json& j) {
    return DeleteResult{header_revision(j), i64(j, "deleted")};
  });
}

Result<DeleteResult> Client::del_prefix(std::string_view prefix) {
  return del(prefix, prefix_end(prefix));
}

Result<TxnResult> Client::txn(const Txn& t) {
  json b = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : t.compare) b["compare"].push_back(compare_body(c));
  for (const auto& op : t.success) b["success"].push_back(op_body(op));
  for (const auto& op : t.failure) b["failure"].push_back(op_body(op));
  return impl_->call_parse<TxnResult>("/v3/kv/txn", b, Resend::kNo, [](const json& j) {
    TxnResult r;
    r.succeeded = boolean(j, "succeeded");
    r.revision = header_revision(j);
    for (const auto& resp : array_or_empty(j, "responses")) {
      if (!resp.is_object()) throw ProtocolError("txn response is not an object");
      TxnResponse tr;
      if (resp.contains("response_range")) {
        tr.kind = TxnOp::Kind::kRange;
        tr.range = parse_range(object_or_empty(resp, "response_range"));
      } else if (resp.contains("response_put")) {
        tr.kind = TxnOp::Kind::kPut;
      } else if (resp.contains("response_delete_range")) {
        tr.kind = TxnOp::Kind::kDelete;
        tr.deleted = i64(object_or_empty(resp, "response_delete_range"), "deleted");
      } else {
        throw ProtocolError("txn response of an unknown kind");
      }
      r.responses.push_back(std::move(tr));
    }
    return r;
  });
}

Result<LeaseGrant> Client::lease_grant(int64_t ttl_s, int64_t id) {
  if (ttl_s <= 0) {
    return Error{ErrorCode::kInvalidArgument, "etcd lease TTL must be positive", {}, 0, false};
  }
  json b = {{"TTL", num(ttl_s)}};
  if (id != 0) b["ID"] = num(id);
  return impl_->call_parse<LeaseGrant>("/v3/lease/grant", b, Resend::kYes, [](const json& j) {
    if (j.contains("error") && j["error"].is_string() && !j["error"].get<std::string>().empty()) {
      throw ProtocolError("lease grant: " + j["error"].get<std::string>());
    }
    LeaseGrant g{i64(j, "ID"), i64(j, "TTL")};
    if (g.id == 0 || g.ttl <= 0) throw ProtocolError("lease grant answered no lease");
    return g;
  });
}

Result<int64_t> Client::lease_keepalive(int64_t id) {
  auto r = impl_->call_parse<int64_t>("/v3/lease/keepalive", json{{"ID", num(id)}}, Resend::kYes,
                                      [](const json& j) { return i64(j, "TTL"); });
  if (!r) return r;
  if (*r <= 0) {
    return Error{ErrorCode::kNotFound,
                 "etcd lease " + std::to_string(id) + " not found (expired?)",
                 {},
                 5,
                 false};
  }
  return r;
}

Result<void> Client::lease_revoke(int64_t id) {
  auto r = impl_->call("/v3/lease/revoke", json{{"ID", num(id)}}, Resend::kYes);
  if (!r) return std::move(r).error();
  return {};
}

Result<void> Client::compact(int64_t revision) {
  if (revision <= 0) {
    return Error{ErrorCode::kInvalidArgument, "etcd compact: revision must be positive"};
  }
  auto r = impl_->call("/v3/kv/compaction", json{{"revision", num(revision)}, {"physical", true}},
                       Resend::kYes);
  if (!r) return std::move(r).error();
  return {};
}

Result<MemberStatus> Client::member_status(size_t endpoint_index) {
  if (endpoint_index >= impl_->base_urls.size()) {
    return Error{ErrorCode::kInvalidArgument, "no such endpoint index", {}, 0, false};
  }
  auto o = impl_->post(endpoint_index, "/v3/maintenance/status", "{}");
  const std::string ep = impl_->opt.endpoints[endpoint_index].to_string();
  if (o.code != CURLE_OK) {
    return Error{o.code == CURLE_OPERATION_TIMEDOUT ? ErrorCode::kTimeout : ErrorCode::kUnavailable,
                 "etcd " + ep + ": " + o.curl_error, ep, 0, false};
  }
  json j = first_json(o.body);
  if (o.http != 200 || !j.is_object()) {
    return Error{ErrorCode::kServer,
                 "etcd " + ep + ": status answered HTTP " + std::to_string(o.http), ep, 0, false};
  }
  try {
    MemberStatus s;
    s.member_id = u64(object_or_empty(j, "header"), "member_id");
    s.leader = u64(j, "leader");
    s.revision = header_revision(j);
    if (j.contains("version") && j["version"].is_string()) s.version = j["version"];
    return s;
  } catch (const std::exception& ex) {
    return Error{ErrorCode::kProtocol, "etcd " + ep + ": " + ex.what(), ep, 0, false};
  }
}

// ---------------------------------------------------------------- Watch

struct Watch::State {
  std::shared_ptr<Client::Impl> client;
  WatchOptions opt;
  WatchCallback on_events;
  WatchErrorCallback on_error;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> connects{0};
  std::atomic<bool> connected{false};
  std::atomic<int64_t> next_rev{0};
  CURLM* multi = nullptr;
  std::mutex mu;  // sleeping between reconnections
  std::condition_variable cv;
  std::thread thread;

  // Per stream.
  std::string buf;
  bool abort_stream = false;
  std::optional<Error> stream_error;

  ~State() {
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  void report(const Error& e) {
    if (!on_error) return;
    try {
      on_error(e);
    } catch (...) {
    }
  }

  void deliver(const WatchResponse& r) {
    try {
      on_events(r);
    } catch (const std::exception& ex) {
      report(Error{
          ErrorCode::kServer, std::string("watch callback threw: ") + ex.what(), {}, 0, false});
    } catch (...) {
      report(Error{ErrorCode::kServer, "watch callback threw", {}, 0, false});
    }
  }

  // One message of the stream. False: end this stream (reconnect).
  bool on_message(const json& j, const std::string& ep) {
    if (!j.is_object()) {
      stream_error = Error{ErrorCode::kProtocol, "etcd " + ep + ": watch message not JSON", ep};
      return false;
    }
    if (j.contains("error")) {
      std::string msg = "watch stream error";
      const json& err = j["error"];
      int code = 0;
      if (err.is_object()) {
        if (err.contains("message") && err["message"].is_string()) msg = err["message"];
        if (err.contains("grpc_code") && err["grpc_code"].is_number_integer())
          code = err["grpc_code"];
      }
      stream_error = Error{from_grpc(code), "etcd " + ep + ": " + msg, ep, code};
      return false;
    }
    const json& res = object_or_empty(j, "result");
    const int64_t rev = header_revision(res);
    if (boolean(res, "created")) {
      connected = true;
      connects.fetch_add(1);
      if (next_rev.load() == 0) next_rev = rev + 1;  // watching from "now"
    }
    if (boolean(res, "canceled")) {
      const int64_t compact = i64(res, "compact_revision");
      if (compact > 0) {
        WatchResponse w;
        w.revision = rev;
        w.compacted = true;
        w.compact_revision = compact;
        next_rev = compact;
        deliver(w);
        stream_error = Error{ErrorCode::kFailedPrecondition,
                             "etcd " + ep + ": watch start revision compacted; resuming at " +
                                 std::to_string(compact),
                             ep};
      } else {
        std::string why = "watch cancelled by etcd";
        if (res.contains("cancel_reason") && res["cancel_reason"].is_string()) {
          why += ": " + res["cancel_reason"].get<std::string>();
        }
        stream_error = Error{ErrorCode::kCancelled, "etcd " + ep + ": " + why, ep};
      }
      return false;
    }
    const json& events = array_or_empty(res, "events");
    if (events.empty()) return true;  // created / progress
    WatchResponse w;
    w.revision = rev;
    for (const auto& ev : events) {
      if (!ev.is_object()) throw ProtocolError("watch event not an object");
      WatchEvent e;
      e.type = ev.contains("type") && ev["type"] == "DELETE" ? WatchEvent::Type::kDelete
                                                             : WatchEvent::Type::kPut;
      e.kv = parse_kv(object_or_empty(ev, "kv"));
      const json& prev = object_or_empty(ev, "prev_kv");
      if (!prev.empty()) e.prev_kv = parse_kv(prev);
      next_rev = std::max(next_rev.load(), e.kv.mod_revision + 1);
      w.events.push_back(std::move(e));
    }
    deliver(w);
    return true;
  }

  static size_t on_data(char* data, size_t size, size_t n, void* user) {
    auto* s = static_cast<State*>(user);
    const size_t len = size * n;
    if (s->stopping.load()) return 0;
    s->buf.append(data, len);
    if (s->buf.size() > (64u << 20)) {
      s->stream_error = Error{ErrorCode::kProtocol, "watch message over 64 MiB"};
      return 0;
    }
    size_t pos = 0;
    while (true) {
      const size_t nl = s->buf.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string_view line(s->buf.data() + pos, nl - pos);
      pos = nl + 1;
      if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
      json j = json::parse(line, nullptr, false);
      bool keep = false;
      try {
        keep = s->on_message(j.is_discarded() ? json() : j, s->current_ep);
      } catch (const std::exception& ex) {
        s->stream_error = Error{ErrorCode::kProtocol, std::string("watch: ") + ex.what()};
      }
      if (!keep || s->stopping.load()) {
        s->buf.clear();
        return 0;
      }
    }
    s->buf.erase(0, pos);
    return len;
  }

  std::string current_ep;

  // One stream against endpoint `idx`; returns when it ends or on stop.
  void run_stream(size_t idx) {
    buf.clear();
    stream_error.reset();
    current_ep = client->opt.endpoints[idx].to_string();
    json create = {{"key", b64(opt.key)}};
    if (!opt.range_end.empty()) create["range_end"] = b64(opt.range_end);
    const int64_t from = next_rev.load();
    if (from > 0) create["start_revision"] = num(from);
    if (opt.prev_kv) create["prev_kv"] = true;
    const std::string payload = json{{"create_request", create}}.dump();
    const std::string url = client->base_urls[idx] + "/v3/watch";
    CURL* h = curl_easy_init();
    if (h == nullptr) {
      stream_error = Error{ErrorCode::kUnavailable, "curl_easy_init failed"};
      return;
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(client->opt.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &State::on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    curl_multi_add_handle(multi, h);
    int running = 1;
    CURLcode result = CURLE_OK;
    while (!stopping.load()) {
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
        if (m->msg == CURLMSG_DONE) result = m->data.result;
      }
      if (running == 0) break;
      curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    curl_multi_remove_handle(multi, h);
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    connected = false;
    if (stopping.load() || stream_error) return;
    if (result != CURLE_OK) {
      stream_error = Error{
          result == CURLE_OPERATION_TIMEDOUT ? ErrorCode::kTimeout : ErrorCode::kUnavailable,
          "etcd " + current_ep +
              ": watch: " + (errbuf[0] != 0 ? std::string(errbuf) : curl_easy_strerror(result)),
          current_ep};
    } else {
      stream_error =
          Error{ErrorCode::kUnavailable,
                "etcd " + current_ep + ": watch stream ended (HTTP " + std::to_string(http) + ")",
                current_ep};
    }
  }

  void run() {
    const size_t n = client->base_urls.size();
    size_t idx = client->preferred.load() % n;
    auto backoff = opt.reconnect_min;
    while (!stopping.load()) {
      const uint64_t before = connects.load();
      run_stream(idx);
      if (stopping.load()) break;
      if (stream_error) report(*stream_error);
      if (connects.load() != before) backoff = opt.reconnect_min;  // it had worked
      idx = (idx + 1) % n;
      std::unique_lock lk(mu);
      cv.wait_for(lk, backoff, [&] { return stopping.load(); });
      backoff = std::min(backoff * 2, opt.reconnect_max);
    }
  }
};

Watch::Watch(std::shared_ptr<State> s) : state_(std::move(s)) {}

Watch::~Watch() {
  stop();
  if (state_->thread.joinable()) {
    if (state_->thread.get_id() == std::this_thread::get_id()) {
      state_->thread.detach();  // documented misuse; the state outlives it (shared)
    } else {
      state_->thread.join();
    }
  }
}

void Watch::stop() {
  {
    std::lock_guard lk(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  if (state_->multi != nullptr) curl_multi_wakeup(state_->multi);
  if (state_->thread.joinable() && state_->thread.get_id() != std::this_thread::get_id()) {
    state_->thread.join();
  }
}

uint64_t Watch::connects() const noexcept {
  return state_->connects.load();
}
bool Watch::connected() const noexcept {
  return state_->connected.load();
}
int64_t Watch::next_revision() const noexcept {
  return state_->next_rev.load();
}

Result<std::unique_ptr<Watch>> Client::watch(WatchOptions opt, WatchCallback on_events,
                                             WatchErrorCallback on_error) {
  if (!on_events) {
    return Error{ErrorCode::kInvalidArgument, "etcd watch: no callback", {}, 0, false};
  }
  if (opt.reconnect_min.count() <= 0 || opt.reconnect_max < opt.reconnect_min) {
    return Error{ErrorCode::kInvalidArgument, "etcd watch: bad reconnect backoff", {}, 0, false};
  }
  auto s = std::make_shared<Watch::State>();
  s->client = impl_;
  // "From now" means from this call: the stream opens on the watch thread a
  // little later, so pin the start to the revision after the store's current
  // one (a put right after watch() returns is delivered). If etcd cannot be
  // read now, the watch starts from whenever its stream opens.
  int64_t start = opt.start_revision;
  if (start <= 0) {
    RangeOptions probe;
    probe.count_only = true;
    if (auto r = range(opt.key, probe)) start = r->revision + 1;
  }
  s->next_rev = start > 0 ? start : 0;
  s->opt = std::move(opt);
  s->on_events = std::move(on_events);
  s->on_error = std::move(on_error);
  s->multi = curl_multi_init();
  if (s->multi == nullptr) {
    return Error{ErrorCode::kUnavailable, "curl_multi_init failed", {}, 0, false};
  }
  s->thread = std::thread([keep = s] { keep->run(); });
  return std::unique_ptr<Watch>(new Watch(std::move(s)));
}

}  // namespace gpulease::etcd
