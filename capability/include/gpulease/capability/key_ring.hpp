// The authority public keys a node trusts, by key id. Several keys may be
// present at once so an authority can rotate: add the new key, let tokens
// signed by the old one expire, remove it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "gpulease/capability/keys.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

// THREAD SAFETY: every member may be called concurrently; find() takes a
// shared lock, mutations an exclusive one.
class KeyRing {
 public:
  KeyRing() = default;
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // Trusts `pk` (idempotent). Returns its key id.
  uint64_t add(const PublicKey& pk);
  // Loads a .pub file and trusts its key.
  [[nodiscard]] Result<uint64_t> add_file(const std::filesystem::path& path);
  // Stops trusting a key. False when it was not present.
  bool remove(uint64_t key_id);
  // Replaces the whole ring at once (config reload).
  void replace_all(const std::vector<PublicKey>& keys);

  [[nodiscard]] std::optional<PublicKey> find(uint64_t key_id) const;
  [[nodiscard]] std::vector<uint64_t> key_ids() const;  // sorted
  [[nodiscard]] size_t size() const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, PublicKey> keys_;  // GUARDED_BY(mu_)
};

}  // namespace gpulease::capability
