#include "gpulease/capability/token.hpp"

#include <gtest/gtest.h>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

using testing::key_a;
using testing::reference_claims;

wire::Bytes reference_token() {
  const Authority a(key_a());
  return testing::mint(a, reference_claims());
}

TEST(TokenLayout, FieldsSitAtTheDocumentedOffsets) {
  const Authority a(key_a());
  Claims c = reference_claims();
  c.lease_id = 0x0102030405060708ull;
  c.perms = 0x1ff;
  c.not_before = 0x1112131415161718ull;
  c.expires_at = 0x2122232425262728ull;
  c.max_vram = 0x3132333435363738ull;
  c.origin_id = testing::token_id(0x22);
  const wire::Bytes t = testing::mint(a, c);
  const size_t T = 5, A = 6;
  ASSERT_EQ(t.size(), 144 + T + A);
  EXPECT_EQ(t[0], std::byte{1});
  EXPECT_EQ(t[1], std::byte{1});
  EXPECT_EQ(wire::load_le64(&t[2]), a.key_id());
  EXPECT_EQ(t[10], std::byte{T});
  EXPECT_EQ(wire::as_chars({&t[11], T}), "alice");
  EXPECT_EQ(t[11 + T], std::byte{A});
  EXPECT_EQ(wire::as_chars({&t[12 + T], A}), "node-a");
  EXPECT_EQ(wire::load_le64(&t[12 + T + A]), c.lease_id);
  EXPECT_EQ(t[12 + T + A], std::byte{0x08});  // little-endian
  EXPECT_EQ(wire::load_le32(&t[20 + T + A]), 0x1ffu);
  EXPECT_EQ(wire::load_le64(&t[24 + T + A]), c.not_before);
  EXPECT_EQ(wire::load_le64(&t[32 + T + A]), c.expires_at);
  EXPECT_EQ(t[40 + T + A], std::byte{0x11});
  EXPECT_EQ(t[56 + T + A], std::byte{0x22});
  EXPECT_EQ(wire::load_le64(&t[72 + T + A]), c.max_vram);
}

TEST(TokenLayout, SignatureCoversDomainAndBody) {
  const SecretKey k = key_a();
  const wire::Bytes t = reference_token();
  const wire::ByteSpan body(t.data(), t.size() - 64);
  const wire::ByteSpan sig(t.data() + t.size() - 64, 64);
  EXPECT_TRUE(verify_signature(k.public_key(), signing_message(body), sig));
  EXPECT_FALSE(verify_signature(k.public_key(), body, sig));
  const wire::Bytes msg = signing_message(body);
  EXPECT_EQ(wire::as_chars({msg.data(), 18}), std::string_view("gpulease-token-v1\0", 18));
}

TEST(ParseToken, DecodesEveryFieldOfAMintedToken) {
  const wire::Bytes t = reference_token();
  auto v = parse_token(t);
  ASSERT_TRUE(v) << v.error().message;
  Claims expect = reference_claims();
  expect.key_id = key_a().key_id();
  EXPECT_EQ(v->to_claims(), expect);
  EXPECT_EQ(v->body.size(), t.size() - 64);
  EXPECT_EQ(v->signature.data(), t.data() + t.size() - 64);
}

TEST(ParseToken, RejectsEveryTruncatedPrefix) {
  const wire::Bytes t = reference_token();
  for (size_t n = 0; n < t.size(); ++n) {
    auto v = parse_token({t.data(), n});
    ASSERT_FALSE(v) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(v.status(), Status::kUnauthenticated);
  }
}

TEST(ParseToken, RejectsTrailingBytes) {
  wire::Bytes t = reference_token();
  t.push_back(std::byte{0});
  EXPECT_EQ(parse_token(t).status(), Status::kUnauthenticated);
}

TEST(ParseToken, EveryBodyBitFlipEitherFailsToParseOrBreaksTheSignature) {
  const SecretKey k = key_a();
  const wire::Bytes good = reference_token();
  for (size_t i = 0; i < good.size() * 8; ++i) {
    wire::Bytes t = good;
    t[i / 8] ^= std::byte(1u << (i % 8));
    auto v = parse_token(t);
    if (!v) {
      EXPECT_EQ(v.status(), Status::kUnauthenticated);
      continue;
    }
    EXPECT_FALSE(verify_signature(k.public_key(), signing_message(v->body), v->signature))
        << "bit " << i << " flipped and the signature still verified";
  }
}

