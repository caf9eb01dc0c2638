// The tree's one UTF-8 validator and error-message sanitiser.
#include "gpulease/wire/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

#include "gpulease/wire/limits.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::wire {
namespace {

using namespace std::string_literals;

TEST(Utf8, AcceptsWellFormedTextOfEveryLength) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("\xc3\xa9"));          // é
  EXPECT_TRUE(valid_utf8("\xe2\x82\xac"));      // €
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));  // U+1F600
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
}

TEST(Utf8, RejectsNulOverlongsSurrogatesAndStrayBytes) {
  EXPECT_FALSE(valid_utf8("a\0b"s));
  EXPECT_FALSE(valid_utf8("\xc0\x80"));          // overlong NUL
  EXPECT_FALSE(valid_utf8("\xe0\x80\xaf"));      // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\x80"));              // stray continuation
  EXPECT_FALSE(valid_utf8("\xff\xfe"));
  EXPECT_FALSE(valid_utf8("\xe2\x82"));  // cut short
}

TEST(Utf8, SequenceReportsLengthAndCodePoint) {
  uint32_t cp = 0;
  EXPECT_EQ(utf8_sequence("\xe2\x82\xac", 0, &cp), 3u);
  EXPECT_EQ(cp, 0x20acu);
  EXPECT_EQ(utf8_sequence("\xe2\x82", 0, &cp), 0u);
  EXPECT_EQ(utf8_sequence("a", 0, &cp), 1u);
  EXPECT_EQ(cp, uint32_t{'a'});
}

TEST(SanitizeMessage, LeavesValidTextThatFitsUnchanged) {
  EXPECT_EQ(sanitize_message("lease 42 expired", 1024), "lease 42 expired");
  EXPECT_EQ(sanitize_message("\xc3\xa9t\xc3\xa9", 1024), "\xc3\xa9t\xc3\xa9");
}

TEST(SanitizeMessage, EscapesBytesThatAreNotUtf8AndNul) {
  EXPECT_EQ(sanitize_message("bad \xff\xfe here", 1024), "bad \\xff\\xfe here");
  EXPECT_EQ(sanitize_message("a\0b"s, 1024), "a\\x00b");
  EXPECT_EQ(sanitize_message("\xe2\x82 cut", 1024), "\\xe2\\x82 cut");
}

TEST(SanitizeMessage, CutsOnACodePointBoundaryNeverInsideOne) {
  // 1023 ASCII bytes then a 3-byte character: the character does not fit.
  const std::string s = std::string(1023, 'x') + "\xe2\x82\xac";
  const std::string out = sanitize_message(s, 1024);
  EXPECT_EQ(out, std::string(1023, 'x'));
  EXPECT_TRUE(valid_utf8(out));
  // An escape is never cut either.
  const std::string t = std::string(1022, 'x') + "\xff";
  EXPECT_EQ(sanitize_message(t, 1024), std::string(1022, 'x'));
}

TEST(SanitizeMessage, AnyInputBecomesAMessageTheDecoderAccepts) {
  // The node's LOAD_FAILED used to quote PTX bytes verbatim and cut them at
  // 1024 bytes mid-character; the project's own decoder then refused it.
  std::string hostile;
  for (int i = 0; i < 3000; ++i) hostile += static_cast<char>((i * 131) & 0xff);
  const Limits limits;
  const std::string out = sanitize_message(hostile, limits.max_message_bytes);
  EXPECT_LE(out.size(), limits.max_message_bytes);
  auto decoded = decode_payload<ErrorReply>(to_bytes(out), limits);
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(decoded->message, out);
}

}  // namespace
}  // namespace gpulease::wire
