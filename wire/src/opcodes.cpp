#include "gpulease/wire/opcodes.hpp"

namespace gpulease::wire {

std::string_view opcode_name(Opcode op) noexcept {
  const OpcodeInfo* info = find_opcode(static_cast<uint16_t>(op));
  return info ? info->name : std::string_view("UNKNOWN");
}

std::optional<std::string> lease_rule_violation(Opcode op, uint64_t lease_id) {
  const OpcodeInfo* info = find_opcode(static_cast<uint16_t>(op));
  if (info == nullptr) return std::nullopt;
  if (info->lease_rule == LeaseRule::kZero && lease_id != 0) {
    return "lease_id must be 0 for " + std::string(info->name);
  }
  if (info->lease_rule == LeaseRule::kRequired && lease_id == 0) {
    return std::string(info->name) + " needs the lease in the header's lease_id";
  }
  return std::nullopt;
}

std::optional<Opcode> opcode_from_name(std::string_view name) noexcept {
  for (const auto& info : kOpcodeTable) {
    if (info.name == name) return info.op;
  }
  return std::nullopt;
}

}  // namespace gpulease::wire
