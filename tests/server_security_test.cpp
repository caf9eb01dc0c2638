// Per-frame authorization through the node: every token failure, two tenants
// that try to touch each other's leases and handles, scoped tokens.
#include <set>

#include "server_test_util.hpp"

namespace gpulease::testing {
namespace {

using capability::bits;
using capability::Permission;

class SecurityTest : public ::testing::Test {
 protected:
  TestNode node_;
  RawClient c_{node_.port()};
  Bytes alice_ = node_.token("alice");
  Bytes bob_ = node_.token("bob");
};

TEST_F(SecurityTest, EveryOpButHelloAndPingNeedsAToken) {
  auto r = c_.call(Opcode::kLeaseAcquire, 0, {}, wire::LeaseAcquireRequest{1 << 20, 60});
  EXPECT_EQ(r.status(), Status::kUnauthenticated);
  EXPECT_EQ(c_.call(Opcode::kLeaseList, 0, {}, wire::Empty{}).status(), Status::kUnauthenticated);
}

TEST_F(SecurityTest, ATokenSignedByAnUntrustedKeyIsUnauthenticated) {
  capability::Authority rogue(capability::SecretKey::generate());
  capability::Claims c;
  c.tenant = "alice";
  c.audience = "test-node";
  c.perms = capability::kAllPermissions;
  c.not_before = now_s() - 5;
  c.expires_at = now_s() + 60;
  c.token_id = capability::random_token_id();
  auto tok = rogue.mint(c);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(
      c_.call(Opcode::kLeaseAcquire, 0, *tok, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
      Status::kUnauthenticated);
}

TEST_F(SecurityTest, ATamperedTokenIsUnauthenticated) {
  Bytes t = alice_;
  t[20] ^= std::byte{1};
  EXPECT_EQ(c_.call(Opcode::kLeaseAcquire, 0, t, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
            Status::kUnauthenticated);
}

TEST_F(SecurityTest, ExpiredAndNotYetValidTokensAreTokenExpired) {
  Bytes old = node_.token("alice", capability::kAllPermissions, -120, 0, 0, "test-node", -300);
  EXPECT_EQ(c_.call(Opcode::kLeaseList, 0, old, wire::Empty{}).status(), Status::kTokenExpired);
  Bytes early = node_.token("alice", capability::kAllPermissions, 3600, 0, 0, "test-node", 600);
  EXPECT_EQ(c_.call(Opcode::kLeaseList, 0, early, wire::Empty{}).status(), Status::kTokenExpired);
}

TEST_F(SecurityTest, ATokenForAnotherNodeIsPermissionDenied) {
  Bytes other = node_.token("alice", capability::kAllPermissions, 600, 0, 0, "some-other-node");
  EXPECT_EQ(c_.call(Opcode::kLeaseList, 0, other, wire::Empty{}).status(),
            Status::kPermissionDenied);
}

TEST_F(SecurityTest, EachOpNeedsItsPermission) {
  uint64_t lease = acquire(c_, alice_);
  Bytes query_only = node_.token("alice", bits(Permission::kLeaseQuery));
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, query_only, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kMemAlloc, lease, query_only, wire::MemAllocRequest{16}).status(),
            Status::kPermissionDenied);
  EXPECT_EQ(c_.call(Opcode::kLeaseRelease, lease, query_only, wire::Empty{}).status(),
            Status::kPermissionDenied);
  EXPECT_EQ(c_.call(Opcode::kLeaseAcquire, 0, query_only, wire::LeaseAcquireRequest{1 << 20, 60})
                .status(),
            Status::kPermissionDenied);
  EXPECT_EQ(c_.call(Opcode::kSync, lease, query_only, wire::Empty{}).status(),
            Status::kPermissionDenied);
}

TEST_F(SecurityTest, TheTokensVramCeilingBoundsAcquire) {
  Bytes small = node_.token("alice", capability::kAllPermissions, 600, 0, 1 << 20);
  EXPECT_EQ(
      c_.call(Opcode::kLeaseAcquire, 0, small, wire::LeaseAcquireRequest{2 << 20, 60}).status(),
      Status::kPermissionDenied);
  EXPECT_EQ(
      c_.call(Opcode::kLeaseAcquire, 0, small, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
      Status::kOk);
}

TEST_F(SecurityTest, RevokedTenantsAndTokensAreRefusedOnTheNextFrame) {
  uint64_t lease = acquire(c_, alice_);
  node_.node().revocations().revoke_tenant("alice");
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, alice_, wire::Empty{}).status(), Status::kRevoked);
  EXPECT_EQ(c_.call(Opcode::kLeaseList, 0, bob_, wire::Empty{}).status(), Status::kOk);
}

TEST_F(SecurityTest, TwoTenantsCannotTouchEachOthersLeasesOrHandles) {
  uint64_t a = acquire(c_, alice_);
  uint64_t b = acquire(c_, bob_);
  uint64_t abuf = alloc(c_, a, alice_, 64);
  uint64_t bbuf = alloc(c_, b, bob_, 64);
  // Bob names Alice's lease: to him it does not exist, whatever the op.
  for (Opcode op : {Opcode::kLeaseQuery, Opcode::kLeaseRelease, Opcode::kSync}) {
    EXPECT_EQ(c_.call(op, a, bob_, wire::Empty{}).status(), Status::kLeaseNotFound);
  }
  EXPECT_EQ(c_.call(Opcode::kMemRead, a, bob_, wire::MemReadRequest{abuf, 0, 64}).status(),
            Status::kLeaseNotFound);
  EXPECT_EQ(c_.call(Opcode::kLeaseRenew, a, bob_, wire::LeaseRenewRequest{60}).status(),
            Status::kLeaseNotFound);
  EXPECT_EQ(
      c_.call(Opcode::kCapRequest, a, bob_, wire::CapRequestRequest{bits(Permission::kMem), 60})
          .status(),
      Status::kLeaseNotFound);
  // Bob names Alice's buffer inside his own lease: not a handle of his lease.
  EXPECT_EQ(c_.call(Opcode::kMemRead, b, bob_, wire::MemReadRequest{abuf, 0, 64}).status(),
            Status::kInvalidHandle);
  EXPECT_EQ(c_.call(Opcode::kMemFree, b, bob_, wire::HandleRequest{abuf}).status(),
            Status::kInvalidHandle);
  wire::MemWriteRequest w{abuf, 0, Bytes(64, std::byte{0xff})};
  EXPECT_EQ(c_.call(Opcode::kMemWrite, b, bob_, w).status(), Status::kInvalidHandle);
  // Bob's list shows only his lease; Alice's data is untouched.
  auto list = c_.call(Opcode::kLeaseList, 0, bob_, wire::Empty{}).as<wire::LeaseListReply>();
  ASSERT_EQ(list.leases.size(), 1u);
  EXPECT_EQ(list.leases[0].lease_id, b);
  EXPECT_EQ(c_.call(Opcode::kMemRead, a, alice_, wire::MemReadRequest{abuf, 0, 64}).payload,
            Bytes(64));
  (void)bbuf;
}

TEST_F(SecurityTest, ATokenBoundToOneLeaseActsOnNoOther) {
  uint64_t a1 = acquire(c_, alice_);
  uint64_t a2 = acquire(c_, alice_);
  Bytes bound = node_.token("alice", capability::kAllPermissions, 600, a1);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, a1, bound, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, a2, bound, wire::Empty{}).status(),
            Status::kPermissionDenied);
}

