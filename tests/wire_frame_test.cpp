// Frame header codec: layout, checksum, every header rejection, every
// truncated prefix and every flipped bit.
#include "gpulease/wire/frame.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>

#include "wire_json.hpp"

namespace gpulease::wire {
namespace {

const Limits kLimits{};

FrameHeader request_header(Opcode op = Opcode::kMemAlloc) {
  FrameHeader h;
  h.opcode = op;
  h.request_id = 0x0102030405060708;
  h.lease_id = 0x1112131415161718;
  return h;
}

Bytes sample_frame() {
  return encode_frame(request_header(), to_bytes("token-bytes"), to_bytes("payload!"));
}

void reseal(Bytes& f) {
  ByteSpan all(f);
  store_le64(f.data() + kOffChecksum,
             frame_checksum(all.first(kHeaderSize), {}, all.subspan(kHeaderSize)));
}

TEST(WireFrame, EncodedHeaderPlacesEveryFieldAtItsDocumentedOffset) {
  Bytes f = sample_frame();
  ASSERT_EQ(f.size(), kHeaderSize + 11 + 8);
  EXPECT_EQ(vectors::to_hex(ByteSpan(f).first(4)), "47504c53");  // "GPLS"
  EXPECT_EQ(load_le16(f.data() + 4), 1);
  EXPECT_EQ(load_le16(f.data() + 6), 0x0601);
  EXPECT_EQ(load_le16(f.data() + 8), 0);
  EXPECT_EQ(load_le16(f.data() + 10), 0);
  EXPECT_EQ(load_le32(f.data() + 12), 11u);
  EXPECT_EQ(vectors::to_hex(ByteSpan(f).subspan(16, 8)), "0807060504030201");
  EXPECT_EQ(load_le64(f.data() + 24), 0x1112131415161718u);
  EXPECT_EQ(load_le32(f.data() + 32), 8u);
  EXPECT_EQ(load_le32(f.data() + 36), 0u);
  EXPECT_EQ(kHeaderSize, 48u);
  EXPECT_EQ(kOffChecksum + 8, kHeaderSize);
}

TEST(WireFrame, ChecksumIsXxh3OfHeaderWithZeroedChecksumThenTokenThenPayload) {
  Bytes f = sample_frame();
  Bytes zeroed = f;
  std::fill_n(zeroed.begin() + kOffChecksum, 8, std::byte{0});
  EXPECT_EQ(load_le64(f.data() + kOffChecksum), XXH3_64bits(zeroed.data(), zeroed.size()));
  EXPECT_EQ(load_le64(f.data() + kOffChecksum),
            XXH3_64bits_withSeed(zeroed.data(), zeroed.size(), 0));
}

TEST(WireFrame, ChecksumIgnoresWhateverTheChecksumFieldHolds) {
  Bytes f = sample_frame();
  ByteSpan s(f);
  uint64_t c = frame_checksum(s.first(kHeaderSize), s.subspan(48, 11), s.subspan(59));
  std::fill_n(f.begin() + kOffChecksum, 8, std::byte{0xee});
  EXPECT_EQ(frame_checksum(ByteSpan(f).first(kHeaderSize), s.subspan(48, 11), s.subspan(59)), c);
}

TEST(WireFrame, ChecksumOfSplitTokenAndPayloadEqualsChecksumOfTheirConcatenation) {
  Bytes f = sample_frame();
  ByteSpan s(f);
  EXPECT_EQ(frame_checksum(s.first(48), s.subspan(48, 11), s.subspan(59)),
            frame_checksum(s.first(48), {}, s.subspan(48)));
}

// A reply hashed in pieces as it is produced (MEM_READ) gets the checksum of
// the whole frame, whatever the split, and its header encodes as is.
TEST(WireFrame, PayloadChecksumInPiecesEqualsTheChecksumOfTheFinishedReply) {
  FrameHeader h = request_header(Opcode::kMemRead);
  h.flags = kFlagReply;
  Bytes payload(100000);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 131 + 7);
  const HeaderBytes whole = encode_header(h, {}, payload);
  for (size_t piece : {size_t{1}, size_t{47}, size_t{64}, size_t{4096}, payload.size()}) {
    PayloadChecksum sum(h, static_cast<uint32_t>(payload.size()));
    for (size_t off = 0; off < payload.size(); off += piece)
      sum.update(ByteSpan(payload).subspan(off, std::min(piece, payload.size() - off)));
    EXPECT_EQ(sum.bytes_hashed(), payload.size());
    EXPECT_EQ(sum.digest(), load_le64(whole.data() + kOffChecksum)) << "pieces of " << piece;
    FrameHeader done = sum.header();
    done.checksum = sum.digest();
    const HeaderBytes as_is = encode_header_as_is(done);
    EXPECT_EQ(as_is, whole) << "pieces of " << piece;
    Bytes frame(as_is.begin(), as_is.end());
    frame.insert(frame.end(), payload.begin(), payload.end());
    EXPECT_TRUE(decode_frame(frame, kLimits).ok());
  }
  // A different payload, or one byte short, does not match.
  PayloadChecksum other(h, static_cast<uint32_t>(payload.size()));
  other.update(ByteSpan(payload).first(payload.size() - 1));
  other.update(to_bytes("x"));
  EXPECT_NE(other.digest(), load_le64(whole.data() + kOffChecksum));
}

TEST(WireFrame, HeaderRoundTripsEveryFieldIncludingExtremes) {
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
    FrameHeader h = request_header(Opcode::kGpuSubmit);
    h.request_id = id;
    h.lease_id = ~id;
    Bytes f = encode_frame(h, to_bytes("t"), to_bytes("p"));
    auto d = decode_frame(f, kLimits);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->header.request_id, id);
    EXPECT_EQ(d->header.lease_id, ~id);
    EXPECT_EQ(d->header.opcode, Opcode::kGpuSubmit);
    EXPECT_EQ(d->header.token_len, 1u);
    EXPECT_EQ(d->header.payload_len, 1u);
    EXPECT_EQ(vectors::to_hex(d->token), "74");
    EXPECT_EQ(vectors::to_hex(d->payload), "70");
  }
}

