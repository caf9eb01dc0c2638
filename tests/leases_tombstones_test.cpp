// Ended leases remembered per tenant (leases/tombstones.hpp). The node's use
// of it is in server_hostile_test (ATenantCyclingLeasesForgetsOnlyItsOwnEndedLeases).
#include <gtest/gtest.h>

#include <string>

#include "leases/tombstones.hpp"

namespace gpulease::server {
namespace {

TEST(Tombstones, ATenantPastItsShareForgetsItsOwnOldestOnly) {
  Tombstones t(/*per_tenant=*/3, /*total=*/100);
  t.add(1, "alice", DropReason::kReleased);
  for (uint64_t id = 100; id < 110; ++id) t.add(id, "bob", DropReason::kExpired);
  EXPECT_EQ(t.find(1, "alice"), DropReason::kReleased);
  EXPECT_EQ(t.held_by("bob"), 3u);
  EXPECT_FALSE(t.find(106, "bob").has_value());
  EXPECT_EQ(t.find(107, "bob"), DropReason::kExpired);
  EXPECT_EQ(t.find(109, "bob"), DropReason::kExpired);
  EXPECT_EQ(t.size(), 4u);
}

TEST(Tombstones, AnotherTenantsTombstoneIsNotFound) {
  Tombstones t(4, 8);
  t.add(7, "alice", DropReason::kExpired);
  EXPECT_TRUE(t.contains(7));
  EXPECT_FALSE(t.find(7, "bob").has_value());
  EXPECT_FALSE(t.find(8, "alice").has_value());
}

TEST(Tombstones, AtTheTotalTheTenantHoldingMostGivesOneUp) {
  Tombstones t(/*per_tenant=*/6, /*total=*/8);
  t.add(1, "alice", DropReason::kReleased);
  t.add(2, "alice", DropReason::kReleased);
  for (uint64_t id = 10; id < 16; ++id) t.add(id, "bob", DropReason::kReleased);
  ASSERT_EQ(t.size(), 8u);
  // Carol's first: the total is reached, so bob (6) gives up his oldest.
  t.add(20, "carol", DropReason::kReleased);
  EXPECT_EQ(t.size(), 8u);
  EXPECT_FALSE(t.contains(10));
  EXPECT_EQ(t.held_by("alice"), 2u);
  EXPECT_EQ(t.held_by("carol"), 1u);
  // Carol cycling takes from the largest each time, never below her share:
  // bob and carol end at 3 each, alice keeps both of hers.
  for (uint64_t id = 21; id < 40; ++id) t.add(id, "carol", DropReason::kReleased);
  EXPECT_EQ(t.size(), 8u);
  EXPECT_EQ(t.held_by("alice"), 2u);
  EXPECT_EQ(t.held_by("bob"), 3u);
  EXPECT_EQ(t.held_by("carol"), 3u);
  EXPECT_EQ(t.find(39, "carol"), DropReason::kReleased);
}

}  // namespace
}  // namespace gpulease::server
