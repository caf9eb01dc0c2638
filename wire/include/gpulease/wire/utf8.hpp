// UTF-8: the one validator and the one error-message sanitiser of the tree.
//
// The wire's strings (str16 fields, error messages) are UTF-8 as RFC 3629
// defines it: no overlong forms, no surrogates, nothing above U+10FFFF, and
// (a protocol rule on top) no NUL. Everything that checks or builds such a
// string goes through this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gpulease::wire {

// The length (1..4) of the well-formed UTF-8 sequence that starts at s[i],
// storing its code point in *cp; 0 when s[i] does not start one (a stray
// continuation byte, an overlong form, a surrogate, a value above U+10FFFF,
// or a sequence cut short by the end of `s`). NUL is a valid sequence here.
// REQUIRES: i < s.size().
[[nodiscard]] size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) noexcept;

// True when `s` is well-formed UTF-8 without NUL: what every str16 field and
// every error message must be.
[[nodiscard]] bool valid_utf8(std::string_view s) noexcept;

// Makes any bytes into an error message that obeys the wire's rules: each
// byte that does not belong to a well-formed sequence, and each NUL, becomes
// the four characters `\xNN` (lower-case hex), and the result is cut on a
// code point boundary (never inside a sequence or an escape) so that it is at
// most `max_bytes` bytes. Well-formed text comes back unchanged when it fits.
// Callers pass Limits::max_message_bytes (the one constant for that limit).
[[nodiscard]] std::string sanitize_message(std::string_view s, size_t max_bytes);

}  // namespace gpulease::wire
