// Opcodes. Numbers are part of the protocol (docs/PROTOCOL.md, "Opcodes").
// Session ops 0x0601-0x0607 are numbered as in the source recipes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
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
};

inline constexpr Opcode kAllOpcodes[] = {
    Opcode::kHello,        Opcode::kPing,       Opcode::kLeaseAcquire, Opcode::kLeaseRenew,
    Opcode::kLeaseRelease, Opcode::kLeaseQuery, Opcode::kLeaseList,    Opcode::kCapRequest,
    Opcode::kMemAlloc,     Opcode::kMemFree,    Opcode::kMemWrite,     Opcode::kMemRead,
    Opcode::kModuleLoad,   Opcode::kLaunch,     Opcode::kSync,         Opcode::kModuleUnload,
    Opcode::kGpuSubmit,
};

// "MEM_ALLOC" etc.; "UNKNOWN" for values not above.
[[nodiscard]] std::string_view opcode_name(Opcode op) noexcept;
[[nodiscard]] std::optional<Opcode> opcode_from_name(std::string_view name) noexcept;
[[nodiscard]] bool is_known_opcode(uint16_t v) noexcept;

}  // namespace gpulease::wire
