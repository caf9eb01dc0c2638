// gpulease_etcd: a small etcd v3 client over etcd's JSON gRPC-gateway
// (`POST /v3/...`, etcd 3.4 as packaged by Debian), with libcurl for HTTP and
// nlohmann-json for the bodies. Keys and values are byte strings (base64 on
// the wire, done here). How the fleet uses it: docs/FLEET.md.
//
// Thread safety: every Client method may be called from any thread at the
// same time (each call borrows its own HTTP handle from a small pool).
// A Watch runs on its own thread and calls its callback there.
//
// Failover: a Client holds a list of endpoints. A call goes to the endpoint
// that last answered; when that endpoint cannot be reached (refused, reset,
// timed out, or etcd answers "unavailable": no leader, leader changed) the call
// moves on to the next endpoint, each endpoint tried at most once per call.
// A call whose effect may already have been applied when the connection broke
// is NOT sent again if it is a transaction (its compare would then see its own
// write); it fails with Error::outcome_unknown set, and the caller reads back.
// Put, delete, range and the lease calls are sent again (their repeat is
// harmless: the same value, the same deletion, a second keep-alive).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace gpulease::etcd {

// ---------------------------------------------------------------- errors

enum class ErrorCode {
  kUnavailable,         // no endpoint could be reached / etcd has no leader
  kTimeout,             // the request's deadline passed
  kNotFound,            // etcd: e.g. "requested lease not found"
  kInvalidArgument,     // a bad argument (ours or etcd's code 3)
  kFailedPrecondition,  // etcd's code 9
  kServer,              // any other error etcd answered with
  kProtocol,            // an answer that is not what the gateway sends
  kCancelled,           // the watch or client was stopped
};

[[nodiscard]] const char* to_string(ErrorCode c) noexcept;

struct Error {
  Error() = default;
  Error(ErrorCode c, std::string msg, std::string ep = {}, int grpc = 0, bool unknown = false)
      : code(c),
        message(std::move(msg)),
        endpoint(std::move(ep)),
        grpc_code(grpc),
        outcome_unknown(unknown) {}

  ErrorCode code = ErrorCode::kServer;
  std::string message;           // human readable, names the endpoint where one was involved
  std::string endpoint;          // HOST:PORT of the last endpoint tried ("" when none)
  int grpc_code = 0;             // etcd's gRPC status code when it answered with one
  bool outcome_unknown = false;  // the request may have been applied (a txn cut off mid-way)
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error err) : v_(std::move(err)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

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
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_;
  bool ok_ = true;
};

// ---------------------------------------------------------------- endpoints

struct Endpoint {
  std::string host;  // without brackets
  uint16_t port = 0;
  [[nodiscard]] std::string to_string() const;  // HOST:PORT ([V6]:PORT)
};

// "etcd://HOST:PORT[,HOST:PORT...]" (the --registry / GPULEASE_REGISTRY form).
// Also accepts the list without the scheme. kInvalidArgument naming the bad
// part otherwise (empty list, bad HOST:PORT, other scheme, more than 32).
[[nodiscard]] Result<std::vector<Endpoint>> parse_registry_url(std::string_view url);

// The smallest key greater than every key starting with `prefix` (etcd's
// range_end for a prefix); "\0" (all keys) for an empty prefix or all 0xff.
[[nodiscard]] std::string prefix_end(std::string_view prefix);

// ---------------------------------------------------------------- data

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeResult {
  int64_t revision = 0;  // the store's revision when it was read
  std::vector<KeyValue> kvs;
  int64_t count = 0;  // keys in the range (may exceed kvs.size() with a limit)
  bool more = false;
};

struct PutResult {
  int64_t revision = 0;
  std::optional<KeyValue> prev_kv;  // when asked for
};

struct DeleteResult {
  int64_t revision = 0;
  int64_t deleted = 0;
};

struct RangeOptions {
  std::string range_end;  // "" = the single key; prefix_end(p) = a prefix
  int64_t limit = 0;      // 0 = no limit
  int64_t revision = 0;   // 0 = latest
  bool keys_only = false;
  bool count_only = false;
};

// A transaction's compare: `target(key) <op> operand`.
struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Op { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  Target target = Target::kCreateRevision;
  Op op = Op::kEqual;
  int64_t number = 0;  // for every target but kValue
  std::string value;   // for kValue

  static Compare create_revision(std::string key, Op op, int64_t n) {
    return Compare{std::move(key), Target::kCreateRevision, op, n, {}};
  }
  static Compare mod_revision(std::string key, Op op, int64_t n) {
    return Compare{std::move(key), Target::kModRevision, op, n, {}};
  }
  static Compare version(std::string key, Op op, int64_t n) {
    return Compare{std::move(key), Target::kVersion, op, n, {}};
  }
  static Compare value_of(std::string key, Op op, std::string v) {
    return Compare{std::move(key), Target::kValue, op, 0, std::move(v)};
  }
};

// One operation of a transaction branch.
struct TxnOp {
  enum class Kind { kPut, kRange, kDelete };
  Kind kind = Kind::kRange;
  std::string key;
  std::string value;      // kPut
  int64_t lease = 0;      // kPut
  std::string range_end;  // kRange / kDelete

