// Frame decoder: any bytes either decode or fail with a status; an accepted
// header never declares lengths above the limits, and an accepted frame's
// token and payload are exactly the declared lengths.
#include <cstdlib>

#include "gpulease/wire/frame.hpp"

using namespace gpulease::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan in(reinterpret_cast<const std::byte*>(data), size);
  const Limits limits;
  auto h = decode_header(in, limits);
  if (!h) return 0;
  if (h->token_len > limits.max_token_bytes || h->payload_len > limits.max_payload_bytes)
    std::abort();
  auto f = decode_frame(in, limits);
  if (f && (f->token.size() != h->token_len || f->payload.size() != h->payload_len ||
            kHeaderSize + f->token.size() + f->payload.size() != size)) {
    std::abort();
  }
  return 0;
}
