// Reply payload decoders (OK replies by opcode, and the error reply): the
// first 2 bytes (u16 LE) pick the opcode, the rest is the payload. A decoded
// message re-encodes to exactly the payload.
#include <cstdlib>

#include "gpulease/wire/messages.hpp"

using namespace gpulease::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const ByteSpan in(reinterpret_cast<const std::byte*>(data), size);
  const auto op = static_cast<Opcode>(load_le16(in.data()));
  const ByteSpan payload = in.subspan(2);
  const Bytes want(payload.begin(), payload.end());
  auto m = decode_reply(op, payload, Limits{});
  if (m && encode_reply(*m) != want) std::abort();
  auto e = decode_payload<ErrorReply>(payload, Limits{});
  if (e && encode_payload(*e) != want) std::abort();
  return 0;
}
