// Revoked token ids and tenants, loadable from a file and reloadable without
// a restart (docs/TOKENS.md, "Revocation file").
//
// File format, one entry per line:
//   # comment                 (also blank lines)
//   token <32 hex digits>     revokes that token id, and every token minted
//                             through CAP_REQUEST from it (origin_id match)
//   tenant <name>             revokes every token of the tenant (the rest of
//                             the line, 1..64 bytes of UTF-8)
// Any other line makes the whole file invalid.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "gpulease/capability/token.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

// Revocation files list ids, not data; 16 MiB is far beyond any real one and
// keeps a wrong path (a disk image, /dev/zero) from exhausting memory.
inline constexpr size_t kMaxRevocationFileBytes = 16u << 20;

// An immutable set of revocations.
struct RevocationList {
  std::set<TokenId> token_ids;
  std::set<std::string, std::less<>> tenants;

  [[nodiscard]] bool empty() const noexcept { return token_ids.empty() && tenants.empty(); }
};

// INVALID_ARGUMENT naming the first bad line ("line 3: ...").
[[nodiscard]] Result<RevocationList> parse_revocation_list(std::string_view text);

enum class Revoked { kNo, kToken, kTenant };

// THREAD SAFETY: every member may be called concurrently. Readers see either
// the old or the new list, never a mix: a load swaps a shared_ptr.
class RevocationSet {
 public:
  RevocationSet();
  RevocationSet(const RevocationSet&) = delete;
  RevocationSet& operator=(const RevocationSet&) = delete;

  // Reads and parses `path`, then swaps it in and remembers `path` for
  // reload(). On any error the set in force is unchanged.
  [[nodiscard]] Result<void> load_file(const std::filesystem::path& path);
  // Re-reads the file of the last successful load_file (SIGHUP). INVALID_ARGUMENT
  // when no file was loaded; otherwise as load_file.
  [[nodiscard]] Result<void> reload();
  // Replaces the list (tests; an admin op). Forgets nothing about the path.
  void replace(RevocationList list);
  // Adds one entry on top of the list in force (copy on write). A later
  // reload() from the file drops it unless the file has it too.
  void revoke_token(const TokenId& id);
  void revoke_tenant(std::string_view tenant);

  // Whether a token with this id, origin id and tenant is revoked. A zero
  // origin_id never matches.
  [[nodiscard]] Revoked check(const TokenId& token_id, const TokenId& origin_id,
                              std::string_view tenant) const;

  [[nodiscard]] std::shared_ptr<const RevocationList> snapshot() const;

 private:
  std::mutex load_mu_;  // serializes load_file() from read to swap
  mutable std::shared_mutex mu_;
  std::shared_ptr<const RevocationList> list_;  // GUARDED_BY(mu_), never null
  std::filesystem::path path_;                  // GUARDED_BY(mu_)
};

}  // namespace gpulease::capability
