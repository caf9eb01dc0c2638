// Little-endian byte helpers and cursor-style reader/writer.
//
// Every multi-byte integer on the wire is little-endian. Loads and stores are
// explicit (shifts), never casts of a buffer to a struct, so the code is
// independent of host byte order and alignment.
//
// ByteReader consumes from the front of a span. Every read either succeeds
// completely or fails and leaves the reader unchanged (no partial consumption),
// so a decoder can fail without side effects on short input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gpulease::wire {

using Bytes = std::vector<std::byte>;
using ByteSpan = std::span<const std::byte>;

inline void store_le16(std::byte* p, uint16_t v) noexcept {
  p[0] = std::byte(v & 0xff);
  p[1] = std::byte(v >> 8);
}
inline void store_le32(std::byte* p, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline void store_le64(std::byte* p, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline uint16_t load_le16(const std::byte* p) noexcept {
  return static_cast<uint16_t>(std::to_integer<uint16_t>(p[0]) |
                               (std::to_integer<uint16_t>(p[1]) << 8));
}
inline uint32_t load_le32(const std::byte* p) noexcept {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<uint32_t>(p[i]);
  return v;
}
inline uint64_t load_le64(const std::byte* p) noexcept {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

inline ByteSpan as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteSpan b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes to_bytes(std::string_view s) {
  auto b = as_bytes(s);
  return Bytes(b.begin(), b.end());
}

// Appends little-endian values to a byte vector.
class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(std::byte(v)); }
  void u16(uint16_t v) {
    grow(2, [&](std::byte* p) { store_le16(p, v); });
  }
  void u32(uint32_t v) {
    grow(4, [&](std::byte* p) { store_le32(p, v); });
  }
  void u64(uint64_t v) {
    grow(8, [&](std::byte* p) { store_le64(p, v); });
  }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void raw(ByteSpan b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // REQUIRES: s.size() <= 0xffff (callers check against Limits first).
  void str16(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    raw(as_bytes(s));
  }
  // REQUIRES: b.size() <= 0xffffffff.
  void bytes32(ByteSpan b) {
    u32(static_cast<uint32_t>(b.size()));
    raw(b);
  }
  size_t size() const { return out_.size(); }

 private:
  template <typename F>
  void grow(size_t n, F&& f) {
    size_t at = out_.size();
    out_.resize(at + n);
    f(out_.data() + at);
  }
  Bytes& out_;
};

// Consumes little-endian values from the front of a span. A failed read
// returns false and consumes nothing.
class ByteReader {
 public:
  explicit ByteReader(ByteSpan in) : in_(in) {}

  size_t remaining() const noexcept { return in_.size(); }
  bool empty() const noexcept { return in_.empty(); }
  ByteSpan rest() const noexcept { return in_; }

  bool u8(uint8_t& v) noexcept {
    if (in_.size() < 1) return false;
    v = std::to_integer<uint8_t>(in_[0]);
    in_ = in_.subspan(1);
    return true;
  }
  bool u16(uint16_t& v) noexcept {
    return fixed(2, [&](const std::byte* p) { v = load_le16(p); });
  }
  bool u32(uint32_t& v) noexcept {
    return fixed(4, [&](const std::byte* p) { v = load_le32(p); });
  }
  bool u64(uint64_t& v) noexcept {
    return fixed(8, [&](const std::byte* p) { v = load_le64(p); });
  }
  bool i32(int32_t& v) noexcept {
    uint32_t u;
    if (!u32(u)) return false;
    v = static_cast<int32_t>(u);
    return true;
  }
  // Takes exactly n bytes as a view into the input.
  bool take(size_t n, ByteSpan& out) noexcept {
    if (in_.size() < n) return false;
    out = in_.first(n);
    in_ = in_.subspan(n);
    return true;
  }
  // u16 length prefix, then that many bytes; fails (consuming nothing) when the
  // length exceeds max_len or the input.
  bool str16(std::string_view& out, size_t max_len) noexcept {
    if (in_.size() < 2) return false;
    uint16_t n = load_le16(in_.data());
    if (n > max_len || in_.size() - 2 < n) return false;
    out = as_chars(in_.subspan(2, n));
    in_ = in_.subspan(2 + size_t{n});
    return true;
  }
  // u32 length prefix, then that many bytes (as a view).
  bool bytes32(ByteSpan& out, size_t max_len) noexcept {
    if (in_.size() < 4) return false;
    uint32_t n = load_le32(in_.data());
    if (n > max_len || in_.size() - 4 < n) return false;
    out = in_.subspan(4, n);
    in_ = in_.subspan(4 + size_t{n});
    return true;
  }

 private:
  template <typename F>
  bool fixed(size_t n, F&& f) noexcept {
    if (in_.size() < n) return false;
    f(in_.data());
    in_ = in_.subspan(n);
    return true;
  }
  ByteSpan in_;
};

}  // namespace gpulease::wire
