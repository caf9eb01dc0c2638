// Payloads of every opcode, request and reply. Layouts are normative in
// docs/PROTOCOL.md ("Messages"); every integer is little-endian, strings are
// `str16` (u16 byte length, then UTF-8 bytes), blobs are `bytes32` (u32 byte
// length, then bytes) unless a field is marked "rest" (it runs to the end of
// the payload).
//
// Every decoder consumes the whole payload: trailing bytes are BAD_FRAME.
// Every length and count is checked against Limits before anything is
// allocated. Field values outside their domain (an unknown exclusivity
// class, a zero size) are INVALID_ARGUMENT where the encoding itself is fine.
// Decoding order (PROTOCOL.md, "Decoding rules"): every structural error
// (BAD_FRAME, FRAME_TOO_LARGE) wins over every value error
// (INVALID_ARGUMENT); within each kind the first failing field wins.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/limits.hpp"
#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::wire {

using Dim3 = std::array<uint32_t, 3>;
using IdempotencyKey = std::array<uint8_t, 16>;
using Uuid = std::array<uint8_t, 16>;

inline constexpr uint16_t kAnyDevice = 0xffff;

enum class Exclusivity : uint8_t { kShared = 0, kSessionExclusive = 1, kDeviceExclusive = 2 };
enum class LeaseState : uint8_t { kActive = 0, kFaulted = 1, kExpired = 2, kReleased = 3 };
enum class ImageFormat : uint8_t { kPtx = 0, kCubin = 1, kFatbin = 2 };

inline constexpr uint8_t kAcquireReleaseOnDisconnect = 0x01;
inline constexpr uint8_t kKnownAcquireFlags = kAcquireReleaseOnDisconnect;

// ---- Connection -----------------------------------------------------------

struct HelloRequest {
  uint16_t min_version = kMinVersionDefault;
  uint16_t max_version = kMaxVersionDefault;
  std::string client_name;  // str16, <= max_name_bytes
  static constexpr uint16_t kMinVersionDefault = 1;
  static constexpr uint16_t kMaxVersionDefault = 1;
  bool operator==(const HelloRequest&) const = default;
};

struct DeviceDescriptor {
  uint16_t index = 0;
  std::string name;  // str16
  Uuid uuid{};
  uint8_t cc_major = 0;
  uint8_t cc_minor = 0;
  uint32_t sm_count = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // leasable bytes not held by any lease
  bool operator==(const DeviceDescriptor&) const = default;
};

// Limits as announced by a node (a subset of Limits that clients need).
struct AnnouncedLimits {
  uint32_t max_token_bytes = 0;
  uint32_t max_payload_bytes = 0;
  uint32_t max_inflight = 0;
  uint32_t max_kernel_args = 0;
  uint32_t max_arg_bytes = 0;
  uint32_t max_name_bytes = 0;
  uint32_t max_lease_ttl_s = 0;
  bool operator==(const AnnouncedLimits&) const = default;
};

struct HelloReply {
  uint16_t version = 1;
  std::string node_id;  // the audience tokens for this node must name
  std::string backend;  // "cuda" or "sim"
  AnnouncedLimits limits;
  std::vector<DeviceDescriptor> devices;  // u16 count, <= max_devices
  bool operator==(const HelloReply&) const = default;
};

struct PingRequest {
  Bytes data;  // rest, <= max_ping_bytes
  bool operator==(const PingRequest&) const = default;
};
struct PingReply {
  Bytes data;  // rest: the request's data echoed
  bool operator==(const PingReply&) const = default;
};

// ---- Leases ---------------------------------------------------------------

struct LeaseAcquireRequest {
  uint64_t min_vram = 0;  // > 0
  uint32_t ttl_s = 0;     // > 0
  Exclusivity exclusivity = Exclusivity::kShared;
  uint8_t flags = 0;  // kAcquireReleaseOnDisconnect
  uint16_t device = kAnyDevice;
  IdempotencyKey idempotency_key{};  // all zero = none
  bool operator==(const LeaseAcquireRequest&) const = default;
};
struct LeaseAcquireReply {
  uint64_t lease_id = 0;
  uint16_t device = 0;
  uint64_t granted_bytes = 0;
  uint64_t expires_at_ms = 0;  // unix milliseconds
  bool operator==(const LeaseAcquireReply&) const = default;
};

struct LeaseRenewRequest {
  uint32_t ttl_s = 0;  // > 0: new expiry = now + ttl_s (bounded by token and node)
  bool operator==(const LeaseRenewRequest&) const = default;
};
struct LeaseRenewReply {
  uint64_t expires_at_ms = 0;
  bool operator==(const LeaseRenewReply&) const = default;
};

