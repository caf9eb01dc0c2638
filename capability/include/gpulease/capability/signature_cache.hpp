// Remembers which exact token byte strings have had their Ed25519 signature
// verified, so a client that sends the same token on every frame pays the
// signature check (~50 us) once.
//
// SECURITY: an entry means only "these bytes carry a valid signature by the
// key their key id named when they were inserted". Expiry, revocation,
// audience, permission and lease checks are the caller's, on every frame. A
// hit requires the full token bytes to be equal, so an xxHash collision
// (accidental or crafted) costs a miss, never an acceptance. The hash is
// seeded per cache instance from the RNG so collisions cannot be precomputed
// to evict other tenants' entries. The key ring is consulted before the cache,
// so removing a key stops its tokens even while they are cached.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gpulease/wire/bytes.hpp"

namespace gpulease::capability {

struct SignatureCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t insertions = 0;
  uint64_t evictions = 0;
  size_t entries = 0;
  size_t capacity = 0;
};

// A bounded LRU, split into independently locked shards.
// THREAD SAFETY: every member may be called concurrently.
class SignatureCache {
 public:
  // About `capacity` entries in all: each shard holds ceil(capacity / shards),
  // so the bound is `capacity` rounded up to a multiple of the shard count
  // (0 disables the cache: every lookup misses and nothing is stored).
  // `shards` is rounded up to a power of two, at most 1024, and down to no
  // more than `capacity`.
  explicit SignatureCache(size_t capacity, size_t shards = 16);
  SignatureCache(const SignatureCache&) = delete;
  SignatureCache& operator=(const SignatureCache&) = delete;
  ~SignatureCache();

  // True when exactly these bytes were inserted and not yet evicted. Counts a
  // hit or a miss.
  [[nodiscard]] bool contains(wire::ByteSpan token);
  // As contains(), but counts nothing and leaves the LRU order alone: for a
  // caller deciding whether a verification would need the signature check.
  [[nodiscard]] bool holds(wire::ByteSpan token);
  // REQUIRES: the signature of `token` was verified.
  void insert(wire::ByteSpan token);
  void clear();

  [[nodiscard]] SignatureCacheStats stats() const;
  [[nodiscard]] size_t capacity() const noexcept { return capacity_; }

 private:
  struct Shard;
  Shard& shard_for(uint64_t hash) noexcept;
  uint64_t hash(wire::ByteSpan token) const noexcept;

  size_t capacity_;
  size_t per_shard_;
  uint64_t seed_;
  unsigned shard_shift_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace gpulease::capability
