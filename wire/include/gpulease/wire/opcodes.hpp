// Opcodes, and the one table of what the protocol says about each.
//
// Numbers are part of the protocol (docs/PROTOCOL.md, "Opcodes"). Session ops
// 0x0601-0x0607 are numbered as in the source recipes; later ones follow. Every fact about an
// opcode that more than one place needs (its name, the header lease rule,
// whether it needs a token, the permission bit, whether a resend is safe)
// lives in kOpcodeTable below: the codec, the permission map, the node, the
// client and the vector generator read it, and a test checks the spec's
// opcode table against it. The request and reply message types of each
// opcode are in messages.hpp (OpcodeMessages), next to the types.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gpulease::wire {

enum class Opcode : uint16_t {
  // Connection
  kHello = 0x0001,
  kPing = 0x0002,
  // Leases
  kLeaseAcquire = 0x0101,
  kLeaseRenew = 0x0102,
  kLeaseRelease = 0x0103,
  kLeaseQuery = 0x0104,
  kLeaseList = 0x0105,
  // Capabilities
  kCapRequest = 0x0201,
  // Session ops (recipe 30 numbering) and one-shot submit
  kMemAlloc = 0x0601,
  kMemFree = 0x0602,
  kMemWrite = 0x0603,
  kMemRead = 0x0604,
  kModuleLoad = 0x0605,
  kLaunch = 0x0606,
  kSync = 0x0607,
  kModuleUnload = 0x0608,
  kGpuSubmit = 0x0609,
  kModuleGlobal = 0x060A,
};

// What a request's header `lease_id` must hold (PROTOCOL.md, "Opcodes").
// A request that breaks its opcode's rule is INVALID_ARGUMENT, checked before
// the token's lease binding and before any lease lookup.
enum class LeaseRule : uint8_t {
  kZero,      // lease_id MUST be 0: the frame acts on no lease
  kRequired,  // lease_id MUST name the lease the frame acts on (nonzero)
};

struct OpcodeInfo {
  Opcode op;
  std::string_view name;  // "MEM_ALLOC": docs, vectors, logs, metrics
  LeaseRule lease_rule;
  bool needs_token;  // false only for HELLO and PING
  // The capability::Permission bit the token must grant (TOKENS.md,
  // "Permissions"); 0 = none. A plain number here because wire/ does not
  // depend on capability/; capability/ checks the values with static_asserts.
  uint32_t permission;
  // Sending the same request again (after a lost connection, when the client
  // cannot know whether it ran) has the same effect as sending it once.
  // MEM_ALLOC and MODULE_LOAD are safe through the node's replay window; a
  // LEASE_ACQUIRE only with an idempotency key (the client decides per call).
  bool resend_safe;
};

namespace permission_bit {
inline constexpr uint32_t kNone = 0;
inline constexpr uint32_t kLeaseAcquire = 1u << 0;
inline constexpr uint32_t kLeaseQuery = 1u << 1;
inline constexpr uint32_t kLeaseRenew = 1u << 2;
inline constexpr uint32_t kLeaseRelease = 1u << 3;
inline constexpr uint32_t kMem = 1u << 4;
inline constexpr uint32_t kModule = 1u << 5;
inline constexpr uint32_t kTaskletSubmit = 1u << 6;
inline constexpr uint32_t kCapRequest = 1u << 7;
}  // namespace permission_bit