TEST(WireFrame, ReplyCarriesEveryKnownStatus) {
  for (uint16_t s = 0; s <= kMaxStatusValue; ++s) {
    FrameHeader h = request_header();
    h.flags = kFlagReply;
    h.status = static_cast<Status>(s);
    Bytes f = encode_frame(h, {}, {});
    auto d = decode_frame(f, kLimits);
    ASSERT_TRUE(d) << s;
    EXPECT_TRUE(d->header.is_reply());
    EXPECT_EQ(d->header.status, static_cast<Status>(s));
  }
}

TEST(WireFrame, EveryOpcodeIsAcceptedInTheHeader) {
  for (Opcode op : kAllOpcodes) {
    Bytes f = encode_frame(request_header(op), {}, {});
    EXPECT_TRUE(decode_header(f, kLimits)) << opcode_name(op);
  }
}

TEST(WireFrame, HeaderDecodesFromExactlyFortyEightBytes) {
  Bytes f = sample_frame();
  auto h = decode_header(ByteSpan(f).first(kHeaderSize), kLimits);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->token_len, 11u);
  EXPECT_EQ(h->payload_len, 8u);
}

TEST(WireFrame, EveryTruncatedPrefixFailsWithBadFrame) {
  Bytes f = sample_frame();
  for (size_t n = 0; n < f.size(); ++n) {
    auto d = decode_frame(ByteSpan(f).first(n), kLimits);
    ASSERT_FALSE(d) << n;
    EXPECT_EQ(d.status(), Status::kBadFrame) << n;
    if (n < kHeaderSize) {
      EXPECT_EQ(decode_header(ByteSpan(f).first(n), kLimits).status(), Status::kBadFrame);
    }
  }
}