// The fewest bytes one element of each list can take on the wire. A count
// is refused (BAD_FRAME) when count x minimum exceeds the bytes left, before
// anything is reserved for it (PROTOCOL.md, "Encodings").
inline constexpr size_t kMinDeviceBytes = 2 + 2 + 16 + 1 + 1 + 4 + 8 + 8;   // empty name: 42
inline constexpr size_t kLeaseRecordBytes = 8 + 1 + 1 + 2 + 8 * 4 + 4 + 4;  // fixed: 52
inline constexpr size_t kRawArgSizeBytes = 4;       // one u32 of a raw argument's sizes
inline constexpr size_t kMinTypedArgBytes = 3;      // SCALAR kind + u16 size 0 (refused later)
inline constexpr size_t kMinSubmitArgBytes = 3;     // SCALAR kind + u16 size 0 (refused later)
inline constexpr size_t kMinSubmitOutputBytes = 6;  // u16 arg_index + bytes32 of length 0

struct Empty {
  bool operator==(const Empty&) const = default;
};

struct LeaseInfo {
  uint64_t lease_id = 0;
  LeaseState state = LeaseState::kActive;
  Exclusivity exclusivity = Exclusivity::kShared;
  uint16_t device = 0;
  uint64_t quota_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t expires_at_ms = 0;
  uint64_t remaining_ms = 0;
  uint32_t buffers = 0;
  uint32_t modules = 0;
  bool operator==(const LeaseInfo&) const = default;
};

struct LeaseListReply {
  std::vector<LeaseInfo> leases;  // u32 count, <= max_list_entries
  bool operator==(const LeaseListReply&) const = default;
};

struct CapRequestRequest {
  uint32_t permissions = 0;  // subset of the presenting token's
  uint32_t ttl_s = 0;        // 0 = as long as the presenting token
  bool operator==(const CapRequestRequest&) const = default;
};
struct CapRequestReply {
  Bytes token;  // bytes32, <= max_token_bytes
  bool operator==(const CapRequestReply&) const = default;
};

// ---- Session ops ----------------------------------------------------------

struct MemAllocRequest {
  uint64_t size = 0;  // > 0
  bool operator==(const MemAllocRequest&) const = default;
};
struct HandleReply {  // MEM_ALLOC, MODULE_LOAD
  uint64_t handle = 0;
  bool operator==(const HandleReply&) const = default;
};
struct HandleRequest {  // MEM_FREE, MODULE_UNLOAD
  uint64_t handle = 0;
  bool operator==(const HandleRequest&) const = default;
};

struct MemWriteRequest {
  uint64_t handle = 0;
  uint64_t offset = 0;
  Bytes data;  // rest
  bool operator==(const MemWriteRequest&) const = default;
};
// MEM_WRITE decoded in place: `data` points into the payload it was decoded
// from (leveldb's Slice), so a bulk write is checked by the codec and copied
// once, into the device. REQUIRES: the payload outlives the view.
struct MemWriteView {
  uint64_t handle = 0;
  uint64_t offset = 0;
  ByteSpan data;
};
struct MemReadRequest {
  uint64_t handle = 0;
  uint64_t offset = 0;
  uint32_t length = 0;  // <= max_payload_bytes (the reply must fit a frame)
  bool operator==(const MemReadRequest&) const = default;
};
struct MemReadReply {
  Bytes data;  // rest
  bool operator==(const MemReadReply&) const = default;
};

struct ModuleLoadRequest {
  ImageFormat format = ImageFormat::kPtx;
  Bytes image;  // rest, non-empty
  bool operator==(const ModuleLoadRequest&) const = default;
};

// MODULE_GLOBAL: a loaded module's module-scope variable, by name (what
// cuModuleGetGlobal looks up). The reply's handle is the variable's device
// address; MEM_WRITE, MEM_READ and typed BUFFER arguments accept it while its
// module is loaded.
struct ModuleGlobalRequest {
  uint64_t module = 0;
  std::string name;  // str16, 1..max_name_bytes, UTF-8
  bool operator==(const ModuleGlobalRequest&) const = default;
};
enum class GlobalSpace : uint8_t {
  kGlobal = 0,   // .global (__device__): kernels may write it
  kConst = 1,    // .const (__constant__): read-only to kernels, writable by MEM_WRITE
  kUnknown = 2,  // the backend cannot tell (cuda with a cubin/fatbin image)
};
struct ModuleGlobalReply {
  uint64_t handle = 0;  // the variable's device address
  uint64_t size = 0;    // bytes
  GlobalSpace space = GlobalSpace::kGlobal;
  bool operator==(const ModuleGlobalReply&) const = default;
};

