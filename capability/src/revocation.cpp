#include "gpulease/capability/revocation.hpp"

#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "gpulease/capability/encoding.hpp"

namespace gpulease::capability {
namespace {

Error line_error(size_t line_no, std::string_view what) {
  std::string msg = "line " + std::to_string(line_no) + ": ";
  msg.append(what);
  return make_error(Status::kInvalidArgument, std::move(msg));
}

}  // namespace

Result<RevocationList> parse_revocation_list(std::string_view text) {
  RevocationList list;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    const size_t sp = line.find(' ');
    const std::string_view kind = line.substr(0, sp);
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    if (kind == "token") {
      auto raw = from_hex(arg);
      if (!raw || raw->size() != kTokenIdBytes) {
        return line_error(line_no, "token id must be 32 hex digits");
      }
      TokenId id;
      std::memcpy(id.data(), raw->data(), id.size());
      list.token_ids.insert(id);
    } else if (kind == "tenant") {
      if (!is_valid_name(arg)) {
        return line_error(line_no, "tenant must be 1..64 bytes of UTF-8 without controls");
      }
      list.tenants.emplace(arg);
    } else {
      return line_error(line_no, "expected 'token <hex>' or 'tenant <name>'");
    }
  }
  return list;
}

RevocationSet::RevocationSet() : list_(std::make_shared<const RevocationList>()) {}

Result<void> RevocationSet::load_file(const std::filesystem::path& path) {
  // One load at a time, from read to swap, so a slow older load can never
  // overwrite a newer list (SIGHUP racing an admin load).
  std::lock_guard load_lock(load_mu_);
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Status::kInvalidArgument, path.string() + ": cannot open");
  // Read at most the limit plus one byte, whatever the file claims its size
  // is (it may grow, or be a /proc file that reports 0).
  std::string text(kMaxRevocationFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return make_error(Status::kInvalidArgument, path.string() + ": read failed");
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxRevocationFileBytes) {
    return make_error(Status::kInvalidArgument, path.string() + ": larger than 16 MiB");
  }
  auto parsed = parse_revocation_list(text);
  if (!parsed) {
    return make_error(Status::kInvalidArgument, path.string() + ": " + parsed.error().message);
  }
  auto next = std::make_shared<const RevocationList>(std::move(parsed).value());
  std::unique_lock lock(mu_);
  list_ = std::move(next);
  path_ = path;
  return {};
}

Result<void> RevocationSet::reload() {
  std::filesystem::path path;
  {
    std::shared_lock lock(mu_);
    path = path_;
  }
  if (path.empty()) return make_error(Status::kInvalidArgument, "no revocation file loaded");
  return load_file(path);
}

void RevocationSet::replace(RevocationList list) {
  auto next = std::make_shared<const RevocationList>(std::move(list));
  std::unique_lock lock(mu_);
  list_ = std::move(next);
}

void RevocationSet::revoke_token(const TokenId& id) {
  std::unique_lock lock(mu_);
  auto next = std::make_shared<RevocationList>(*list_);
  next->token_ids.insert(id);
  list_ = std::move(next);
}

void RevocationSet::revoke_tenant(std::string_view tenant) {
  std::unique_lock lock(mu_);
  auto next = std::make_shared<RevocationList>(*list_);
  next->tenants.emplace(tenant);
  list_ = std::move(next);
}

Revoked RevocationSet::check(const TokenId& token_id, const TokenId& origin_id,
                             std::string_view tenant) const {
  static constexpr TokenId kZero{};
  std::shared_lock lock(mu_);
  const RevocationList& l = *list_;
  if (l.empty()) return Revoked::kNo;
  if (l.token_ids.count(token_id) != 0) return Revoked::kToken;
  if (origin_id != kZero && l.token_ids.count(origin_id) != 0) return Revoked::kToken;
  if (l.tenants.find(tenant) != l.tenants.end()) return Revoked::kTenant;
  return Revoked::kNo;
}

std::shared_ptr<const RevocationList> RevocationSet::snapshot() const {
  std::shared_lock lock(mu_);
  return list_;
}

}  // namespace gpulease::capability
