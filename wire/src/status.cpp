#include "gpulease/wire/status.hpp"

#include <array>

namespace gpulease::wire {
namespace {

struct StatusInfo {
  std::string_view name;
  bool retryable;
};

constexpr std::array<StatusInfo, kMaxStatusValue + 1> kStatusTable{{
    {"OK", false},
    {"BAD_FRAME", false},
    {"UNSUPPORTED_VERSION", false},
    {"UNKNOWN_OPCODE", false},
    {"CHECKSUM_MISMATCH", true},
    {"FRAME_TOO_LARGE", false},
    {"UNAUTHENTICATED", false},
    {"PERMISSION_DENIED", false},
    {"TOKEN_EXPIRED", true},
    {"REVOKED", false},
    {"LEASE_NOT_FOUND", false},
    {"LEASE_EXPIRED", true},
    {"CAPACITY_EXCEEDED", true},
    {"ALLOC_FAILED", true},
    {"INVALID_HANDLE", false},
    {"OUT_OF_RANGE", false},
    {"LOAD_FAILED", false},
    {"LAUNCH_FAILED", false},
    {"SYNC_FAILED", false},
    {"LEASE_FAULTED", true},
    {"BUSY", true},
    {"INTERNAL", true},
    {"INVALID_ARGUMENT", false},
    {"UNSUPPORTED", false},
    {"IDEMPOTENCY_CONFLICT", false},
}};

}  // namespace

std::string_view status_name(Status s) noexcept {
  auto v = static_cast<uint16_t>(s);
  return is_known_status(v) ? kStatusTable[v].name : std::string_view("UNKNOWN_STATUS");
}

std::optional<Status> status_from_name(std::string_view name) noexcept {
  for (uint16_t v = 0; v <= kMaxStatusValue; ++v) {
    if (kStatusTable[v].name == name) return static_cast<Status>(v);
  }
  return std::nullopt;
}

bool status_retryable(Status s) noexcept {
  auto v = static_cast<uint16_t>(s);
  return is_known_status(v) && kStatusTable[v].retryable;
}

}  // namespace gpulease::wire
