#include "gpulease/capability/revocation.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <thread>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

namespace fs = std::filesystem;
using testing::token_id;

const TokenId kZero{};

fs::path temp_file(const std::string& text) {
  std::string tmpl = (fs::temp_directory_path() / "gpulease-revoked-XXXXXX").string();
  const int fd = mkstemp(tmpl.data());
  ::close(fd);
  std::ofstream(tmpl) << text;
  return tmpl;
}

TEST(ParseRevocationList, ReadsTokensTenantsCommentsAndBlankLines) {
  auto l = parse_revocation_list(
      "# revoked\n\ntoken 11111111111111111111111111111111\n  tenant  mallory \r\n"
      "tenant \xc3\xa9quipe\n");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->token_ids.size(), 1u);
  EXPECT_EQ(l->token_ids.count(token_id(0x11)), 1u);
  EXPECT_EQ(l->tenants.count("mallory"), 1u);
  EXPECT_EQ(l->tenants.count("\xc3\xa9quipe"), 1u);
}

TEST(ParseRevocationList, NamesTheFirstBadLine) {
  auto l = parse_revocation_list("tenant ok\ntoken 1234\n");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.status(), Status::kInvalidArgument);
  EXPECT_EQ(l.error().message.rfind("line 2:", 0), 0u);
  EXPECT_FALSE(parse_revocation_list("key 1234\n"));
  EXPECT_FALSE(parse_revocation_list("tenant\n"));
  EXPECT_FALSE(parse_revocation_list("tenant " + std::string(65, 'x') + "\n"));
}

TEST(RevocationSet, ChecksTokenIdOriginIdAndTenant) {
  RevocationSet set;
  EXPECT_EQ(set.check(token_id(1), kZero, "alice"), Revoked::kNo);
  set.revoke_token(token_id(1));
  set.revoke_tenant("mallory");
  EXPECT_EQ(set.check(token_id(1), kZero, "alice"), Revoked::kToken);
  EXPECT_EQ(set.check(token_id(2), token_id(1), "alice"), Revoked::kToken);
  EXPECT_EQ(set.check(token_id(2), kZero, "mallory"), Revoked::kTenant);
  EXPECT_EQ(set.check(token_id(2), kZero, "alice"), Revoked::kNo);
}

TEST(RevocationSet, ZeroOriginNeverMatchesARevokedZeroId) {
  RevocationSet set;
  set.revoke_token(kZero);
  EXPECT_EQ(set.check(token_id(2), kZero, "alice"), Revoked::kNo);
}

TEST(RevocationSet, LoadsAndReloadsAFile) {
  const fs::path p = temp_file("tenant mallory\n");
  RevocationSet set;
  ASSERT_TRUE(set.load_file(p));
  EXPECT_EQ(set.check(token_id(1), kZero, "mallory"), Revoked::kTenant);
  std::ofstream(p) << "tenant eve\n";
  ASSERT_TRUE(set.reload());
  EXPECT_EQ(set.check(token_id(1), kZero, "mallory"), Revoked::kNo);
  EXPECT_EQ(set.check(token_id(1), kZero, "eve"), Revoked::kTenant);
  fs::remove(p);
}

TEST(RevocationSet, AFileOverTheLimitIsRefusedWithoutReadingItAllAndTheOldSetStays) {
  RevocationSet set;
  set.revoke_tenant("mallory");
  const fs::path p = temp_file(std::string(kMaxRevocationFileBytes + 10, '#'));
  EXPECT_FALSE(set.load_file(p));
  EXPECT_EQ(set.check(token_id(1), kZero, "mallory"), Revoked::kTenant);
  fs::remove(p);
}

TEST(RevocationSet, MalformedReloadKeepsTheOldSetInForce) {
  const fs::path p = temp_file("tenant mallory\n");
  RevocationSet set;
  ASSERT_TRUE(set.load_file(p));
  std::ofstream(p) << "tenant eve\nbogus line\n";
  auto r = set.reload();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos);
  EXPECT_EQ(set.check(token_id(1), kZero, "mallory"), Revoked::kTenant);
  EXPECT_EQ(set.check(token_id(1), kZero, "eve"), Revoked::kNo);
  fs::remove(p);
}

TEST(RevocationSet, MissingFileIsAnErrorAndReloadWithoutFileToo) {
  RevocationSet set;
  EXPECT_FALSE(set.load_file("/nonexistent/revoked.txt"));
  EXPECT_EQ(set.reload().status(), Status::kInvalidArgument);
}

TEST(RevocationSet, ReadersSeeOldOrNewListDuringSwaps) {
  RevocationSet set;
  RevocationList a, b;
  a.tenants.emplace("x");
  b.tenants.emplace("y");
  set.replace(a);
  std::thread reader([&] {
    for (int i = 0; i < 50000; ++i) {
      const auto snap = set.snapshot();
      ASSERT_EQ(snap->tenants.size(), 1u);
    }
  });
  for (int i = 0; i < 2000; ++i) set.replace(i % 2 ? a : b);
  reader.join();
}

}  // namespace
}  // namespace gpulease::capability
