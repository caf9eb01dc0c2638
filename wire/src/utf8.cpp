#include "gpulease/wire/utf8.hpp"

namespace gpulease::wire {

size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, v = c & 0x1fu;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, v = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, v = c & 0x07u;
  } else {
    return 0;  // continuation byte, overlong lead (c0, c1), or above f4
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    v = (v << 6) | (cc & 0x3fu);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff))) return 0;
  if (v >= 0xd800 && v <= 0xdfff) return 0;
  *cp = v;
  return len;
}

bool valid_utf8(std::string_view s) noexcept {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(s, i, &cp);
    if (n == 0 || cp == 0) return false;
    i += n;
  }
  return true;
}

std::string sanitize_message(std::string_view s, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() < max_bytes ? s.size() : max_bytes);
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(s, i, &cp);
    if (n != 0 && cp != 0) {
      if (out.size() + n > max_bytes) break;
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    if (out.size() + 4 > max_bytes) break;
    const auto b = static_cast<unsigned char>(s[i]);
    out += '\\';
    out += 'x';
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
    ++i;
  }
  return out;
}

}  // namespace gpulease::wire