TEST(WireFrame, EveryFlippedBitIsRejected) {
  Bytes f = sample_frame();
  for (size_t i = 0; i < f.size() * 8; ++i) {
    Bytes g = f;
    g[i / 8] ^= std::byte(1u << (i % 8));
    EXPECT_FALSE(decode_frame(g, kLimits)) << "bit " << i;
  }
}

TEST(WireFrame, FlippedBitsInTokenOrPayloadAreChecksumMismatches) {
  Bytes f = sample_frame();
  for (size_t i = kHeaderSize * 8; i < f.size() * 8; ++i) {
    Bytes g = f;
    g[i / 8] ^= std::byte(1u << (i % 8));
    EXPECT_EQ(decode_frame(g, kLimits).status(), Status::kChecksumMismatch) << "bit " << i;
  }
}

TEST(WireFrame, BadMagicIsBadFrame) {
  Bytes f = sample_frame();
  f[0] = std::byte{'X'};
  reseal(f);
  EXPECT_EQ(decode_header(f, kLimits).status(), Status::kBadFrame);
}

TEST(WireFrame, VersionsOtherThanOneAreUnsupported) {
  for (uint16_t v : {0, 2, 3, 0x100, 0xffff}) {
    Bytes f = sample_frame();
    store_le16(f.data() + kOffVersion, v);
    reseal(f);
    EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kUnsupportedVersion) << v;
  }
}

TEST(WireFrame, EveryUndefinedFlagBitIsBadFrame) {
  for (int bit = 1; bit < 16; ++bit) {
    Bytes f = sample_frame();
    store_le16(f.data() + kOffFlags, static_cast<uint16_t>(1u << bit));
    reseal(f);
    EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kBadFrame) << bit;
  }
}

TEST(WireFrame, EveryReservedBitIsBadFrame) {
  for (int bit = 0; bit < 32; ++bit) {
    Bytes f = sample_frame();
    store_le32(f.data() + kOffReserved, 1u << bit);
    reseal(f);
    EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kBadFrame) << bit;
  }
}

TEST(WireFrame, UnknownOpcodesAreUnknownOpcode) {
  for (uint32_t op = 0; op <= 0xffff; ++op) {
    if (is_known_opcode(static_cast<uint16_t>(op))) continue;
    Bytes f = sample_frame();
    store_le16(f.data() + kOffOpcode, static_cast<uint16_t>(op));
    ASSERT_EQ(decode_header(f, kLimits).status(), Status::kUnknownOpcode) << op;
  }
}

TEST(WireFrame, RequestWithStatusIsBadFrame) {
  Bytes f = sample_frame();
  store_le16(f.data() + kOffStatus, 1);
  reseal(f);
  EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kBadFrame);
}

TEST(WireFrame, ReplyWithTokenSectionIsBadFrame) {
  FrameHeader h = request_header();
  h.flags = kFlagReply;
  EXPECT_EQ(decode_frame(encode_frame(h, to_bytes("t"), {}), kLimits).status(), Status::kBadFrame);
}

TEST(WireFrame, ReplyWithUndefinedStatusIsBadFrame) {
  FrameHeader h = request_header();
  h.flags = kFlagReply;
  Bytes f = encode_frame(h, {}, {});
  for (uint32_t s = kMaxStatusValue + 1; s <= 0xffff; s += 997) {
    store_le16(f.data() + kOffStatus, static_cast<uint16_t>(s));
    EXPECT_EQ(decode_header(f, kLimits).status(), Status::kBadFrame) << s;
  }
}

