// Text encodings used by tokens, key files and revocation files: lower-case
// hex and base64 (standard with padding for key files, URL-safe without
// padding for tokens). Thin wrappers over libsodium's constant-time codecs so
// secret material never passes through table-driven code.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "gpulease/wire/bytes.hpp"

namespace gpulease::capability {

enum class Base64Variant {
  kStandard,         // RFC 4648 section 4, with '=' padding (key files).
  kUrlSafeNoPadding  // RFC 4648 section 5, no padding (token text).
};

[[nodiscard]] std::string to_hex(wire::ByteSpan bytes);
// Accepts exactly 2*N hex digits (either case). nullopt on any other input.
[[nodiscard]] std::optional<wire::Bytes> from_hex(std::string_view hex);

[[nodiscard]] std::string to_base64(wire::ByteSpan bytes, Base64Variant variant);
// Strict: rejects characters outside the variant's alphabet, whitespace, and
// wrong padding. nullopt on failure.
[[nodiscard]] std::optional<wire::Bytes> from_base64(std::string_view text, Base64Variant variant);

// Calls sodium_init() once per process. Returns false only if libsodium
// cannot initialise (no usable RNG); libsodium must then not be used.
[[nodiscard]] bool ensure_sodium() noexcept;

// ensure_sodium(), or stops the program: prints "gpulease: fatal: libsodium
// failed to initialise ..." to stderr and aborts, since no key, token id or
// signature can be made or checked safely without it. Every capability entry
// point that touches libsodium calls it, so callers never need to.
void require_sodium() noexcept;

}  // namespace gpulease::capability
