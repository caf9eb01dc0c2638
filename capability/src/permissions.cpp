#include "gpulease/capability/permissions.hpp"

#include <array>
#include <cstdio>

namespace gpulease::capability {
namespace {

struct NamedPermission {
  Permission perm;
  std::string_view name;
};

constexpr std::array<NamedPermission, 9> kNames{{
    {Permission::kLeaseAcquire, "lease_acquire"},
    {Permission::kLeaseQuery, "lease_query"},
    {Permission::kLeaseRenew, "lease_renew"},
    {Permission::kLeaseRelease, "lease_release"},
    {Permission::kMem, "mem"},
    {Permission::kModule, "module"},
    {Permission::kTaskletSubmit, "tasklet_submit"},
    {Permission::kCapRequest, "cap_request"},
    {Permission::kAdmin, "admin"},
}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

// The opcode table (wire/opcodes.hpp) names permissions by bit; these are
// the same bits.
namespace pb = wire::permission_bit;
static_assert(pb::kNone == bits(Permission::kNone));
static_assert(pb::kLeaseAcquire == bits(Permission::kLeaseAcquire));
static_assert(pb::kLeaseQuery == bits(Permission::kLeaseQuery));
static_assert(pb::kLeaseRenew == bits(Permission::kLeaseRenew));
static_assert(pb::kLeaseRelease == bits(Permission::kLeaseRelease));
static_assert(pb::kMem == bits(Permission::kMem));
static_assert(pb::kModule == bits(Permission::kModule));
static_assert(pb::kTaskletSubmit == bits(Permission::kTaskletSubmit));
static_assert(pb::kCapRequest == bits(Permission::kCapRequest));

std::optional<Permission> required_permission(wire::Opcode op) noexcept {
  const wire::OpcodeInfo* info = wire::find_opcode(static_cast<uint16_t>(op));
  if (info == nullptr) return std::nullopt;
  return static_cast<Permission>(info->permission);
}

bool requires_token(wire::Opcode op) noexcept {
  const wire::OpcodeInfo* info = wire::find_opcode(static_cast<uint16_t>(op));
  return info == nullptr || info->needs_token;
}

std::string_view permission_name(Permission p) noexcept {
  if (p == Permission::kNone) return "none";
  for (const auto& n : kNames) {
    if (n.perm == p) return n.name;
  }
  return "unknown";
}

std::optional<Permission> permission_from_name(std::string_view name) noexcept {
  for (const auto& n : kNames) {
    if (iequals(n.name, name)) return n.perm;
  }
  return std::nullopt;
}

Result<PermissionSet> parse_permissions(std::string_view list) {
  PermissionSet set = 0;
  bool any = false;
  while (true) {
    const size_t comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    if (item.empty()) {
      return make_error(Status::kInvalidArgument, "empty permission name in list");
    }
    if (iequals(item, "all")) {
      set |= kAllPermissions;
    } else if (iequals(item, "none")) {
      // Contributes no bits.
    } else if (auto p = permission_from_name(item)) {
      set |= bits(*p);
    } else {
      std::string msg = "unknown permission '";
      msg.append(item);
      msg += "' (known: all, none";
      for (const auto& n : kNames) {
        msg += ", ";
        msg.append(n.name);
      }
      msg += ")";
      return make_error(Status::kInvalidArgument, std::move(msg));
    }
    any = true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (!any) return make_error(Status::kInvalidArgument, "empty permission list");
  return set;
}

std::string format_permissions(PermissionSet set) {
  if (set == 0) return "none";
  std::string out;
  for (const auto& n : kNames) {
    if (set & bits(n.perm)) {
      if (!out.empty()) out += ',';
      out.append(n.name);
    }
  }
  if (const PermissionSet reserved = set & ~kAllPermissions) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", reserved);
    if (!out.empty()) out += ',';
    out += buf;
  }
  return out;
}

}  // namespace gpulease::capability