enum class ArgForm : uint8_t { kRaw = 0, kTyped = 1 };
enum class TypedArgKind : uint8_t { kScalar = 0, kBuffer = 1 };

struct TypedArg {
  TypedArgKind kind = TypedArgKind::kScalar;
  Bytes scalar;         // kScalar: u16 size (1..max_scalar_bytes), then bytes
  uint64_t handle = 0;  // kBuffer: buffer handle, then u64 byte offset into it
  uint64_t offset = 0;
  bool operator==(const TypedArg&) const = default;
};

// Kernel arguments in either form:
//  raw:   u16 count, u32 sizes[count], bytes32 blob (sum(sizes) == blob length)
//  typed: u16 count, count x TypedArg
struct KernelArgs {
  ArgForm form = ArgForm::kRaw;
  std::vector<uint32_t> raw_sizes;
  Bytes raw_blob;
  std::vector<TypedArg> typed;
  bool operator==(const KernelArgs&) const = default;
};

struct LaunchRequest {
  uint64_t module = 0;
  std::string kernel;  // str16, 1..max_name_bytes
  Dim3 grid{1, 1, 1};
  Dim3 block{1, 1, 1};
  uint32_t shared_bytes = 0;
  KernelArgs args;
  bool operator==(const LaunchRequest&) const = default;
};
struct LaunchReply {
  uint64_t launch_seq = 0;  // 1-based count of launches queued on this lease
  bool operator==(const LaunchReply&) const = default;
};
struct SyncReply {
  uint64_t completed = 0;  // launches completed on this lease so far
  bool operator==(const SyncReply&) const = default;
};

enum class SubmitArgKind : uint8_t { kScalar = 0, kIn = 1, kOut = 2, kInOut = 3 };
struct SubmitArg {
  SubmitArgKind kind = SubmitArgKind::kScalar;
  Bytes data;             // kScalar: u16 size + bytes; kIn/kInOut: bytes32 initial contents
  uint64_t out_size = 0;  // kOut: u64 size of the zero-filled buffer
  bool operator==(const SubmitArg&) const = default;
};
struct GpuSubmitRequest {
  ImageFormat format = ImageFormat::kPtx;
  Bytes image;  // bytes32, non-empty
  std::string kernel;
  Dim3 grid{1, 1, 1};
  Dim3 block{1, 1, 1};
  uint32_t shared_bytes = 0;
  std::vector<SubmitArg> args;  // u16 count, <= max_kernel_args
  bool operator==(const GpuSubmitRequest&) const = default;
};
struct SubmitOutput {
  uint16_t arg_index = 0;
  Bytes data;  // bytes32
  bool operator==(const SubmitOutput&) const = default;
};
struct GpuSubmitReply {
  std::vector<SubmitOutput> outputs;  // u16 count; one per out/inout argument, in order
  bool operator==(const GpuSubmitReply&) const = default;
};

// Error reply payload (any opcode, status != OK).
struct ErrorReply {
  std::string message;  // rest, UTF-8, <= max_message_bytes
  bool operator==(const ErrorReply&) const = default;
};

// ---- Per-opcode message types ------------------------------------------------

using RequestMessage =
    std::variant<HelloRequest, PingRequest, LeaseAcquireRequest, LeaseRenewRequest, Empty,
                 CapRequestRequest, MemAllocRequest, HandleRequest, MemWriteRequest, MemReadRequest,
                 ModuleLoadRequest, LaunchRequest, GpuSubmitRequest, ModuleGlobalRequest>;
using ReplyMessage =
    std::variant<HelloReply, PingReply, LeaseAcquireReply, LeaseRenewReply, Empty, LeaseInfo,
                 LeaseListReply, CapRequestReply, HandleReply, MemReadReply, LaunchReply, SyncReply,
                 GpuSubmitReply, ModuleGlobalReply>;

// The request and reply message of each opcode: the codec's half of the
// opcode table (opcodes.hpp). decode_request/decode_reply are generated from
// kOpcodeTable through these, so a table row without its types here does not
// compile.
template <Opcode>
struct OpcodeMessages;
#define GPULEASE_OPCODE_MESSAGES(OP, REQ, REP) \
  template <>                                  \
  struct OpcodeMessages<Opcode::OP> {          \
    using Request = REQ;                       \
    using Reply = REP;                         \
  }
