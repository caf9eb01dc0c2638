// One status enum, shared by the wire protocol and the code.
//
// Numbers are part of the protocol (docs/PROTOCOL.md, "Status codes"): never
// renumber, only append. Each value documents its meaning and whether a retry
// can help.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace gpulease::wire {

enum class Status : uint16_t {
  kOk = 0,                  // Success.
  kBadFrame = 1,            // Malformed frame or payload (bad magic, reserved bits, inconsistent
                            // lengths, a field out of its domain). Retry: no.
  kUnsupportedVersion = 2,  // Frame or HELLO version not spoken by this node. Retry: no.
  kUnknownOpcode = 3,       // Opcode not defined. Retry: no.
  kChecksumMismatch =
      4,               // XXH3-64 over the frame did not match. Retry: resend, the stream is closed.
  kFrameTooLarge = 5,  // A declared length exceeds a limit. Retry: no (split the transfer).
  kUnauthenticated = 6,    // Token missing, malformed, unknown key id or bad signature. Retry: no.
  kPermissionDenied = 7,   // Token valid but does not grant this op, audience, or lease. Retry: no.
  kTokenExpired = 8,       // Token not yet valid or expired. Retry: with a fresh token.
  kRevoked = 9,            // Token or tenant revoked. Retry: no.
  kLeaseNotFound = 10,     // No such lease on this node. Retry: no.
  kLeaseExpired = 11,      // Lease ended (TTL passed or released). Retry: acquire a new lease.
  kCapacityExceeded = 12,  // No device has room, or a tenant cap is reached. Retry: later.
  kAllocFailed = 13,       // Allocation exceeds the lease quota or the device is out of memory.
                           // Retry: after freeing.
  kInvalidHandle = 14,     // Handle is not a live buffer/module of this lease. Retry: no.
  kOutOfRange = 15,        // Offset/length outside the buffer. Retry: no.
  kLoadFailed = 16,        // Module image rejected; message carries the loader/JIT log. Retry: no.
  kLaunchFailed = 17,      // Bad kernel name, dimensions, shared memory or arguments. Retry: no.
  kSyncFailed = 18,        // An earlier asynchronous launch faulted; message names the cause.
                           // Retry: no (the lease may be faulted).
  kLeaseFaulted = 19,     // Lease context is poisoned by an earlier fault; only release/query work.
                          // Retry: on a new lease.
  kBusy = 20,             // Too many requests in flight or node draining. Retry: yes, with backoff.
  kInternal = 21,         // Node bug or backend failure not caused by the request. Retry: maybe.
  kInvalidArgument = 22,  // A well-formed field has a value the op cannot accept. Retry: no.
  kUnsupported = 23,      // Valid request the node or backend does not support (e.g. an
                          // exclusivity class). Retry: no, or on another node.
  kIdempotencyConflict = 24,  // LEASE_ACQUIRE idempotency key already used with other
                              // parameters. Retry: no (use a new key).
};

inline constexpr uint16_t kMaxStatusValue = 24;

// Canonical upper-case name, as used in docs and vectors ("LEASE_EXPIRED").
[[nodiscard]] std::string_view status_name(Status s) noexcept;
// Inverse of status_name; nullopt for unknown names.
[[nodiscard]] std::optional<Status> status_from_name(std::string_view name) noexcept;
// True for values defined above.
[[nodiscard]] constexpr bool is_known_status(uint16_t v) noexcept {
  return v <= kMaxStatusValue;
}
// Whether a client may usefully retry the same request later (see table above).
[[nodiscard]] bool status_retryable(Status s) noexcept;

}  // namespace gpulease::wire
