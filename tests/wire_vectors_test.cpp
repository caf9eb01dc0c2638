// The golden vectors (vectors/wire/*.json) checked both ways: every valid
// vector decodes to its fields and its fields encode to its bytes; every
// invalid vector fails with exactly its status; every truncated prefix and
// every flipped bit of a valid frame is rejected.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "wire_json.hpp"

namespace gpulease::vectors {
namespace {

using namespace gpulease::wire;
namespace fs = std::filesystem;

const Limits kLimits{};

struct Loaded {
  std::string file;
  Json v;
};

const std::vector<Loaded>& all_vectors() {
  static const std::vector<Loaded> vectors = [] {
    std::vector<Loaded> out;
    fs::path dir = fs::path(GPULEASE_SOURCE_DIR) / "vectors" / "wire";
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".json") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& p : files) {
      std::ifstream in(p);
      Json root = Json::parse(in);
      for (const Json& v : root.at("vectors")) out.push_back({p.filename().string(), v});
    }
    return out;
  }();
  return vectors;
}

Bytes frame_of(const Json& v) {
  auto b = from_hex(v.at("hex").get<std::string>());
  EXPECT_TRUE(b.has_value()) << v.at("id");
  return b.value_or(Bytes{});
}

bool is_valid(const Json& v) {
  return v.at("result") == "valid";
}

TEST(WireVectors, FilesExistAndEveryVectorHasTheRequiredKeys) {
  ASSERT_GE(all_vectors().size(), 100u);
  std::set<std::string> ids;
  for (const auto& [file, v] : all_vectors()) {
    for (const char* k : {"id", "description", "opcode", "direction", "hex", "result", "fields"}) {
      EXPECT_TRUE(v.contains(k)) << file << ": " << v.dump() << " lacks " << k;
    }
    EXPECT_TRUE(ids.insert(v.at("id").get<std::string>()).second) << "duplicate id " << v.at("id");
    EXPECT_TRUE(v.at("direction") == "request" || v.at("direction") == "reply") << v.at("id");
    EXPECT_TRUE(v.at("result") == "valid" || v.at("result") == "invalid") << v.at("id");
    EXPECT_EQ(v.contains("error"), !is_valid(v)) << v.at("id");
    std::string hex = v.at("hex");
    for (char c : hex) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << v.at("id");
  }
}

TEST(WireVectors, EveryValidVectorDecodesToItsFields) {
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) continue;
    SCOPED_TRACE(v.at("id").get<std::string>());
    auto d = decode_full_frame(frame_of(v), kLimits);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(frame_to_json(*d), v.at("fields"));
    EXPECT_EQ(opcode_label(static_cast<uint16_t>(d->header.opcode)), v.at("opcode"));
    EXPECT_EQ(d->header.is_reply(), v.at("direction") == "reply");
  }
}

TEST(WireVectors, EveryValidVectorsFieldsEncodeToItsBytes) {
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) continue;
    SCOPED_TRACE(v.at("id").get<std::string>());
    auto op = opcode_from_label(v.at("opcode").get<std::string>());
    ASSERT_TRUE(op.has_value());
    DecodedFrame f =
        frame_from_json(static_cast<Opcode>(*op), v.at("direction") == "reply", v.at("fields"));
    EXPECT_EQ(to_hex(encode_full_frame(f)), v.at("hex"));
  }
}

TEST(WireVectors, EveryInvalidVectorFailsWithExactlyItsStatus) {
  for (const auto& [file, v] : all_vectors()) {
    if (is_valid(v)) continue;
    SCOPED_TRACE(v.at("id").get<std::string>());
    auto want = status_from_name(v.at("error").get<std::string>());
    ASSERT_TRUE(want.has_value());
    EXPECT_NE(*want, Status::kOk);
    auto d = decode_full_frame(frame_of(v), kLimits);
    ASSERT_FALSE(d);
    EXPECT_EQ(status_name(d.status()), status_name(*want)) << d.error().message;
  }
}

TEST(WireVectors, EveryOpcodeHasAValidVectorInEachDirection) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& [file, v] : all_vectors()) {
    if (is_valid(v))
      seen.insert({v.at("opcode").get<std::string>(), v.at("direction").get<std::string>()});
  }
  for (Opcode op : kAllOpcodes) {
    EXPECT_TRUE(seen.count({std::string(opcode_name(op)), "request"})) << opcode_name(op);
    EXPECT_TRUE(seen.count({std::string(opcode_name(op)), "reply"})) << opcode_name(op);
  }
}

TEST(WireVectors, ErrorRepliesBothArgumentFormsAndEverySubmitKindAreCovered) {
  bool error_reply = false, raw = false, typed = false;
  std::set<std::string> submit_kinds;
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) continue;
    const Json& f = v.at("fields");
    if (f.contains("status") && f.at("status") != "OK") error_reply = true;
    const Json& p = f.at("payload");
    if (v.at("opcode") == "LAUNCH" && v.at("direction") == "request") {
      (p.at("args").at("form") == "RAW" ? raw : typed) = true;
    }
    if (v.at("opcode") == "GPU_SUBMIT" && v.at("direction") == "request") {
      for (const Json& a : p.at("args")) submit_kinds.insert(a.at("kind"));
    }
  }
  EXPECT_TRUE(error_reply);
  EXPECT_TRUE(raw);
  EXPECT_TRUE(typed);
  EXPECT_EQ(submit_kinds, (std::set<std::string>{"SCALAR", "IN", "OUT", "INOUT"}));
}

