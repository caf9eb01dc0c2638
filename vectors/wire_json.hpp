// The one mapping between wire messages and the JSON "fields" of the golden
// vectors (vectors/wire/*.json). The generator (gen_wire), the vector tests
// and the fuzz round-trip target all use it, so the vectors and the code
// cannot drift apart.
//
// JSON conventions (also in docs/PROTOCOL.md, "Golden vectors"):
//  - integers are JSON numbers (u64 values may exceed 2^53: parse them as
//    64-bit integers);
//  - byte strings (token, data, image, uuid, idempotency key, scalars) are
//    lowercase hex strings;
//  - text fields are JSON strings;
//  - enums are upper-case names ("SHARED", "PTX", "INOUT", ...);
//  - dim3 values are arrays [x, y, z].
//
// fields = {"version", "request_id", "lease_id", "token" (requests) or
//           "status" (replies), "payload": {...message fields...}}
// An error reply's payload is {"message": "..."}.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "gpulease/wire/frame.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::vectors {

using Json = nlohmann::ordered_json;

// Lowercase hex, two digits per byte.
[[nodiscard]] std::string to_hex(wire::ByteSpan b);
// Inverse of to_hex (either case); nullopt on odd length or a non-hex digit.
[[nodiscard]] std::optional<wire::Bytes> from_hex(std::string_view hex);

// "MEM_ALLOC", or "0xNNNN" for a number that names no opcode.
[[nodiscard]] std::string opcode_label(uint16_t op);
// Inverse of opcode_label.
[[nodiscard]] std::optional<uint16_t> opcode_from_label(std::string_view label);

// A frame decoded down to its message: a request, an OK reply, or an error
// reply (any reply whose status is not OK).
using FrameMessage = std::variant<wire::RequestMessage, wire::ReplyMessage, wire::ErrorReply>;

struct DecodedFrame {
  wire::FrameHeader header;
  wire::Bytes token;
  FrameMessage message;
  bool operator==(const DecodedFrame&) const = default;
};

// decode_frame, then the payload decoder its opcode, direction and status
// select. Any failure is the status the node would answer with.
[[nodiscard]] Result<DecodedFrame> decode_full_frame(wire::ByteSpan frame,
                                                     const wire::Limits& limits);

// The exact bytes of a frame (header fields from `f.header`, lengths and
// checksum computed).
[[nodiscard]] wire::Bytes encode_full_frame(const DecodedFrame& f);

// Fields of a decoded frame, as stored in a vector.
[[nodiscard]] Json frame_to_json(const DecodedFrame& f);

// Inverse of frame_to_json. `reply` selects the direction. Throws
// nlohmann::json::exception or std::invalid_argument on malformed fields
// (vectors are trusted input; this is never used on peer input).
[[nodiscard]] DecodedFrame frame_from_json(wire::Opcode op, bool reply, const Json& fields);

// Message-level mapping (used by frame_to_json / frame_from_json).
[[nodiscard]] Json request_to_json(const wire::RequestMessage& m);
[[nodiscard]] Json reply_to_json(const wire::ReplyMessage& m);
[[nodiscard]] wire::RequestMessage request_from_json(wire::Opcode op, const Json& j);
[[nodiscard]] wire::ReplyMessage reply_from_json(wire::Opcode op, const Json& j);

}  // namespace gpulease::vectors
