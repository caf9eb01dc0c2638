// Frame layout (all integers little-endian). See docs/PROTOCOL.md, "Frames".
//
//   offset size field
//   0      4    magic        0x534C5047 ("GPLS" on the wire: 47 50 4C 53)
//   4      2    version      1
//   6      2    opcode       see opcodes.hpp
//   8      2    flags        bit 0 = REPLY; every other bit must be 0
//   10     2    status       requests: 0; replies: a Status value
//   12     4    token_len    requests: bytes of the token section; replies: 0
//   16     8    request_id   chosen by the client, echoed in the reply
//   24     8    lease_id     the lease the op acts on (0 = none)
//   32     4    payload_len  bytes of the payload after the token section
//   36     4    reserved     must be 0
//   40     8    checksum     XXH3-64 (seed 0) of header (this field zeroed) || token || payload
//   48          token section (token_len bytes), then payload (payload_len bytes)
//
// A reply with status != OK carries a UTF-8 message as its payload.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "gpulease/wire/bytes.hpp"
#include "gpulease/wire/limits.hpp"
#include "gpulease/wire/opcodes.hpp"
#include "gpulease/wire/result.hpp"

namespace gpulease::wire {

inline constexpr uint32_t kMagic = 0x534C5047;  // "GPLS"
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr uint16_t kMinProtocolVersion = 1;
inline constexpr uint16_t kMaxProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 48;

inline constexpr size_t kOffMagic = 0;
inline constexpr size_t kOffVersion = 4;
inline constexpr size_t kOffOpcode = 6;
inline constexpr size_t kOffFlags = 8;
inline constexpr size_t kOffStatus = 10;
inline constexpr size_t kOffTokenLen = 12;
inline constexpr size_t kOffRequestId = 16;
inline constexpr size_t kOffLeaseId = 24;
inline constexpr size_t kOffPayloadLen = 32;
inline constexpr size_t kOffReserved = 36;
inline constexpr size_t kOffChecksum = 40;

inline constexpr uint16_t kFlagReply = 0x0001;
inline constexpr uint16_t kKnownFlags = kFlagReply;

using HeaderBytes = std::array<std::byte, kHeaderSize>;

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  Opcode opcode = Opcode::kPing;
  uint16_t flags = 0;
  Status status = Status::kOk;
  uint32_t token_len = 0;
  uint64_t request_id = 0;
  uint64_t lease_id = 0;
  uint32_t payload_len = 0;
  uint64_t checksum = 0;

  bool is_reply() const noexcept { return (flags & kFlagReply) != 0; }
  bool operator==(const FrameHeader&) const = default;
};

// Decodes and validates the first kHeaderSize bytes of a frame, in this
// order: size (BAD_FRAME), magic (BAD_FRAME), version (UNSUPPORTED_VERSION),
// flags (BAD_FRAME), reserved (BAD_FRAME), opcode (UNKNOWN_OPCODE; an error
// reply may echo any opcode, since it answers whatever the client sent), status
// field (BAD_FRAME: nonzero in a request, unknown in a reply), token_len in a
// reply (BAD_FRAME), token_len and payload_len against the limits
// (FRAME_TOO_LARGE). Does not verify the checksum (the body is not read yet).
[[nodiscard]] Result<FrameHeader> decode_header(ByteSpan bytes, const Limits& limits);

// XXH3-64 of header (checksum field zeroed) || token || payload.
[[nodiscard]] uint64_t frame_checksum(ByteSpan header, ByteSpan token, ByteSpan payload) noexcept;

// Encodes `h` with token_len/payload_len taken from the spans and the
// checksum computed over all three parts. REQUIRES: sizes fit in u32.
[[nodiscard]] HeaderBytes encode_header(FrameHeader h, ByteSpan token, ByteSpan payload);

// The checksum of a token-less frame (a reply) whose payload is produced in
// pieces, so a sender can hash bytes while it copies them (a MEM_READ reply
// is hashed as it leaves device memory, not in a second pass). The header is
// fixed first, with payload_len set; update() takes the payload's bytes in
// order; digest() then equals frame_checksum() of the finished frame.
class PayloadChecksum {
 public:
  PayloadChecksum(FrameHeader h, uint32_t payload_len);
  ~PayloadChecksum();
  PayloadChecksum(const PayloadChecksum&) = delete;
  PayloadChecksum& operator=(const PayloadChecksum&) = delete;

  void update(ByteSpan piece) noexcept;
  // The header it was computed for (token_len 0, payload_len set, checksum 0).
  [[nodiscard]] const FrameHeader& header() const noexcept { return h_; }
  // REQUIRES: exactly payload_len bytes were passed to update().
  [[nodiscard]] uint64_t digest() const noexcept;
  [[nodiscard]] uint64_t bytes_hashed() const noexcept { return hashed_; }

 private:
  struct State;
  FrameHeader h_;
  uint64_t hashed_ = 0;
  std::unique_ptr<State> state_;
};

// Encodes `h` as is: its token_len, payload_len and checksum fields are
// written unchanged (a checksum from PayloadChecksum::digest()).
[[nodiscard]] HeaderBytes encode_header_as_is(const FrameHeader& h);

// Header + token + payload as one contiguous frame (tests, vectors, small frames).
[[nodiscard]] Bytes encode_frame(const FrameHeader& h, ByteSpan token, ByteSpan payload);

// A decoded frame whose token and payload point into the input bytes.
struct FrameView {
  FrameHeader header;
  ByteSpan token;
  ByteSpan payload;
};

// Decodes one complete frame: header checks as decode_header, then
// BAD_FRAME when the input is shorter or longer than the declared lengths,
// CHECKSUM_MISMATCH when the checksum does not match.
[[nodiscard]] Result<FrameView> decode_frame(ByteSpan bytes, const Limits& limits);

}  // namespace gpulease::wire
