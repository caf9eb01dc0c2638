#include "gpulease/capability/encoding.hpp"

#include <gtest/gtest.h>

namespace gpulease::capability {
namespace {

TEST(Hex, RoundTripsAndIsLowerCase) {
  const wire::Bytes b{std::byte{0x00}, std::byte{0xab}, std::byte{0xff}};
  EXPECT_EQ(to_hex(b), "00abff");
  EXPECT_EQ(from_hex("00ABff"), b);
}

TEST(Hex, RejectsOddLengthAndNonHex) {
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_FALSE(from_hex("ab cd"));
  EXPECT_TRUE(from_hex("")->empty());
}

TEST(Base64, UrlSafeNoPaddingRoundTrips) {
  for (size_t n = 0; n < 40; ++n) {
    wire::Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = std::byte(0xf0 + i * 7);
    const std::string t = to_base64(b, Base64Variant::kUrlSafeNoPadding);
    EXPECT_EQ(t.find('='), std::string::npos);
    EXPECT_EQ(t.find('+'), std::string::npos);
    EXPECT_EQ(t.find('/'), std::string::npos);
    EXPECT_EQ(from_base64(t, Base64Variant::kUrlSafeNoPadding), b) << n;
  }
}

TEST(Base64, StrictDecodingRejectsNonCanonicalAndForeignAlphabet) {
  EXPECT_FALSE(from_base64("AB", Base64Variant::kUrlSafeNoPadding));  // leftover bits set
  EXPECT_TRUE(from_base64("AA", Base64Variant::kUrlSafeNoPadding));
  EXPECT_FALSE(from_base64("+/8", Base64Variant::kUrlSafeNoPadding));
  EXPECT_FALSE(from_base64("AA==", Base64Variant::kUrlSafeNoPadding));
  EXPECT_FALSE(from_base64("AA", Base64Variant::kStandard));  // padding required
  EXPECT_TRUE(from_base64("AA==", Base64Variant::kStandard));
}

}  // namespace
}  // namespace gpulease::capability