TEST_F(SecurityTest, ALeaseBoundTokenCanNeitherAcquireNorList) {
  uint64_t lease = acquire(c_, alice_);
  Bytes bound = node_.token("alice", capability::kAllPermissions, 600, lease);
  // Naming its own lease in the header does not make an acquire or a list legal.
  for (uint64_t hdr : {uint64_t{0}, lease}) {
    EXPECT_EQ(
        c_.call(Opcode::kLeaseAcquire, hdr, bound, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
        Status::kPermissionDenied)
        << hdr;
    EXPECT_EQ(c_.call(Opcode::kLeaseList, hdr, bound, wire::Empty{}).status(),
              Status::kPermissionDenied)
        << hdr;
  }
  auto list = c_.call(Opcode::kLeaseList, 0, alice_, wire::Empty{}).as<wire::LeaseListReply>();
  EXPECT_EQ(list.leases.size(), 1u);  // nothing was acquired
}

TEST_F(SecurityTest, TheHeaderLeaseRuleIsEnforced) {
  uint64_t lease = acquire(c_, alice_);
  auto r = c_.call(Opcode::kLeaseAcquire, lease, alice_, wire::LeaseAcquireRequest{1 << 20, 60});
  EXPECT_EQ(r.status(), Status::kInvalidArgument);
  EXPECT_EQ(r.message(), "lease_rule: lease_id must be 0 for LEASE_ACQUIRE");
  EXPECT_EQ(c_.call(Opcode::kLeaseList, lease, alice_, wire::Empty{}).status(),
            Status::kInvalidArgument);
  EXPECT_EQ(c_.call(Opcode::kPing, 7, {}, wire::PingRequest{}).status(), Status::kInvalidArgument);
  auto q = c_.call(Opcode::kLeaseQuery, 0, alice_, wire::Empty{});
  EXPECT_EQ(q.status(), Status::kInvalidArgument);
  EXPECT_EQ(q.message(), "lease_rule: LEASE_QUERY needs the lease in the header's lease_id");
  auto list = c_.call(Opcode::kLeaseList, 0, alice_, wire::Empty{}).as<wire::LeaseListReply>();
  EXPECT_EQ(list.leases.size(), 1u);
}

TEST_F(SecurityTest, CapRequestNeverGrantsLeaseAcquireNorReservedOrNoBits) {
  uint64_t lease = acquire(c_, alice_);
  for (uint32_t perms : {bits(Permission::kLeaseAcquire), capability::kAllPermissions, 0u,
                         bits(Permission::kMem) | (1u << 20)}) {
    auto r = c_.call(Opcode::kCapRequest, lease, alice_, wire::CapRequestRequest{perms, 30});
    EXPECT_EQ(r.status(), Status::kInvalidArgument) << perms << ": " << r.message();
  }
}

TEST_F(SecurityTest, AnAbsentAndAForeignLeaseAreAnsweredIdentically) {
  uint64_t a = acquire(c_, alice_);
  uint64_t absent = a ^ 0x5a5a'5a5a'0000'0001ull;
  auto foreign = c_.call(Opcode::kLeaseQuery, a, bob_, wire::Empty{});
  auto missing = c_.call(Opcode::kLeaseQuery, absent, bob_, wire::Empty{});
  EXPECT_EQ(foreign.status(), Status::kLeaseNotFound);
  EXPECT_EQ(missing.status(), Status::kLeaseNotFound);
  EXPECT_EQ(foreign.message(), missing.message());
  EXPECT_EQ(foreign.message(), "no such lease");
}

TEST_F(SecurityTest, LeaseIdsAreRandomNotSequential) {
  std::set<uint64_t> ids;
  int adjacent = 0;
  uint64_t prev = 0;
  for (int i = 0; i < 8; ++i) {
    uint64_t id = acquire(c_, alice_, 1 << 16);
    ASSERT_NE(id, 0u);
    if (prev != 0 && (id - prev < 1024 || prev - id < 1024)) ++adjacent;
    prev = id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 8u);
  // Sequential ids would make every pair adjacent; random 64-bit ids none.
  EXPECT_EQ(adjacent, 0);
}

TEST_F(SecurityTest, CapRequestIssuesAScopedTokenForOneLease) {
  uint64_t lease = acquire(c_, alice_);
  uint64_t other = acquire(c_, alice_);
  uint64_t buf = alloc(c_, lease, alice_, 64);
  uint32_t perms = bits(Permission::kTaskletSubmit) | bits(Permission::kLeaseQuery);
  auto r = c_.call(Opcode::kCapRequest, lease, alice_, wire::CapRequestRequest{perms, 30});
  ASSERT_EQ(r.status(), Status::kOk) << r.message();
  Bytes scoped = r.as<wire::CapRequestReply>().token;
  // The worker can sync and query its lease ...
  EXPECT_EQ(c_.call(Opcode::kSync, lease, scoped, wire::Empty{}).status(), Status::kOk);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, lease, scoped, wire::Empty{}).status(), Status::kOk);
  // ... but nothing else, and no other lease.
  EXPECT_EQ(c_.call(Opcode::kMemRead, lease, scoped, wire::MemReadRequest{buf, 0, 4}).status(),
            Status::kPermissionDenied);
  EXPECT_EQ(c_.call(Opcode::kLeaseRelease, lease, scoped, wire::Empty{}).status(),
            Status::kPermissionDenied);
  EXPECT_EQ(c_.call(Opcode::kLeaseQuery, other, scoped, wire::Empty{}).status(),
            Status::kPermissionDenied);
  // A scoped token cannot widen itself.
  EXPECT_EQ(c_.call(Opcode::kCapRequest, lease, scoped,
                    wire::CapRequestRequest{capability::kAllPermissions, 30})
                .status(),
            Status::kPermissionDenied);
}

