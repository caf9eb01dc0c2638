// Permission bits carried in a token and the opcode -> permission table.
// Normative spec: docs/TOKENS.md, "Permissions".
//
// Bit numbers are part of the token format: never renumber, only append (and
// a new bit needs a new token version, because v1 verifiers reject tokens with
// reserved bits set).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::capability {

enum class Permission : uint32_t {
  kNone = 0,                 // Required by HELLO and PING: any valid token (or none) will do.
  kLeaseAcquire = 1u << 0,   // LEASE_ACQUIRE (bounded by the token's max_vram).
  kLeaseQuery = 1u << 1,     // LEASE_QUERY, LEASE_LIST.
  kLeaseRenew = 1u << 2,     // LEASE_RENEW.
  kLeaseRelease = 1u << 3,   // LEASE_RELEASE.
  kMem = 1u << 4,            // MEM_ALLOC, MEM_FREE, MEM_WRITE, MEM_READ.
  kModule = 1u << 5,         // MODULE_LOAD, MODULE_UNLOAD, MODULE_GLOBAL.
  kTaskletSubmit = 1u << 6,  // LAUNCH, SYNC, GPU_SUBMIT.
  kCapRequest = 1u << 7,     // CAP_REQUEST (attenuation through the node).
  kAdmin = 1u << 8,          // Reserved for administrative opcodes; implies no other bit.
};

// Bit set of Permission values, as carried in the token's perms field.
using PermissionSet = uint32_t;

inline constexpr PermissionSet kAllPermissions = (1u << 9) - 1;

[[nodiscard]] constexpr PermissionSet bits(Permission p) noexcept {
  return static_cast<PermissionSet>(p);
}
// True when `set` grants `p` (always true for Permission::kNone).
[[nodiscard]] constexpr bool grants(PermissionSet set, Permission p) noexcept {
  return (set & bits(p)) == bits(p);
}
// True when every bit of `subset` is in `set`.
[[nodiscard]] constexpr bool is_subset(PermissionSet subset, PermissionSet set) noexcept {
  return (subset & ~set) == 0;
}

// The permission an opcode requires. Permission::kNone for HELLO and PING,
// which the node answers without a token. nullopt for a value that is not a
// known opcode: no token grants it (the caller answers UNKNOWN_OPCODE first).
[[nodiscard]] std::optional<Permission> required_permission(wire::Opcode op) noexcept;

// Whether the node verifies a token for this opcode at all (false for HELLO
// and PING only).
[[nodiscard]] bool requires_token(wire::Opcode op) noexcept;

// "lease_acquire", "mem", ...; "none" for kNone; "unknown" otherwise.
[[nodiscard]] std::string_view permission_name(Permission p) noexcept;
// Case-insensitive inverse of permission_name for single bits.
[[nodiscard]] std::optional<Permission> permission_from_name(std::string_view name) noexcept;

// Parses a comma-separated list of names ("lease_acquire,mem,module"), or
// "all" (every defined bit) or "none". Spaces around names are ignored;
// duplicates are allowed. INVALID_ARGUMENT naming the first unknown entry.
[[nodiscard]] Result<PermissionSet> parse_permissions(std::string_view list);
// Comma-separated names in bit order; "none" for 0. Reserved bits, if any,
// appear as "0x..." so nothing is hidden.
[[nodiscard]] std::string format_permissions(PermissionSet set);

}  // namespace gpulease::capability
