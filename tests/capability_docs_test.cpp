// Facts about tokens that the docs repeat are written once in code
// (capability/verifier.hpp); these tests fail when a doc drifts from it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gpulease/capability/verifier.hpp"

namespace gpulease::capability {
namespace {

std::string read_doc(const char* name) {
  std::ifstream in(std::filesystem::path(GPULEASE_SOURCE_DIR) / "docs" / name);
  EXPECT_TRUE(in) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The default column of OPERATING.md's flag table for `flag`.
std::string operating_default(const std::string& flag) {
  const std::string doc = read_doc("OPERATING.md");
  const std::string key = "| `" + flag + "` | ";
  const size_t at = doc.find(key);
  if (at == std::string::npos) return "(flag not in OPERATING.md)";
  const size_t from = at + key.size();
  return doc.substr(from, doc.find(" |", from) - from);
}

TEST(TokenDocs, OperatingGivesTheCodesDefaults) {
  EXPECT_EQ(operating_default("--token-cache-entries"),
            std::to_string(kDefaultSignatureCacheEntries));
  EXPECT_EQ(operating_default("--clock-skew-s"), std::to_string(kDefaultClockSkewS));
}

TEST(TokenDocs, TokensGivesTheCodesClockSkewAndNoCacheSize) {
  const std::string doc = read_doc("TOKENS.md");
  EXPECT_NE(doc.find("**" + std::to_string(kDefaultClockSkewS) + " s by default**"),
            std::string::npos);
  // The cache size is stated in one doc only (OPERATING.md).
  EXPECT_EQ(doc.find("65536"), std::string::npos);
  EXPECT_NE(doc.find("kDefaultSignatureCacheEntries"), std::string::npos);
}

TEST(TokenDocs, NoSuchLeaseIsTheMessageTheSpecsQuote) {
  EXPECT_NE(read_doc("TOKENS.md").find("`" + std::string(kNoSuchLeaseMessage) + "`"),
            std::string::npos);
  EXPECT_NE(read_doc("PROTOCOL.md").find("`" + std::string(kNoSuchLeaseMessage) + "`"),
            std::string::npos);
}

}  // namespace
}  // namespace gpulease::capability
