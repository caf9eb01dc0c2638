#include "gpulease/wire/frame.hpp"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <algorithm>

#include <string>

namespace gpulease::wire {
namespace {

Error frame_error(Status s, std::string msg) {
  return make_error(s, std::move(msg));
}

}  // namespace

Result<FrameHeader> decode_header(ByteSpan b, const Limits& limits) {
  if (b.size() < kHeaderSize) {
    return frame_error(Status::kBadFrame, "truncated header: " + std::to_string(b.size()) + " of " +
                                              std::to_string(kHeaderSize) + " bytes");
  }
  if (load_le32(b.data() + kOffMagic) != kMagic) {
    return frame_error(Status::kBadFrame, "bad magic");
  }
  FrameHeader h;
  h.version = load_le16(b.data() + kOffVersion);
  if (h.version < kMinProtocolVersion || h.version > kMaxProtocolVersion) {
    return frame_error(Status::kUnsupportedVersion,
                       "protocol version " + std::to_string(h.version) + " not supported");
  }
  // Every check whose failure closes the connection (magic, version, the
  // declared lengths) comes before every check that keeps it, so a frame's
  // fate is decided by its first failing check and the node never has to
  // read a body it has refused (PROTOCOL.md, "Receiving a frame").
  h.token_len = load_le32(b.data() + kOffTokenLen);
  h.payload_len = load_le32(b.data() + kOffPayloadLen);
  if (h.token_len > limits.max_token_bytes) {
    return frame_error(Status::kFrameTooLarge, "token section of " + std::to_string(h.token_len) +
                                                   " bytes exceeds " +
                                                   std::to_string(limits.max_token_bytes));
  }
  if (h.payload_len > limits.max_payload_bytes) {
    return frame_error(Status::kFrameTooLarge, "payload of " + std::to_string(h.payload_len) +
                                                   " bytes exceeds " +
                                                   std::to_string(limits.max_payload_bytes));
  }
  h.flags = load_le16(b.data() + kOffFlags);
  if ((h.flags & ~kKnownFlags) != 0) {
    return frame_error(Status::kBadFrame, "unknown flag bits");
  }
  if (load_le32(b.data() + kOffReserved) != 0) {
    return frame_error(Status::kBadFrame, "reserved header field is not zero");
  }
  uint16_t op = load_le16(b.data() + kOffOpcode);
  uint16_t status = load_le16(b.data() + kOffStatus);
  // An error reply echoes the opcode of the request it answers, even one the
  // node did not know (UNKNOWN_OPCODE) or could not read (BAD_FRAME).
  bool echoed_error = h.is_reply() && status != 0 && is_known_status(status);
  if (!is_known_opcode(op) && !echoed_error) {
    return frame_error(Status::kUnknownOpcode, "unknown opcode " + std::to_string(op));
  }
  h.opcode = static_cast<Opcode>(op);
  if (h.is_reply()) {
    if (!is_known_status(status)) return frame_error(Status::kBadFrame, "unknown status in reply");
    if (h.token_len != 0) return frame_error(Status::kBadFrame, "reply carries a token section");
  } else if (status != 0) {
    return frame_error(Status::kBadFrame, "request carries a status");
  }
  h.status = static_cast<Status>(status);
  h.request_id = load_le64(b.data() + kOffRequestId);
  h.lease_id = load_le64(b.data() + kOffLeaseId);
  h.checksum = load_le64(b.data() + kOffChecksum);
  return h;
}

uint64_t frame_checksum(ByteSpan header, ByteSpan token, ByteSpan payload) noexcept {
  // The checksum field itself is hashed as zeros.
  HeaderBytes zeroed{};
  std::copy_n(header.begin(), std::min(header.size(), kHeaderSize), zeroed.begin());
  std::fill_n(zeroed.begin() + kOffChecksum, 8, std::byte{0});
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, zeroed.data(), zeroed.size());
  if (!token.empty()) XXH3_64bits_update(&state, token.data(), token.size());
  if (!payload.empty()) XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

HeaderBytes encode_header_as_is(const FrameHeader& h) {
  HeaderBytes out{};
  std::byte* p = out.data();
  store_le32(p + kOffMagic, kMagic);
  store_le16(p + kOffVersion, h.version);
  store_le16(p + kOffOpcode, static_cast<uint16_t>(h.opcode));
  store_le16(p + kOffFlags, h.flags);
  store_le16(p + kOffStatus, static_cast<uint16_t>(h.status));
  store_le32(p + kOffTokenLen, h.token_len);
  store_le64(p + kOffRequestId, h.request_id);
  store_le64(p + kOffLeaseId, h.lease_id);
  store_le32(p + kOffPayloadLen, h.payload_len);
  store_le32(p + kOffReserved, 0);
  store_le64(p + kOffChecksum, h.checksum);
  return out;
}

HeaderBytes encode_header(FrameHeader h, ByteSpan token, ByteSpan payload) {
  h.token_len = static_cast<uint32_t>(token.size());
  h.payload_len = static_cast<uint32_t>(payload.size());
  h.checksum = 0;
  HeaderBytes out = encode_header_as_is(h);
  store_le64(out.data() + kOffChecksum, frame_checksum(out, token, payload));
  return out;
}

struct PayloadChecksum::State {
  XXH3_state_t xxh;
};

PayloadChecksum::PayloadChecksum(FrameHeader h, uint32_t payload_len)
    : h_(h), state_(std::make_unique<State>()) {
  h_.token_len = 0;
  h_.payload_len = payload_len;
  h_.checksum = 0;
  const HeaderBytes hb = encode_header_as_is(h_);
  XXH3_64bits_reset(&state_->xxh);
  XXH3_64bits_update(&state_->xxh, hb.data(), hb.size());
}

PayloadChecksum::~PayloadChecksum() = default;

void PayloadChecksum::update(ByteSpan piece) noexcept {
  if (piece.empty()) return;
  XXH3_64bits_update(&state_->xxh, piece.data(), piece.size());
  hashed_ += piece.size();
}

uint64_t PayloadChecksum::digest() const noexcept {
  return XXH3_64bits_digest(&state_->xxh);
}

Bytes encode_frame(const FrameHeader& h, ByteSpan token, ByteSpan payload) {
  HeaderBytes hb = encode_header(h, token, payload);
  // Sized once and copied into (reserve + insert trips a false
  // -Wstringop-overflow in g++ 12 at -O2).
  Bytes out(kHeaderSize + token.size() + payload.size());
  auto at = std::copy(hb.begin(), hb.end(), out.begin());
  at = std::copy(token.begin(), token.end(), at);
  std::copy(payload.begin(), payload.end(), at);
  return out;
}

Result<FrameView> decode_frame(ByteSpan bytes, const Limits& limits) {
  auto h = decode_header(bytes, limits);
  if (!h) return std::move(h).error();
  size_t want = kHeaderSize + size_t{h->token_len} + size_t{h->payload_len};
  if (bytes.size() < want) {
    return frame_error(Status::kBadFrame, "truncated frame: " + std::to_string(bytes.size()) +
                                              " of " + std::to_string(want) + " bytes");
  }
  if (bytes.size() > want) {
    return frame_error(Status::kBadFrame, "trailing bytes after frame");
  }
  FrameView v{*h, bytes.subspan(kHeaderSize, h->token_len),
              bytes.subspan(kHeaderSize + h->token_len, h->payload_len)};
  if (frame_checksum(bytes.first(kHeaderSize), v.token, v.payload) != h->checksum) {
    return frame_error(Status::kChecksumMismatch, "frame checksum mismatch");
  }
  return v;
}

}  // namespace gpulease::wire