TEST(ParseToken, RejectsUnknownVersionAlgReservedBitsAndEmptyWindow) {
  const SecretKey k = key_a();
  auto resign = [&](wire::Bytes body) {
    const Signature s = k.sign(signing_message(body));
    for (uint8_t b : s) body.push_back(std::byte{b});
    return body;
  };
  Claims c = reference_claims();
  c.key_id = k.key_id();
  wire::Bytes body = encode_token_body(c);
  body[0] = std::byte{2};
  EXPECT_EQ(parse_token(resign(body)).status(), Status::kUnauthenticated);
  body = encode_token_body(c);
  body[1] = std::byte{0};
  EXPECT_EQ(parse_token(resign(body)).status(), Status::kUnauthenticated);
  c.perms = 1u << 9;
  EXPECT_EQ(parse_token(resign(encode_token_body(c))).status(), Status::kUnauthenticated);
  c = reference_claims();
  c.expires_at = c.not_before;
  EXPECT_EQ(parse_token(resign(encode_token_body(c))).status(), Status::kUnauthenticated);
}

TEST(ParseToken, ErrorsNameTheFieldButNotTheBytes) {
  auto v = parse_token(wire::Bytes(200, std::byte{0x41}));
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("malformed token"), std::string::npos);
  EXPECT_EQ(v.error().message.find("AAAA"), std::string::npos);
}

TEST(IsValidName, AcceptsPrintableUtf8UpTo64Bytes) {
  EXPECT_TRUE(is_valid_name("a"));
  EXPECT_TRUE(is_valid_name(std::string(64, 'x')));
  EXPECT_TRUE(is_valid_name("\xc3\xa9quipe-\xe7\xa7\x9f-\xf0\x9f\x9a\x80"));
}

TEST(IsValidName, RejectsEmptyLongControlsAndBadUtf8) {
  EXPECT_FALSE(is_valid_name(""));
  EXPECT_FALSE(is_valid_name(std::string(65, 'x')));
  EXPECT_FALSE(is_valid_name("a\nb"));
  EXPECT_FALSE(is_valid_name(std::string("a\0b", 3)));
  EXPECT_FALSE(is_valid_name("a\x7f"));
  EXPECT_FALSE(is_valid_name("\xc2\x85"));          // C1 control (NEL)
  EXPECT_FALSE(is_valid_name("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_name("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(is_valid_name("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_name("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_name("\xe7\xa7"));          // truncated
  EXPECT_FALSE(is_valid_name("\x80"));              // lone continuation
}

TEST(TokenText, RoundTripsWithPrefixAndIgnoresSurroundingWhitespace) {
  const wire::Bytes t = reference_token();
  const std::string text = encode_token_text(t);
  EXPECT_EQ(text.substr(0, 5), "glt1.");
  EXPECT_EQ(*decode_token_text(text), t);
  EXPECT_EQ(*decode_token_text("  " + text + "\n"), t);
}

TEST(TokenText, RejectsMissingPrefixBadBase64AndOverlongText) {
  const std::string text = encode_token_text(reference_token());
  EXPECT_EQ(decode_token_text(text.substr(5)).status(), Status::kUnauthenticated);
  EXPECT_EQ(decode_token_text("glt2." + text.substr(5)).status(), Status::kUnauthenticated);
  EXPECT_EQ(decode_token_text(text + "=").status(), Status::kUnauthenticated);
  EXPECT_EQ(decode_token_text("glt1." + std::string(400, 'A')).status(), Status::kUnauthenticated);
}

TEST(ValidateClaims, RejectsWhatParseWouldReject) {
  Claims c = reference_claims();
  EXPECT_TRUE(validate_claims(c));
  c.tenant = "";
  EXPECT_EQ(validate_claims(c).status(), Status::kInvalidArgument);
  c = reference_claims();
  c.audience = std::string(65, 'n');
  EXPECT_EQ(validate_claims(c).status(), Status::kInvalidArgument);
  c = reference_claims();
  c.perms = 0x200;
  EXPECT_EQ(validate_claims(c).status(), Status::kInvalidArgument);
  c = reference_claims();
  c.expires_at = c.not_before - 1;
  EXPECT_EQ(validate_claims(c).status(), Status::kInvalidArgument);
}

}  // namespace
}  // namespace gpulease::capability

namespace gpulease::capability {
namespace {

TEST(TokenNames, NamesWithLeadingOrTrailingSpacesAreRefusedSoRevocationCanNameEveryTenant) {
  EXPECT_TRUE(is_valid_name("acme corp"));
  EXPECT_FALSE(is_valid_name("acme "));
  EXPECT_FALSE(is_valid_name(" acme"));
}

}  // namespace
}  // namespace gpulease::capability