  static TxnOp put(std::string key, std::string value, int64_t lease = 0) {
    return TxnOp{Kind::kPut, std::move(key), std::move(value), lease, {}};
  }
  static TxnOp range(std::string key, std::string range_end = {}) {
    return TxnOp{Kind::kRange, std::move(key), {}, 0, std::move(range_end)};
  }
  static TxnOp del(std::string key, std::string range_end = {}) {
    return TxnOp{Kind::kDelete, std::move(key), {}, 0, std::move(range_end)};
  }
};

struct TxnResponse {
  TxnOp::Kind kind = TxnOp::Kind::kRange;
  RangeResult range;    // kRange
  int64_t deleted = 0;  // kDelete
};

struct TxnResult {
  bool succeeded = false;  // the compares held: `success` ran, else `failure`
  int64_t revision = 0;
  std::vector<TxnResponse> responses;  // one per op of the branch that ran, in order
};

struct Txn {
  std::vector<Compare> compare;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

struct LeaseGrant {
  int64_t id = 0;
  int64_t ttl = 0;  // seconds, as granted
};

struct MemberStatus {
  uint64_t member_id = 0;
  uint64_t leader = 0;  // the leader's member id as this member sees it (0: none)
  int64_t revision = 0;
  std::string version;
  [[nodiscard]] bool is_leader() const noexcept { return member_id != 0 && member_id == leader; }
};

// ---------------------------------------------------------------- watch

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: key and mod_revision only
  std::optional<KeyValue> prev_kv;
};

struct WatchResponse {
  int64_t revision = 0;  // the store's revision in the message's header
  std::vector<WatchEvent> events;
  // The watch's start revision had been compacted away: events between it and
  // compact_revision are lost; the watch goes on from compact_revision and the
  // caller should re-read the whole range (a range() at compact_revision or later).
  bool compacted = false;
  int64_t compact_revision = 0;
};

struct WatchOptions {
  std::string key;
  std::string range_end;       // "" = the single key; prefix_end(p) = a prefix
  int64_t start_revision = 0;  // 0 = from now: every change after watch() returns
  bool prev_kv = false;
  // After a broken stream the watch reconnects (next endpoint) from the
  // revision after the last event it delivered, backing off from
  // reconnect_min to reconnect_max.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{2000};
};

using WatchCallback = std::function<void(const WatchResponse&)>;
// Told (on the watch thread) each time the stream breaks or cannot be opened;
// the watch keeps retrying until stopped.
using WatchErrorCallback = std::function<void(const Error&)>;

class Client;

// A running watch. Stops (and joins its thread) in stop() or the destructor.
// stop() may be called from the callback (it then only asks the thread to
// end); the Watch must not be destroyed from its own callback.
class Watch {
 public:
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  void stop();
  // Streams opened (the first and every reconnection) and currently connected.
  [[nodiscard]] uint64_t connects() const noexcept;
  [[nodiscard]] bool connected() const noexcept;
  // The revision the watch will resume from after a reconnection.
  [[nodiscard]] int64_t next_revision() const noexcept;

  struct State;

 private:
  friend class Client;
  explicit Watch(std::shared_ptr<State> s);
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------- client

struct ClientOptions {
  std::vector<Endpoint> endpoints;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{3000};  // per endpoint tried
  size_t max_idle_handles = 8;                      // pooled HTTP handles (kept connections)
};

class Client {
 public:
  // kInvalidArgument when the list is empty or a timeout is not positive.
  [[nodiscard]] static Result<std::unique_ptr<Client>> create(ClientOptions options);
  // From "etcd://HOST:PORT[,...]" with the default timeouts.
  [[nodiscard]] static Result<std::unique_ptr<Client>> connect(std::string_view registry_url);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] const std::vector<Endpoint>& endpoints() const noexcept;

  // ---- kv
  [[nodiscard]] Result<RangeResult> range(std::string_view key, const RangeOptions& opt = {});
  [[nodiscard]] Result<RangeResult> range_prefix(std::string_view prefix);
  // The key's current value; std::nullopt when absent.
  [[nodiscard]] Result<std::optional<KeyValue>> get(std::string_view key);
  [[nodiscard]] Result<PutResult> put(std::string_view key, std::string_view value,
                                      int64_t lease = 0, bool prev_kv = false);
  [[nodiscard]] Result<DeleteResult> del(std::string_view key, std::string_view range_end = {});
  [[nodiscard]] Result<DeleteResult> del_prefix(std::string_view prefix);
  [[nodiscard]] Result<TxnResult> txn(const Txn& t);

  // ---- leases
  [[nodiscard]] Result<LeaseGrant> lease_grant(int64_t ttl_s, int64_t id = 0);
  // One keep-alive; returns the lease's renewed TTL in seconds.
  // kNotFound when the lease has expired or was revoked.
  [[nodiscard]] Result<int64_t> lease_keepalive(int64_t id);
  // kNotFound when the lease is already gone.
  [[nodiscard]] Result<void> lease_revoke(int64_t id);

  // ---- watch
  // With start_revision 0 it first reads the store's revision (one range
  // request), so every change after watch() returns is delivered.
  [[nodiscard]] Result<std::unique_ptr<Watch>> watch(WatchOptions opt, WatchCallback on_events,
                                                     WatchErrorCallback on_error = {});

  // Compacts the history up to `revision` (watches from before it then
  // answer `compacted`).
  [[nodiscard]] Result<void> compact(int64_t revision);

  // ---- maintenance (one given endpoint, no failover): for tests and tools.
  [[nodiscard]] Result<MemberStatus> member_status(size_t endpoint_index);

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace gpulease::etcd
