// Whole frames: decode -> encode gives the same bytes, and decoding those
// gives the same message; the golden-vector JSON mapping of the message maps
// back to the same bytes too.
#include <cstdlib>

#include "wire_json.hpp"

using namespace gpulease;
using namespace gpulease::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan in(reinterpret_cast<const std::byte*>(data), size);
  const Limits limits;
  auto f = vectors::decode_full_frame(in, limits);
  if (!f) return 0;
  const Bytes out = vectors::encode_full_frame(*f);
  if (out != Bytes(in.begin(), in.end())) std::abort();
  auto again = vectors::decode_full_frame(out, limits);
  if (!again || !(*again == *f)) std::abort();
  const auto back =
      vectors::frame_from_json(f->header.opcode, f->header.is_reply(), vectors::frame_to_json(*f));
  if (vectors::encode_full_frame(back) != out) std::abort();
  return 0;
}
