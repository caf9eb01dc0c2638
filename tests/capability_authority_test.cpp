#include "gpulease/capability/authority.hpp"

#include <gtest/gtest.h>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

using testing::kNow;

Claims parent_claims() {
  Claims c = testing::reference_claims();
  c.key_id = testing::key_a().key_id();
  return c;
}

AttenuationRequest narrow(PermissionSet perms, uint64_t lease = 42, uint64_t ttl = 600) {
  AttenuationRequest r;
  r.lease_id = lease;
  r.perms = perms;
  r.ttl_s = ttl;
  r.now_unix_s = kNow;
  r.token_id = testing::token_id(0x33);
  return r;
}

TEST(Authority, MintSetsItsKeyIdAndSigns) {
  const Authority a(testing::key_a());
  Claims c = testing::reference_claims();
  c.key_id = 12345;  // overwritten
  auto t = a.mint(c);
  ASSERT_TRUE(t);
  auto v = parse_token(*t);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->key_id, a.key_id());
  EXPECT_TRUE(verify_signature(a.public_key(), signing_message(v->body), v->signature));
}

TEST(Authority, MintRejectsInvalidClaims) {
  const Authority a(testing::key_a());
  Claims c = testing::reference_claims();
  c.tenant = std::string(65, 'x');
  EXPECT_EQ(a.mint(c).status(), Status::kInvalidArgument);
}

TEST(Attenuate, ProducesABoundNarrowerTokenSignedByTheNode) {
  const Authority node(testing::key_b());
  const Claims parent = parent_claims();
  auto t = node.attenuate(parent, narrow(bits(Permission::kTaskletSubmit)));
  ASSERT_TRUE(t) << t.error().message;
  auto v = parse_token(*t);
  ASSERT_TRUE(v);
  const Claims c = v->to_claims();
  EXPECT_EQ(c.key_id, node.key_id());
  EXPECT_EQ(c.tenant, parent.tenant);
  EXPECT_EQ(c.audience, parent.audience);
  EXPECT_EQ(c.lease_id, 42u);
  EXPECT_EQ(c.perms, bits(Permission::kTaskletSubmit));
  EXPECT_EQ(c.not_before, static_cast<uint64_t>(kNow));
  EXPECT_EQ(c.expires_at, static_cast<uint64_t>(kNow + 600));
  EXPECT_EQ(c.token_id, testing::token_id(0x33));
  EXPECT_EQ(c.origin_id, parent.token_id);
  EXPECT_EQ(c.max_vram, parent.max_vram);
}

TEST(Attenuate, ExpiryNeverOutlivesTheParent) {
  const Authority node(testing::key_b());
  auto t = node.attenuate(parent_claims(), narrow(bits(Permission::kMem), 42, 1'000'000));
  ASSERT_TRUE(t);
  EXPECT_EQ(parse_token(*t)->expires_at, parent_claims().expires_at);
  auto huge = node.attenuate(parent_claims(), narrow(bits(Permission::kMem), 42, UINT64_MAX));
  ASSERT_TRUE(huge);
  EXPECT_EQ(parse_token(*huge)->expires_at, parent_claims().expires_at);
}

TEST(Attenuate, RefusesPermissionsTheParentLacks) {
  const Authority node(testing::key_b());
  auto t = node.attenuate(parent_claims(), narrow(bits(Permission::kModule)));
  EXPECT_EQ(t.status(), Status::kPermissionDenied);
}

TEST(Attenuate, RefusesAnotherLeaseWhenTheParentIsBound) {
  const Authority node(testing::key_b());
  Claims parent = parent_claims();
  parent.lease_id = 7;
  EXPECT_EQ(node.attenuate(parent, narrow(bits(Permission::kMem), 42)).status(),
            Status::kPermissionDenied);
  EXPECT_TRUE(node.attenuate(parent, narrow(bits(Permission::kMem), 7)));
}

TEST(Attenuate, RequiresALeaseAndAPositiveTtl) {
  const Authority node(testing::key_b());
  EXPECT_EQ(node.attenuate(parent_claims(), narrow(bits(Permission::kMem), 0)).status(),
            Status::kInvalidArgument);
  EXPECT_EQ(node.attenuate(parent_claims(), narrow(bits(Permission::kMem), 42, 0)).status(),
            Status::kInvalidArgument);
}

TEST(Attenuate, KeepsTheRootAsOriginAcrossGenerations) {
  const Authority node(testing::key_b());
  auto child = node.attenuate(parent_claims(),
                              narrow(bits(Permission::kMem) | bits(Permission::kCapRequest)));
  ASSERT_TRUE(child);
  const Claims c1 = parse_token(*child)->to_claims();
  AttenuationRequest again = narrow(bits(Permission::kMem));
  again.token_id = testing::token_id(0x44);
  auto grandchild = node.attenuate(c1, again);
  ASSERT_TRUE(grandchild);
  EXPECT_EQ(parse_token(*grandchild)->origin_id, parent_claims().token_id);
}

TEST(Attenuate, ParentPastItsExpiryCannotDelegate) {
  const Authority node(testing::key_b());
  AttenuationRequest r = narrow(bits(Permission::kMem));
  r.now_unix_s = static_cast<int64_t>(parent_claims().expires_at);
  EXPECT_EQ(node.attenuate(parent_claims(), r).status(), Status::kTokenExpired);
}

TEST(RandomTokenId, DiffersBetweenCalls) {
  EXPECT_NE(random_token_id(), random_token_id());
}

}  // namespace
}  // namespace gpulease::capability