TEST_F(SecurityTest, CapRequestCannotGrantMoreThanThePresentingToken) {
  Bytes narrow =
      node_.token("alice", bits(Permission::kCapRequest) | bits(Permission::kLeaseQuery));
  uint64_t lease = acquire(c_, alice_);
  EXPECT_EQ(c_.call(Opcode::kCapRequest, lease, narrow,
                    wire::CapRequestRequest{bits(Permission::kMem), 30})
                .status(),
            Status::kPermissionDenied);
}

TEST_F(SecurityTest, ATenantCannotHoldMoreLeasesThanItsCap) {
  server::NodeConfig cfg = TestNode::small_config();
  cfg.tenant_max_leases = 2;
  TestNode capped(cfg);
  RawClient c(capped.port());
  Bytes t = capped.token("greedy");
  acquire(c, t);
  acquire(c, t);
  EXPECT_EQ(c.call(Opcode::kLeaseAcquire, 0, t, wire::LeaseAcquireRequest{1 << 20, 60}).status(),
            Status::kCapacityExceeded);
  EXPECT_EQ(c.call(Opcode::kLeaseAcquire, 0, capped.token("modest"),
                   wire::LeaseAcquireRequest{1 << 20, 60})
                .status(),
            Status::kOk);
}

}  // namespace
}  // namespace gpulease::testing
