// Checks vectors/tokens/*.json against the implementation: each valid vector
// decodes to its fields and passes verification; each invalid one yields
// exactly its status, at the step its reason names.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gpulease/capability/encoding.hpp"
#include "gpulease/capability/keys.hpp"
#include "gpulease/capability/token.hpp"
#include "gpulease/capability/verifier.hpp"

namespace gpulease::capability {
namespace {

using json = nlohmann::json;

json load(const char* name) {
  std::ifstream in(std::string(GPULEASE_SOURCE_DIR) + "/vectors/tokens/" + name);
  EXPECT_TRUE(in) << name;
  return json::parse(in);
}

wire::Bytes unhex(const std::string& s) {
  auto b = from_hex(s);
  EXPECT_TRUE(b) << s;
  return b ? *b : wire::Bytes{};
}

uint64_t u64(const json& j) {
  return std::stoull(j.get<std::string>());
}

TokenId id(const json& j) {
  const wire::Bytes b = unhex(j.get<std::string>());
  TokenId t{};
  if (b.size() == t.size()) std::memcpy(t.data(), b.data(), t.size());
  return t;
}

// Runs the checks a vector's "verify" block describes, as the node would.
Result<Claims> run(const json& ctx, const json& v, wire::ByteSpan token) {
  const json& chk = v["verify"];
  VerifierOptions o;
  o.node_id = chk["node_id"].get<std::string>();
  o.clock_skew_s = ctx["clock_skew_s"].get<int64_t>();
  o.cache_capacity = 4;
  Verifier verifier(o);
  for (const auto& k : ctx["trusted_keys"]) {
    auto e = parse_public_key(k["public_key_file"].get<std::string>());
    EXPECT_TRUE(e);
    if (e) verifier.key_ring().add(e->key);
  }
  auto list = parse_revocation_list(ctx["revocation_file"].get<std::string>());
  EXPECT_TRUE(list);
  if (list) verifier.revocations().replace(std::move(list).value());
  auto op = wire::opcode_from_name(chk["opcode"].get<std::string>());
  EXPECT_TRUE(op);
  const VerifyRequest req{*op, u64(chk["frame_lease_id"]), static_cast<int64_t>(u64(chk["now"]))};
  auto claims = verifier.verify(token, req);
  if (!claims) return claims;
  if (chk.contains("lease_owner")) {
    auto r = check_lease_owner(*claims, chk["lease_owner"].get<std::string>());
    if (!r) return std::move(r).error();
  }
  if (chk.contains("acquire_bytes")) {
    auto r = check_vram_ceiling(*claims, u64(chk["acquire_bytes"]));
    if (!r) return std::move(r).error();
  }
  return claims;
}

TEST(TokenVectors, ContextKeysDeriveFromTheirSeeds) {
  const json f = load("valid.json");
  for (const auto* group : {"trusted_keys", "untrusted_keys"}) {
    for (const auto& k : f["context"][group]) {
      const wire::Bytes s = unhex(k["seed_hex"]);
      ASSERT_EQ(s.size(), 32u);
      const SecretKey sk = SecretKey::from_seed(
          std::span<const uint8_t, 32>(reinterpret_cast<const uint8_t*>(s.data()), 32));
      EXPECT_EQ(to_hex({reinterpret_cast<const std::byte*>(sk.public_key().data()), 32}),
                k["public_key_hex"]);
      EXPECT_EQ(key_id_hex(sk.key_id()), k["key_id"]);
    }
  }
}

TEST(TokenVectors, ValidVectorsDecodeToTheirFieldsAndVerify) {
  const json f = load("valid.json");
  ASSERT_GE(f["vectors"].size(), 5u);
  for (const auto& v : f["vectors"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const wire::Bytes t = unhex(v["token_hex"]);
    EXPECT_EQ(t.size(), v["size"].get<size_t>());
    auto text = decode_token_text(v["token_text"].get<std::string>());
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, t);
    EXPECT_EQ(encode_token_text(t), v["token_text"]);
    auto view = parse_token(t);
    ASSERT_TRUE(view) << view.error().message;
    const json& fl = v["fields"];
    EXPECT_EQ(key_id_hex(view->key_id), fl["key_id"]);
    EXPECT_EQ(view->tenant, fl["tenant"].get<std::string>());
    EXPECT_EQ(view->audience, fl["audience"].get<std::string>());
    EXPECT_EQ(view->lease_id, u64(fl["lease_id"]));
    EXPECT_EQ(view->perms, fl["perms"].get<uint32_t>());
    EXPECT_EQ(format_permissions(view->perms), fl["perm_names"]);
    EXPECT_EQ(view->not_before, u64(fl["not_before"]));
    EXPECT_EQ(view->expires_at, u64(fl["expires_at"]));
    EXPECT_EQ(view->token_id, id(fl["token_id"]));
    EXPECT_EQ(view->origin_id, id(fl["origin_id"]));
    EXPECT_EQ(view->max_vram, u64(fl["max_vram"]));
    EXPECT_EQ(to_hex(signing_message(view->body)), v["signed_message_hex"]);
    EXPECT_EQ(to_hex(view->signature), v["signature_hex"]);
    // Re-encoding the decoded fields gives back the exact signed body.
    EXPECT_EQ(encode_token_body(view->to_claims()),
              wire::Bytes(view->body.begin(), view->body.end()));
    auto r = run(f["context"], v, t);
    EXPECT_TRUE(r) << r.error().message;
  }
}

TEST(TokenVectors, InvalidVectorsYieldExactlyTheirStatusAndReason) {
  const json f = load("invalid.json");
  ASSERT_GE(f["vectors"].size(), 40u);
  for (const auto& v : f["vectors"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const wire::Bytes t = unhex(v["token_hex"]);
    auto r = run(f["context"], v, t);
    ASSERT_FALSE(r);
    EXPECT_EQ(status_name(r.status()), v["expected_status"].get<std::string>());
    const std::string& m = r.error().message;
    if (v["reason"] == "not_lease_owner") {
      // Step 9 reads exactly as an absent lease does (TOKENS.md).
      EXPECT_EQ(m, "no such lease");
    } else {
      EXPECT_EQ(m.substr(0, m.find(':')), v["reason"].get<std::string>()) << m;
    }
  }
}

TEST(TokenVectors, EveryBitFlipAndTruncationOfEveryValidVectorIsUnauthenticated) {
  const json f = load("valid.json");
  for (const auto& v : f["vectors"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const wire::Bytes good = unhex(v["token_hex"]);
    for (size_t i = 0; i < good.size() * 8; ++i) {
      wire::Bytes t = good;
      t[i / 8] ^= std::byte(1u << (i % 8));
      ASSERT_EQ(run(f["context"], v, t).status(), Status::kUnauthenticated) << "bit " << i;
    }
    for (size_t n = 0; n < good.size(); ++n) {
      ASSERT_EQ(run(f["context"], v, {good.data(), n}).status(), Status::kUnauthenticated)
          << "length " << n;
    }
  }
}

}  // namespace
}  // namespace gpulease::capability
