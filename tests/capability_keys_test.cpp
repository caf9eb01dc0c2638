#include "gpulease/capability/keys.hpp"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>

#include <fstream>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "gpulease-keys-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_text(const fs::path& p, const std::string& text, fs::perms perms) {
  std::ofstream(p) << text;
  fs::permissions(p, perms);
}

TEST(KeyId, IsTheFirst8BytesOfDomainSeparatedBlake2bLittleEndian) {
  const SecretKey k = testing::key_a();
  unsigned char h[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>("gpulease-key-id-v1"), 19);
  crypto_generichash_update(&st, k.public_key().data(), 32);
  crypto_generichash_final(&st, h, 32);
  uint64_t expect = 0;
  for (int i = 7; i >= 0; --i) expect = (expect << 8) | h[i];
  EXPECT_EQ(k.key_id(), expect);
  EXPECT_EQ(key_id_hex(0x00ab), "00000000000000ab");
}

TEST(SecretKey, FromSeedIsDeterministicAndSigns) {
  const SecretKey a1 = testing::key_a(), a2 = testing::key_a(), b = testing::key_b();
  EXPECT_EQ(a1.public_key(), a2.public_key());
  EXPECT_NE(a1.public_key(), b.public_key());
  const wire::Bytes msg = wire::to_bytes("hello");
  const Signature s = a1.sign(msg);
  EXPECT_EQ(s, a2.sign(msg));  // Ed25519 is deterministic
  EXPECT_TRUE(
      verify_signature(a1.public_key(), msg, {reinterpret_cast<const std::byte*>(s.data()), 64}));
  EXPECT_FALSE(
      verify_signature(b.public_key(), msg, {reinterpret_cast<const std::byte*>(s.data()), 64}));
}

TEST(SecretKey, MovedFromKeyIsWiped) {
  SecretKey a = testing::key_a();
  SecretKey b = std::move(a);
  const auto seed = a.seed();  // NOLINT(bugprone-use-after-move): checking the wipe
  for (uint8_t byte : seed) EXPECT_EQ(byte, 0);
  EXPECT_EQ(b.public_key(), testing::key_a().public_key());
}

TEST(PublicKeyText, RoundTrips) {
  const SecretKey k = testing::key_a();
  const std::string line = format_public_key(k.public_key());
  EXPECT_EQ(line.rfind("gpulease-ed25519-public-v1 " + key_id_hex(k.key_id()) + " ", 0), 0u);
  auto e = parse_public_key("# comment\n\n" + line + "\n");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->key, k.public_key());
  EXPECT_EQ(e->key_id, k.key_id());
}

TEST(PublicKeyText, RejectsAKeyIdThatDoesNotMatchTheKey) {
  const std::string a = format_public_key(testing::key_a().public_key());
  const std::string b_id = key_id_hex(testing::key_b().key_id());
  std::string forged = a;
  forged.replace(27, 16, b_id);
  EXPECT_EQ(parse_public_key(forged).status(), Status::kInvalidArgument);
}

TEST(PublicKeyText, RejectsWrongTagTwoKeysAndBadBase64) {
  const std::string a = format_public_key(testing::key_a().public_key());
  EXPECT_FALSE(parse_public_key("gpulease-ed25519-secret-v1" + a.substr(26)));
  EXPECT_FALSE(parse_public_key(a + "\n" + a));
  EXPECT_FALSE(parse_public_key(a.substr(0, a.size() - 4)));
  EXPECT_FALSE(parse_public_key(""));
}

TEST(KeyFiles, WriteKeyPairCreatesSecret0600AndPublicThatLoadBack) {
  TempDir dir;
  const SecretKey k = SecretKey::generate();
  ASSERT_TRUE(write_key_pair(dir.path() / "auth", k));
  struct stat st;
  ASSERT_EQ(::stat((dir.path() / "auth.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto sk = load_secret_key_file(dir.path() / "auth.key");
  ASSERT_TRUE(sk) << sk.error().message;
  EXPECT_EQ(sk->public_key(), k.public_key());
  auto pk = load_public_key_file(dir.path() / "auth.pub");
  ASSERT_TRUE(pk) << pk.error().message;
  EXPECT_EQ(pk->key, k.public_key());
  EXPECT_EQ(pk->key_id, k.key_id());
}

TEST(KeyFiles, WriteKeyPairRefusesToOverwriteAndChangesNothing) {
  TempDir dir;
  write_text(dir.path() / "auth.pub", "keep me", fs::perms::owner_read | fs::perms::owner_write);
  auto r = write_key_pair(dir.path() / "auth", SecretKey::generate());
  ASSERT_FALSE(r);
  EXPECT_FALSE(fs::exists(dir.path() / "auth.key"));
  std::ifstream in(dir.path() / "auth.pub");
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "keep me");
}

TEST(KeyFiles, SecretKeyReadableByOthersIsRefused) {
  TempDir dir;
  ASSERT_TRUE(write_key_pair(dir.path() / "auth", SecretKey::generate()));
  fs::permissions(dir.path() / "auth.key", fs::perms::group_read, fs::perm_options::add);
  auto sk = load_secret_key_file(dir.path() / "auth.key");
  EXPECT_EQ(sk.status(), Status::kPermissionDenied);
}

TEST(KeyFiles, SecretKeyErrorsNeverEchoTheFile) {
  TempDir dir;
  const std::string secret =
      "gpulease-ed25519-secret-v1 0000000000000000 c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
  write_text(dir.path() / "bad.key", secret, fs::perms::owner_read | fs::perms::owner_write);
  auto sk = load_secret_key_file(dir.path() / "bad.key");
  ASSERT_FALSE(sk);
  EXPECT_EQ(sk.error().message.find("c2VjcmV0"), std::string::npos);
  EXPECT_NE(sk.error().message.find("key id"), std::string::npos);
}

TEST(KeyFiles, PublicKeyFileIsNotASecretKeyAndViceVersa) {
  TempDir dir;
  ASSERT_TRUE(write_key_pair(dir.path() / "auth", SecretKey::generate()));
  fs::permissions(dir.path() / "auth.pub", fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(load_secret_key_file(dir.path() / "auth.pub"));
  EXPECT_FALSE(load_public_key_file(dir.path() / "auth.key"));
  EXPECT_FALSE(load_public_key_file(dir.path() / "missing.pub"));
}

}  // namespace
}  // namespace gpulease::capability