inline constexpr std::array<OpcodeInfo, 18> kOpcodeTable{{
    // op                  name             lease rule            token  permission resend
    {Opcode::kHello, "HELLO", LeaseRule::kZero, false, permission_bit::kNone, true},
    {Opcode::kPing, "PING", LeaseRule::kZero, false, permission_bit::kNone, true},
    {Opcode::kLeaseAcquire, "LEASE_ACQUIRE", LeaseRule::kZero, true, permission_bit::kLeaseAcquire,
     false},
    {Opcode::kLeaseRenew, "LEASE_RENEW", LeaseRule::kRequired, true, permission_bit::kLeaseRenew,
     true},
    {Opcode::kLeaseRelease, "LEASE_RELEASE", LeaseRule::kRequired, true,
     permission_bit::kLeaseRelease, true},
    {Opcode::kLeaseQuery, "LEASE_QUERY", LeaseRule::kRequired, true, permission_bit::kLeaseQuery,
     true},
    {Opcode::kLeaseList, "LEASE_LIST", LeaseRule::kZero, true, permission_bit::kLeaseQuery, true},
    {Opcode::kCapRequest, "CAP_REQUEST", LeaseRule::kRequired, true, permission_bit::kCapRequest,
     true},
    {Opcode::kMemAlloc, "MEM_ALLOC", LeaseRule::kRequired, true, permission_bit::kMem, true},
    {Opcode::kMemFree, "MEM_FREE", LeaseRule::kRequired, true, permission_bit::kMem, false},
    {Opcode::kMemWrite, "MEM_WRITE", LeaseRule::kRequired, true, permission_bit::kMem, true},
    {Opcode::kMemRead, "MEM_READ", LeaseRule::kRequired, true, permission_bit::kMem, true},
    {Opcode::kModuleLoad, "MODULE_LOAD", LeaseRule::kRequired, true, permission_bit::kModule, true},
    {Opcode::kLaunch, "LAUNCH", LeaseRule::kRequired, true, permission_bit::kTaskletSubmit, false},
    {Opcode::kSync, "SYNC", LeaseRule::kRequired, true, permission_bit::kTaskletSubmit, true},
    {Opcode::kModuleUnload, "MODULE_UNLOAD", LeaseRule::kRequired, true, permission_bit::kModule,
     false},
    {Opcode::kGpuSubmit, "GPU_SUBMIT", LeaseRule::kRequired, true, permission_bit::kTaskletSubmit,
     true},
    {Opcode::kModuleGlobal, "MODULE_GLOBAL", LeaseRule::kRequired, true, permission_bit::kModule,
     true},
}};

// Every opcode, in number order (derived from the table).
inline constexpr std::array<Opcode, kOpcodeTable.size()> kAllOpcodes = [] {
  std::array<Opcode, kOpcodeTable.size()> ops{};
  for (size_t i = 0; i < kOpcodeTable.size(); ++i) ops[i] = kOpcodeTable[i].op;
  return ops;
}();

// The table's entry for a wire value; nullptr for an undefined opcode.
[[nodiscard]] constexpr const OpcodeInfo* find_opcode(uint16_t v) noexcept {
  for (const auto& info : kOpcodeTable) {
    if (static_cast<uint16_t>(info.op) == v) return &info;
  }
  return nullptr;
}
// The entry of a defined opcode. REQUIRES: op is in kOpcodeTable (every
// enumerator is: see the static_assert below).
[[nodiscard]] constexpr const OpcodeInfo& opcode_info(Opcode op) noexcept {
  return *find_opcode(static_cast<uint16_t>(op));
}

namespace detail {
constexpr bool opcode_table_is_sound() {
  for (size_t i = 0; i < kOpcodeTable.size(); ++i) {
    // Sorted by number, no duplicates: the spec's table and the vectors
    // list opcodes in this order.
    if (i > 0 && static_cast<uint16_t>(kOpcodeTable[i - 1].op) >=
                     static_cast<uint16_t>(kOpcodeTable[i].op)) {
      return false;
    }
    const auto& e = kOpcodeTable[i];
    if (e.name.empty()) return false;
    // Opcodes without a token need no permission and act on no lease.
    if (!e.needs_token && (e.permission != 0 || e.lease_rule != LeaseRule::kZero)) return false;
    if (e.needs_token && e.permission == 0) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::opcode_table_is_sound(), "kOpcodeTable: sorted, named, consistent");
// Why a request's header lease_id breaks its opcode's rule ("lease_id must
// be 0 for LEASE_ACQUIRE"), or nullopt when it obeys it (or the opcode is
// undefined). The node answers a violation INVALID_ARGUMENT; the token
// verifier (capability) checks it as step 8b, the node itself for opcodes
// that carry no token.
[[nodiscard]] std::optional<std::string> lease_rule_violation(Opcode op, uint64_t lease_id);

// "MEM_ALLOC" etc.; "UNKNOWN" for values not above.
[[nodiscard]] std::string_view opcode_name(Opcode op) noexcept;
[[nodiscard]] std::optional<Opcode> opcode_from_name(std::string_view name) noexcept;
[[nodiscard]] constexpr bool is_known_opcode(uint16_t v) noexcept {
  return find_opcode(v) != nullptr;
}

}  // namespace gpulease::wire