GPULEASE_OPCODE_MESSAGES(kHello, HelloRequest, HelloReply);
GPULEASE_OPCODE_MESSAGES(kPing, PingRequest, PingReply);
GPULEASE_OPCODE_MESSAGES(kLeaseAcquire, LeaseAcquireRequest, LeaseAcquireReply);
GPULEASE_OPCODE_MESSAGES(kLeaseRenew, LeaseRenewRequest, LeaseRenewReply);
GPULEASE_OPCODE_MESSAGES(kLeaseRelease, Empty, Empty);
GPULEASE_OPCODE_MESSAGES(kLeaseQuery, Empty, LeaseInfo);
GPULEASE_OPCODE_MESSAGES(kLeaseList, Empty, LeaseListReply);
GPULEASE_OPCODE_MESSAGES(kCapRequest, CapRequestRequest, CapRequestReply);
GPULEASE_OPCODE_MESSAGES(kMemAlloc, MemAllocRequest, HandleReply);
GPULEASE_OPCODE_MESSAGES(kMemFree, HandleRequest, Empty);
GPULEASE_OPCODE_MESSAGES(kMemWrite, MemWriteRequest, Empty);
GPULEASE_OPCODE_MESSAGES(kMemRead, MemReadRequest, MemReadReply);
GPULEASE_OPCODE_MESSAGES(kModuleLoad, ModuleLoadRequest, HandleReply);
GPULEASE_OPCODE_MESSAGES(kLaunch, LaunchRequest, LaunchReply);
GPULEASE_OPCODE_MESSAGES(kSync, Empty, SyncReply);
GPULEASE_OPCODE_MESSAGES(kModuleUnload, HandleRequest, Empty);
GPULEASE_OPCODE_MESSAGES(kGpuSubmit, GpuSubmitRequest, GpuSubmitReply);
GPULEASE_OPCODE_MESSAGES(kModuleGlobal, ModuleGlobalRequest, ModuleGlobalReply);
#undef GPULEASE_OPCODE_MESSAGES

template <Opcode op>
using RequestOf = typename OpcodeMessages<op>::Request;
template <Opcode op>
using ReplyOf = typename OpcodeMessages<op>::Reply;

// Encoders append the payload bytes of one message.
void encode(const HelloRequest&, Bytes&);
void encode(const HelloReply&, Bytes&);
void encode(const PingRequest&, Bytes&);
void encode(const PingReply&, Bytes&);
void encode(const LeaseAcquireRequest&, Bytes&);
void encode(const LeaseAcquireReply&, Bytes&);
void encode(const LeaseRenewRequest&, Bytes&);
void encode(const LeaseRenewReply&, Bytes&);
void encode(const Empty&, Bytes&);
void encode(const LeaseInfo&, Bytes&);
void encode(const LeaseListReply&, Bytes&);
void encode(const CapRequestRequest&, Bytes&);
void encode(const CapRequestReply&, Bytes&);
void encode(const MemAllocRequest&, Bytes&);
void encode(const HandleReply&, Bytes&);
void encode(const HandleRequest&, Bytes&);
void encode(const MemWriteRequest&, Bytes&);
void encode(const MemReadRequest&, Bytes&);
void encode(const MemReadReply&, Bytes&);
void encode(const ModuleLoadRequest&, Bytes&);
void encode(const LaunchRequest&, Bytes&);
void encode(const LaunchReply&, Bytes&);
void encode(const SyncReply&, Bytes&);
void encode(const GpuSubmitRequest&, Bytes&);
void encode(const GpuSubmitReply&, Bytes&);
void encode(const ModuleGlobalRequest&, Bytes&);
void encode(const ModuleGlobalReply&, Bytes&);
void encode(const ErrorReply&, Bytes&);

template <typename M>
[[nodiscard]] Bytes encode_payload(const M& m) {
  Bytes out;
  encode(m, out);
  return out;
}

// Decoders: the whole payload must be consumed.
template <typename M>
[[nodiscard]] Result<M> decode_payload(ByteSpan payload, const Limits& limits);

// Decodes a request payload of `op` into the message type that opcode uses.
[[nodiscard]] Result<RequestMessage> decode_request(Opcode op, ByteSpan payload,
                                                    const Limits& limits);
// Decodes an OK reply payload of `op`.
[[nodiscard]] Result<ReplyMessage> decode_reply(Opcode op, ByteSpan payload, const Limits& limits);

// Encodes any message held by the variants.
[[nodiscard]] Bytes encode_request(const RequestMessage& m);
[[nodiscard]] Bytes encode_reply(const ReplyMessage& m);

// Total parameter bytes and count of a KernelArgs (typed buffers count 8 bytes).
[[nodiscard]] size_t kernel_args_count(const KernelArgs& a) noexcept;

}  // namespace gpulease::wire
