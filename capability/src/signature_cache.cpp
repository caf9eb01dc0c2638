#include "gpulease/capability/signature_cache.hpp"

#include <sodium.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "gpulease/capability/encoding.hpp"

namespace gpulease::capability {

struct SignatureCache::Shard {
  struct Entry {
    uint64_t hash;
    wire::Bytes bytes;
  };
  std::mutex mu;
  // Front = most recently used. Both GUARDED_BY(mu).
  std::list<Entry> lru;
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index;
  uint64_t hits = 0, misses = 0, insertions = 0, evictions = 0;  // GUARDED_BY(mu)
};

SignatureCache::SignatureCache(size_t capacity, size_t shards) : capacity_(capacity) {
  size_t n = 1;
  unsigned bits = 0;
  while (n < std::max<size_t>(shards, 1) && n < 1024) {
    n <<= 1;
    ++bits;
  }
  // Never more shards than entries, so each shard holds at least one.
  while (n > 1 && n > capacity) {
    n >>= 1;
    --bits;
  }
  shard_shift_ = 64 - bits;
  per_shard_ = capacity == 0 ? 0 : (capacity + n - 1) / n;
  shards_.reserve(n);
  for (size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
  require_sodium();
  randombytes_buf(&seed_, sizeof seed_);
}

SignatureCache::~SignatureCache() = default;

uint64_t SignatureCache::hash(wire::ByteSpan token) const noexcept {
  return XXH3_64bits_withSeed(token.data(), token.size(), seed_);
}

SignatureCache::Shard& SignatureCache::shard_for(uint64_t h) noexcept {
  // High bits pick the shard; the map inside uses all of them.
  return shards_.size() == 1 ? *shards_[0] : *shards_[h >> shard_shift_];
}

bool SignatureCache::contains(wire::ByteSpan token) {
  const uint64_t h = hash(token);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(h);
  if (it == s.index.end() || it->second->bytes.size() != token.size() ||
      std::memcmp(it->second->bytes.data(), token.data(), token.size()) != 0) {
    ++s.misses;
    return false;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  ++s.hits;
  return true;
}

bool SignatureCache::holds(wire::ByteSpan token) {
  const uint64_t h = hash(token);
  Shard& s = shard_for(h);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(h);
  return it != s.index.end() && it->second->bytes.size() == token.size() &&
         std::memcmp(it->second->bytes.data(), token.data(), token.size()) == 0;
}

void SignatureCache::insert(wire::ByteSpan token) {
  if (per_shard_ == 0) return;
  const uint64_t h = hash(token);
  Shard& s = shard_for(h);
  wire::Bytes copy(token.begin(), token.end());  // outside the lock
  std::lock_guard lock(s.mu);
  if (auto it = s.index.find(h); it != s.index.end()) {
    // Same bytes again, or a colliding token: the newest wins.
    it->second->bytes = std::move(copy);
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return;
  }
  if (s.lru.size() >= per_shard_) {
    s.index.erase(s.lru.back().hash);
    s.lru.pop_back();
    ++s.evictions;
  }
  s.lru.push_front(Shard::Entry{h, std::move(copy)});
  s.index.emplace(h, s.lru.begin());
  ++s.insertions;
}

void SignatureCache::clear() {
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    s->index.clear();
    s->lru.clear();
  }
}

SignatureCacheStats SignatureCache::stats() const {
  SignatureCacheStats st;
  st.capacity = capacity_;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    st.hits += s->hits;
    st.misses += s->misses;
    st.insertions += s->insertions;
    st.evictions += s->evictions;
    st.entries += s->lru.size();
  }
  return st;
}

}  // namespace gpulease::capability
