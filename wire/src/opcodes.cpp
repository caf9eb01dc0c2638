#include "gpulease/wire/opcodes.hpp"

namespace gpulease::wire {

std::string_view opcode_name(Opcode op) noexcept {
  switch (op) {
    case Opcode::kHello:
      return "HELLO";
    case Opcode::kPing:
      return "PING";
    case Opcode::kLeaseAcquire:
      return "LEASE_ACQUIRE";
    case Opcode::kLeaseRenew:
      return "LEASE_RENEW";
    case Opcode::kLeaseRelease:
      return "LEASE_RELEASE";
    case Opcode::kLeaseQuery:
      return "LEASE_QUERY";
    case Opcode::kLeaseList:
      return "LEASE_LIST";
    case Opcode::kCapRequest:
      return "CAP_REQUEST";
    case Opcode::kMemAlloc:
      return "MEM_ALLOC";
    case Opcode::kMemFree:
      return "MEM_FREE";
    case Opcode::kMemWrite:
      return "MEM_WRITE";
    case Opcode::kMemRead:
      return "MEM_READ";
    case Opcode::kModuleLoad:
      return "MODULE_LOAD";
    case Opcode::kLaunch:
      return "LAUNCH";
    case Opcode::kSync:
      return "SYNC";
    case Opcode::kModuleUnload:
      return "MODULE_UNLOAD";
    case Opcode::kGpuSubmit:
      return "GPU_SUBMIT";
  }
  return "UNKNOWN";
}

std::optional<Opcode> opcode_from_name(std::string_view name) noexcept {
  for (Opcode op : kAllOpcodes) {
    if (opcode_name(op) == name) return op;
  }
  return std::nullopt;
}

bool is_known_opcode(uint16_t v) noexcept {
  for (Opcode op : kAllOpcodes) {
    if (static_cast<uint16_t>(op) == v) return true;
  }
  return false;
}

}  // namespace gpulease::wire
