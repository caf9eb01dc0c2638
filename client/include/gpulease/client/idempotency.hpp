// Idempotency stores (recipe 53): a request id runs its effect at most once,
// and a repeat gets the first run's answer.
//
//   auto r = store.reserve("inference:req-1");
//   if (!r) return r.error();                       // the store is unreachable
//   switch (r->state) {
//     case IdempotencyRecord::State::kReservedByUs: // run it, then:
//       store.complete("inference:req-1", r->fence, answer);   // or abandon()
//     case IdempotencyRecord::State::kCompleted:    // r->result is the first answer
//     case IdempotencyRecord::State::kInProgress:   // another owner runs it now
//   }
//
// Two stores:
//  - MemoryIdempotencyStore: one process's memory (the embedded default).
//  - EtcdIdempotencyStore: replicated in etcd, shared by every gateway of a
//    fleet (DECISIONS.md): key /gpulease/<fleet>/idempotency/<request id>,
//    value JSON {"state":"reserved"|"complete","owner","fence","result"}.
//    reserve = one transaction "create_revision == 0 -> put reserved, else
//    get", so of two racing gateways exactly one creates the key; the fence
//    is the key's mod_revision after that put. complete = a transaction
//    "mod_revision == fence -> put complete" (a reservation that expired and
//    was taken over by another owner fails the compare: the late owner learns
//    it lost, IDEMPOTENCY_CONFLICT). abandon = "mod_revision == fence ->
//    delete". A reservation is attached to an etcd lease of reservation_ttl:
//    an owner that dies mid-request frees the id within that time.
//    docs/FLEET.md ("The idempotency store") says what this does and does not
//    guarantee.
//
// THREAD SAFETY: every member of both stores may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "gpulease/client/errors.hpp"
#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::client {

struct IdempotencyRecord {
  enum class State {
    kReservedByUs,  // this call reserved it: run the request, then complete() or abandon()
    kInProgress,    // reserved by another owner (or an earlier call of ours), not complete
    kCompleted,     // done: `result` is the first run's answer
  };
  State state = State::kInProgress;
  std::string owner;  // who reserved (or completed) it
  int64_t fence = 0;  // kReservedByUs: pass to complete() / abandon()
  wire::Bytes result;
};

// Request ids: 1..256 bytes of printable ASCII without '/'. INVALID_ARGUMENT
// otherwise (they become etcd keys).
[[nodiscard]] Result<void> check_request_id(std::string_view id);
// The longest result a store keeps.
inline constexpr size_t kMaxIdempotencyResultBytes = 512u << 10;

class IdempotencyStore {
 public:
  virtual ~IdempotencyStore() = default;
  [[nodiscard]] virtual Result<IdempotencyRecord> reserve(std::string_view request_id) = 0;
  // Fails with a local IDEMPOTENCY_CONFLICT when the fence no longer holds
  // (the reservation expired and another owner took it, or it was
  // completed); store errors: connection lost / timeout (etcd unreachable).
  [[nodiscard]] virtual Result<void> complete(std::string_view request_id, int64_t fence,
                                              wire::ByteSpan result) = 0;
  // Gives the id back (the request did nothing): a retry may run it.
  [[nodiscard]] virtual Result<void> abandon(std::string_view request_id, int64_t fence) = 0;
  // The record, or nullopt when the id is unknown.
  [[nodiscard]] virtual Result<std::optional<IdempotencyRecord>> read(
      std::string_view request_id) = 0;
  // Waits (bounded) until the id is completed or gone; its record then
  // (nullopt: gone, e.g. abandoned or its owner died). A timeout error after
  // `timeout`.
  [[nodiscard]] Result<std::optional<IdempotencyRecord>> wait_settled(
      std::string_view request_id, std::chrono::milliseconds timeout);
};

class MemoryIdempotencyStore final : public IdempotencyStore {
 public:
  explicit MemoryIdempotencyStore(std::string owner = "memory") : owner_(std::move(owner)) {}
  [[nodiscard]] Result<IdempotencyRecord> reserve(std::string_view request_id) override;
  [[nodiscard]] Result<void> complete(std::string_view request_id, int64_t fence,
                                      wire::ByteSpan result) override;
  [[nodiscard]] Result<void> abandon(std::string_view request_id, int64_t fence) override;
  [[nodiscard]] Result<std::optional<IdempotencyRecord>> read(std::string_view request_id) override;

 private:
  struct Entry {
    bool complete = false;
    int64_t fence = 0;
    wire::Bytes result;
  };
  std::string owner_;
  std::mutex mu_;
  int64_t next_fence_ = 1;              // GUARDED_BY(mu_)
  std::map<std::string, Entry> state_;  // GUARDED_BY(mu_)
};

struct EtcdIdempotencyOptions {
  std::string registry;  // etcd://...; empty: $GPULEASE_REGISTRY
  std::string fleet;     // empty: $GPULEASE_FLEET, else "default"
  std::string owner;     // who reserves (a gateway's name); empty: "<hostname>/<pid>"
  // A reservation not completed within this is freed (its owner died).
  std::chrono::seconds reservation_ttl{60};
  // A completed record is kept this long (0: forever).
  std::chrono::seconds result_ttl{0};
  std::chrono::milliseconds timeout{2000};  // per etcd request and endpoint
};

class EtcdIdempotencyStore final : public IdempotencyStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<EtcdIdempotencyStore>> open(
      EtcdIdempotencyOptions options);
  ~EtcdIdempotencyStore() override;

  [[nodiscard]] Result<IdempotencyRecord> reserve(std::string_view request_id) override;
  [[nodiscard]] Result<void> complete(std::string_view request_id, int64_t fence,
                                      wire::ByteSpan result) override;
  [[nodiscard]] Result<void> abandon(std::string_view request_id, int64_t fence) override;
  [[nodiscard]] Result<std::optional<IdempotencyRecord>> read(std::string_view request_id) override;

  [[nodiscard]] const std::string& owner() const noexcept;
  [[nodiscard]] std::string key(std::string_view request_id) const;

  struct Impl;

 private:
  explicit EtcdIdempotencyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpulease::client
