#include "gpulease/wire/opcodes.hpp"

namespace gpulease::wire {

std::string_view opcode_name(Opcode op) noexcept {
  const OpcodeInfo* info = find_opcode(static_cast<uint16_t>(op));
  return info ? info->name : std::string_view("UNKNOWN");
}

std::optional<Opcode> opcode_from_name(std::string_view name) noexcept {
  for (const auto& info : kOpcodeTable) {
    if (info.name == name) return info.op;
  }
  return std::nullopt;
}

}  // namespace gpulease::wire