TEST(WireVectors, EveryFrameLevelRejectionHasAVector) {
  std::map<std::string, std::string> want = {
      {"frame.bad_magic", "BAD_FRAME"},
      {"frame.unknown_version.2", "UNSUPPORTED_VERSION"},
      {"frame.unknown_opcode.0x0600", "UNKNOWN_OPCODE"},
      {"frame.unknown_flag.0x0002", "BAD_FRAME"},
      {"frame.reserved_nonzero", "BAD_FRAME"},
      {"frame.status_in_request", "BAD_FRAME"},
      {"frame.token_in_reply", "BAD_FRAME"},
      {"frame.bad_checksum", "CHECKSUM_MISMATCH"},
      {"frame.token_len_too_large", "FRAME_TOO_LARGE"},
      {"frame.payload_len_too_large", "FRAME_TOO_LARGE"},
      {"frame.longer_than_declared", "BAD_FRAME"},
      {"frame.shorter_than_declared", "BAD_FRAME"},
  };
  for (size_t cut : {0, 4, 6, 8, 10, 12, 16, 24, 32, 36, 40, 48}) {
    want["frame.truncated." + std::to_string(cut)] = "BAD_FRAME";
  }
  std::map<std::string, std::string> have;
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) have[v.at("id")] = v.at("error");
  }
  for (const auto& [id, status] : want) {
    ASSERT_TRUE(have.count(id)) << id;
    EXPECT_EQ(have[id], status) << id;
  }
}

TEST(WireVectors, EveryTruncatedPrefixOfEveryValidFrameIsBadFrame) {
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) continue;
    Bytes f = frame_of(v);
    for (size_t n = 0; n < f.size(); ++n) {
      auto d = decode_full_frame(ByteSpan(f).first(n), kLimits);
      ASSERT_EQ(d.status(), Status::kBadFrame) << v.at("id") << " prefix " << n;
    }
  }
}

TEST(WireVectors, EveryFlippedBitOfEveryValidFrameIsRejected) {
  for (const auto& [file, v] : all_vectors()) {
    if (!is_valid(v)) continue;
    Bytes f = frame_of(v);
    for (size_t bit = 0; bit < f.size() * 8; ++bit) {
      f[bit / 8] ^= std::byte(1u << (bit % 8));
      auto d = decode_full_frame(f, kLimits);
      f[bit / 8] ^= std::byte(1u << (bit % 8));
      ASSERT_FALSE(d) << v.at("id") << " bit " << bit;
      if (bit >= kHeaderSize * 8) {
        ASSERT_EQ(d.status(), Status::kChecksumMismatch) << v.at("id") << " bit " << bit;
      }
    }
  }
}

// docs/PROTOCOL.md shows frames as "<!-- vector ID -->" then a code block of
// "label hex hex ..." lines; each must be that vector's frame, so the spec's
// examples cannot drift from the codec.
TEST(WireVectors, EveryHexExampleInTheSpecIsItsVectorsFrame) {
  std::ifstream in(fs::path(GPULEASE_SOURCE_DIR) / "docs" / "PROTOCOL.md");
  ASSERT_TRUE(in) << "docs/PROTOCOL.md is missing";
  std::map<std::string, std::string> hex_of;
  for (const auto& [file, v] : all_vectors()) hex_of[v.at("id")] = v.at("hex");
  const std::string marker = "<!-- vector ";
  std::string line, id;
  bool in_block = false;
  std::string got;
  size_t examples = 0;
  while (std::getline(in, line)) {
    if (line.rfind(marker, 0) == 0) {
      id = line.substr(marker.size(), line.find(" -->") - marker.size());
      continue;
    }
    if (id.empty() || line.rfind("```", 0) != 0) {
      if (in_block) {
        std::istringstream words(line);
        std::string w;
        words >> w;  // the label: header / token / payload
        while (words >> w) got += w;
      }
      continue;
    }
    if (!in_block) {
      in_block = true;
      got.clear();
      continue;
    }
    ASSERT_TRUE(hex_of.count(id)) << "the spec names vector " << id << ", which does not exist";
    EXPECT_EQ(got, hex_of[id]) << "docs/PROTOCOL.md example " << id;
    ++examples;
    in_block = false;
    id.clear();
  }
  EXPECT_GE(examples, 34u);
}

TEST(WireVectors, HexHelpersRoundTripAndRejectNonHex) {
  Bytes b{std::byte{0}, std::byte{0xab}, std::byte{0xff}};
  EXPECT_EQ(to_hex(b), "00abff");
  EXPECT_EQ(from_hex("00ABff"), b);
  EXPECT_FALSE(from_hex("0"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_EQ(opcode_from_label("0x0700"), 0x0700);
  EXPECT_EQ(opcode_from_label("MEM_READ"), 0x0604);
  EXPECT_EQ(opcode_label(0x0604), "MEM_READ");
  EXPECT_EQ(opcode_label(0xffff), "0xffff");
}

}  // namespace
}  // namespace gpulease::vectors
