#include "gpulease/capability/encoding.hpp"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace gpulease::capability {
namespace {

int sodium_variant(Base64Variant v) {
  return v == Base64Variant::kStandard ? sodium_base64_VARIANT_ORIGINAL
                                       : sodium_base64_VARIANT_URLSAFE_NO_PADDING;
}

const unsigned char* uc(wire::ByteSpan b) {
  return reinterpret_cast<const unsigned char*>(b.data());
}

}  // namespace

bool ensure_sodium() noexcept {
  // sodium_init is thread-safe and idempotent (returns 1 when already done);
  // the static only saves the call on hot paths.
  static const bool ok = sodium_init() >= 0;
  return ok;
}

void require_sodium() noexcept {
  if (ensure_sodium()) return;
  std::fputs(
      "gpulease: fatal: libsodium failed to initialise (sodium_init() < 0: no usable random "
      "source); stopping rather than making or checking keys and tokens without it\n",
      stderr);
  std::abort();
}

std::string to_hex(wire::ByteSpan bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), uc(bytes), bytes.size());
  out.pop_back();  // the terminating NUL written by libsodium
  return out;
}

std::optional<wire::Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  if (hex.empty()) return wire::Bytes{};  // libsodium must not see a null buffer
  wire::Bytes out(hex.size() / 2);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(),
                     hex.size(), nullptr, &len, &end) != 0 ||
      len != out.size() || end != hex.data() + hex.size()) {
    return std::nullopt;
  }
  return out;
}

std::string to_base64(wire::ByteSpan bytes, Base64Variant variant) {
  const int v = sodium_variant(variant);
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), v), '\0');
  sodium_bin2base64(out.data(), out.size(), uc(bytes), bytes.size(), v);
  out.resize(out.size() - 1);  // drop the NUL counted by ENCODED_LEN
  return out;
}

std::optional<wire::Bytes> from_base64(std::string_view text, Base64Variant variant) {
  // Upper bound on the decoded size; libsodium reports the exact length.
  wire::Bytes out(text.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, sodium_variant(variant)) != 0 ||
      end != text.data() + text.size()) {
    // The buffer may hold part of a secret seed decoded before the error.
    sodium_memzero(out.data(), out.size());
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

}  // namespace gpulease::capability