TEST(WireFrame, ErrorRepliesMayEchoAnUndefinedOpcode) {
  FrameHeader h = request_header();
  h.flags = kFlagReply;
  h.status = Status::kUnknownOpcode;
  h.opcode = static_cast<Opcode>(0x7777);
  auto d = decode_frame(encode_frame(h, {}, to_bytes("unknown opcode")), kLimits);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(static_cast<uint16_t>(d->header.opcode), 0x7777);
  h.opcode = static_cast<Opcode>(0);
  h.status = Status::kBadFrame;
  EXPECT_TRUE(decode_frame(encode_frame(h, {}, {}), kLimits));
}

TEST(WireFrame, OkRepliesAndRequestsWithAnUndefinedOpcodeAreUnknownOpcode) {
  FrameHeader h = request_header();
  h.opcode = static_cast<Opcode>(0x7777);
  EXPECT_EQ(decode_frame(encode_frame(h, {}, {}), kLimits).status(), Status::kUnknownOpcode);
  h.flags = kFlagReply;
  EXPECT_EQ(decode_frame(encode_frame(h, {}, {}), kLimits).status(), Status::kUnknownOpcode);
}

TEST(WireFrame, LengthsOverTheLimitsAreRejectedFromTheHeaderAlone) {
  Bytes f = sample_frame();
  Bytes h(f.begin(), f.begin() + kHeaderSize);
  store_le32(h.data() + kOffTokenLen, kLimits.max_token_bytes + 1);
  EXPECT_EQ(decode_header(h, kLimits).status(), Status::kFrameTooLarge);
  store_le32(h.data() + kOffTokenLen, kLimits.max_token_bytes);
  EXPECT_TRUE(decode_header(h, kLimits));
  store_le32(h.data() + kOffPayloadLen, kLimits.max_payload_bytes + 1);
  EXPECT_EQ(decode_header(h, kLimits).status(), Status::kFrameTooLarge);
  store_le32(h.data() + kOffPayloadLen, 0xffffffff);
  EXPECT_EQ(decode_header(h, kLimits).status(), Status::kFrameTooLarge);
  store_le32(h.data() + kOffPayloadLen, kLimits.max_payload_bytes);
  EXPECT_TRUE(decode_header(h, kLimits));
}

TEST(WireFrame, SmallerLimitsPassedInAreHonoured) {
  Limits tight;
  tight.max_token_bytes = 10;
  tight.max_payload_bytes = 7;
  EXPECT_EQ(decode_frame(sample_frame(), tight).status(), Status::kFrameTooLarge);
  tight.max_token_bytes = 11;
  EXPECT_EQ(decode_frame(sample_frame(), tight).status(), Status::kFrameTooLarge);
  tight.max_payload_bytes = 8;
  EXPECT_TRUE(decode_frame(sample_frame(), tight));
}

TEST(WireFrame, FrameLongerThanDeclaredIsBadFrame) {
  Bytes f = sample_frame();
  f.push_back(std::byte{0});
  EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kBadFrame);
}

TEST(WireFrame, FrameShorterThanDeclaredIsBadFrame) {
  Bytes f = sample_frame();
  store_le32(f.data() + kOffPayloadLen, 9);
  reseal(f);
  EXPECT_EQ(decode_frame(f, kLimits).status(), Status::kBadFrame);
}

TEST(WireFrame, VersionIsCheckedBeforeFlagsAndOpcode) {
  Bytes f = sample_frame();
  store_le16(f.data() + kOffVersion, 9);
  store_le16(f.data() + kOffFlags, 0x8000);
  store_le16(f.data() + kOffOpcode, 0x7777);
  EXPECT_EQ(decode_header(f, kLimits).status(), Status::kUnsupportedVersion);
}

TEST(WireFrame, EmptyTokenAndPayloadMakeAFortyEightByteFrame) {
  Bytes f = encode_frame(request_header(Opcode::kPing), {}, {});
  EXPECT_EQ(f.size(), kHeaderSize);
  auto d = decode_frame(f, kLimits);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->token.empty());
  EXPECT_TRUE(d->payload.empty());
}

}  // namespace
}  // namespace gpulease::wire
