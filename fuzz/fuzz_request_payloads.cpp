// Request payload decoders: the first 2 bytes (u16 LE) pick the opcode, the
// rest is the payload. A decoded message re-encodes to exactly the payload
// (the encoding is canonical).
#include <cstdlib>

#include "gpulease/wire/messages.hpp"

using namespace gpulease::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const ByteSpan in(reinterpret_cast<const std::byte*>(data), size);
  const auto op = static_cast<Opcode>(load_le16(in.data()));
  const ByteSpan payload = in.subspan(2);
  auto m = decode_request(op, payload, Limits{});
  if (m && encode_request(*m) != Bytes(payload.begin(), payload.end())) std::abort();
  return 0;
}
