#include "gpulease/capability/key_ring.hpp"

#include <algorithm>
#include <mutex>

namespace gpulease::capability {

uint64_t KeyRing::add(const PublicKey& pk) {
  const uint64_t id = key_id_of(pk);
  std::unique_lock lock(mu_);
  keys_[id] = pk;
  return id;
}

Result<uint64_t> KeyRing::add_file(const std::filesystem::path& path) {
  auto entry = load_public_key_file(path);
  if (!entry) return std::move(entry).error();
  return add(entry->key);
}

bool KeyRing::remove(uint64_t key_id) {
  std::unique_lock lock(mu_);
  return keys_.erase(key_id) > 0;
}

void KeyRing::replace_all(const std::vector<PublicKey>& keys) {
  std::unordered_map<uint64_t, PublicKey> next;
  for (const auto& pk : keys) next[key_id_of(pk)] = pk;
  std::unique_lock lock(mu_);
  keys_.swap(next);
}

std::optional<PublicKey> KeyRing::find(uint64_t key_id) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(key_id);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

std::vector<uint64_t> KeyRing::key_ids() const {
  std::vector<uint64_t> ids;
  {
    std::shared_lock lock(mu_);
    ids.reserve(keys_.size());
    for (const auto& [id, pk] : keys_) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

size_t KeyRing::size() const {
  std::shared_lock lock(mu_);
  return keys_.size();
}

}  // namespace gpulease::capability
