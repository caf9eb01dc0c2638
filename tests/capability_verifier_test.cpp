#include "gpulease/capability/verifier.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

using testing::kNode;
using testing::kNow;
using testing::reference_claims;
using testing::request;
using wire::Opcode;

class VerifierTest : public ::testing::Test {
 protected:
  VerifierTest() : authority_(testing::key_a()), verifier_(options()) {
    verifier_.key_ring().add(authority_.public_key());
  }
  static VerifierOptions options() {
    VerifierOptions o;
    o.node_id = kNode;
    o.cache_capacity = 64;
    return o;
  }
  wire::Bytes mint(const Claims& c) { return testing::mint(authority_, c); }
  Status status_of(const Claims& c, const VerifyRequest& r) {
    return verifier_.verify(mint(c), r).status();
  }
  // The reason word that starts the error message.
  std::string reason_of(wire::ByteSpan t, const VerifyRequest& r) {
    auto v = verifier_.verify(t, r);
    if (v) return "ok";
    const std::string& m = v.error().message;
    return m.substr(0, m.find(':'));
  }

  Authority authority_;
  Verifier verifier_;
};

TEST_F(VerifierTest, AcceptsAGoodTokenAndReturnsItsClaims) {
  auto v = verifier_.verify(mint(reference_claims()), request(Opcode::kMemAlloc, 5));
  ASSERT_TRUE(v) << v.error().message;
  Claims expect = reference_claims();
  expect.key_id = authority_.key_id();
  EXPECT_EQ(*v, expect);
  EXPECT_EQ(verifier_.stats().accepted, 1u);
}

TEST_F(VerifierTest, CountsSignatureChecksOnlyPastTheCache) {
  const wire::Bytes t = mint(reference_claims());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(verifier_.verify(t, request(Opcode::kMemAlloc, 5)));
  EXPECT_EQ(verifier_.stats().signature_checks, 1u);
  wire::Bytes bad = t;
  bad.back() ^= std::byte{1};
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(verifier_.verify(bad, request(Opcode::kMemAlloc, 5)));
  EXPECT_EQ(verifier_.stats().signature_checks, 3u);
  // Refused before step 3 (malformed): no check.
  EXPECT_FALSE(verifier_.verify(wire::Bytes(10), request(Opcode::kMemAlloc, 5)));
  EXPECT_EQ(verifier_.stats().signature_checks, 3u);
}

TEST_F(VerifierTest, MalformedIsUnauthenticated) {
  EXPECT_EQ(verifier_.verify({}, request(Opcode::kMemAlloc)).status(), Status::kUnauthenticated);
  EXPECT_EQ(reason_of(wire::Bytes(150, std::byte{1}), request(Opcode::kMemAlloc)), "malformed");
}

TEST_F(VerifierTest, UnknownKeyIdIsUnauthenticated) {
  const Authority other(testing::key_b());
  const wire::Bytes t = testing::mint(other, reference_claims());
  EXPECT_EQ(verifier_.verify(t, request(Opcode::kMemAlloc)).status(), Status::kUnauthenticated);
  EXPECT_EQ(reason_of(t, request(Opcode::kMemAlloc)), "unknown_key");
}

TEST_F(VerifierTest, EveryFlippedBitIsUnauthenticated) {
  const wire::Bytes good = mint(reference_claims());
  ASSERT_TRUE(verifier_.verify(good, request(Opcode::kMemAlloc)));  // and cached
  for (size_t i = 0; i < good.size() * 8; ++i) {
    wire::Bytes t = good;
    t[i / 8] ^= std::byte(1u << (i % 8));
    const auto v = verifier_.verify(t, request(Opcode::kMemAlloc));
    ASSERT_EQ(v.status(), Status::kUnauthenticated) << "bit " << i;
  }
}

TEST_F(VerifierTest, EveryTruncationIsUnauthenticated) {
  const wire::Bytes good = mint(reference_claims());
  for (size_t n = 0; n < good.size(); ++n) {
    ASSERT_EQ(verifier_.verify({good.data(), n}, request(Opcode::kMemAlloc)).status(),
              Status::kUnauthenticated)
        << n;
  }
}

TEST_F(VerifierTest, TimeWindowHonoursTheSkewOnBothEnds) {
  Claims c = reference_claims();
  c.not_before = kNow + 30;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kOk);
  c.not_before = kNow + 31;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kTokenExpired);
  c = reference_claims();
  c.expires_at = kNow - 29;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kOk);
  c.expires_at = kNow - 30;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kTokenExpired);
}

TEST_F(VerifierTest, ExtremeTimesDoNotOverflow) {
  Claims c = reference_claims();
  c.not_before = 0;
  c.expires_at = UINT64_MAX;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc, 42, INT64_MAX)), Status::kOk);
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc, 42, -5)), Status::kOk);
  c.not_before = UINT64_MAX - 1;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc, 42, INT64_MAX)), Status::kTokenExpired);
}

TEST_F(VerifierTest, CachedSignatureStillChecksTimeOnEveryFrame) {
  const wire::Bytes t = mint(reference_claims());
  ASSERT_TRUE(verifier_.verify(t, request(Opcode::kMemAlloc)));
  EXPECT_EQ(verifier_.verify(t, request(Opcode::kMemAlloc, 42, kNow + 3600 + 30)).status(),
            Status::kTokenExpired);
  EXPECT_GE(verifier_.stats().cache.hits, 1u);
}

TEST_F(VerifierTest, WrongAudienceIsPermissionDenied) {
  Claims c = reference_claims();
  c.audience = "node-b";
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kPermissionDenied);
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc)), "wrong_audience");
}

TEST_F(VerifierTest, EachOpcodeNeedsItsPermission) {
  for (Opcode op : wire::kAllOpcodes) {
    const Permission need = *required_permission(op);
    Claims c = reference_claims();
    c.perms = kAllPermissions & ~bits(need);
    const Status expect = need == Permission::kNone ? Status::kOk : Status::kPermissionDenied;
    EXPECT_EQ(status_of(c, request(op)), expect) << opcode_name(op);
    c.perms = bits(need);
    EXPECT_EQ(status_of(c, request(op)), Status::kOk) << opcode_name(op);
  }
}

TEST_F(VerifierTest, UnknownOpcodeIsDenied) {
  EXPECT_EQ(status_of(reference_claims(), request(static_cast<Opcode>(0x0999))),
            Status::kPermissionDenied);
}

TEST_F(VerifierTest, RevokedTokenTenantAndOriginAreRevoked) {
  Claims c = reference_claims();
  verifier_.revocations().revoke_token(c.token_id);
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kRevoked);
  c.token_id = testing::token_id(0x77);
  c.origin_id = reference_claims().token_id;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kRevoked);
  c = reference_claims();
  c.token_id = testing::token_id(0x78);
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kOk);
  verifier_.revocations().revoke_tenant("alice");
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc)), Status::kRevoked);
}

TEST_F(VerifierTest, RevocationAppliesToCachedTokens) {
  const wire::Bytes t = mint(reference_claims());
  ASSERT_TRUE(verifier_.verify(t, request(Opcode::kMemAlloc)));
  verifier_.revocations().revoke_tenant("alice");
  EXPECT_EQ(verifier_.verify(t, request(Opcode::kMemAlloc)).status(), Status::kRevoked);
}

TEST_F(VerifierTest, BoundTokenActsOnlyOnItsLease) {
  Claims c = reference_claims();
  c.lease_id = 42;
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc, 42)), Status::kOk);
  EXPECT_EQ(status_of(c, request(Opcode::kMemAlloc, 43)), Status::kPermissionDenied);
  EXPECT_EQ(status_of(c, request(Opcode::kLeaseAcquire, 0)), Status::kPermissionDenied);
}

TEST_F(VerifierTest, RemovingAKeyStopsItsCachedTokensAtOnce) {
  const wire::Bytes t = mint(reference_claims());
  ASSERT_TRUE(verifier_.verify(t, request(Opcode::kMemAlloc)));
  verifier_.key_ring().remove(authority_.key_id());
  EXPECT_EQ(reason_of(t, request(Opcode::kMemAlloc)), "unknown_key");
}

TEST_F(VerifierTest, RotationAcceptsBothKeysWhileBothAreInTheRing) {
  const Authority next(testing::key_b());
  verifier_.key_ring().add(next.public_key());
  EXPECT_TRUE(verifier_.verify(mint(reference_claims()), request(Opcode::kMemAlloc)));
  EXPECT_TRUE(
      verifier_.verify(testing::mint(next, reference_claims()), request(Opcode::kMemAlloc)));
}

TEST_F(VerifierTest, OrderIsSignatureThenTimeThenAudienceThenPermissionThenRevocationThenLease) {
  const SecretKey b = testing::key_b();
  // Bad signature beats every later failure.
  Claims c = reference_claims();
  c.key_id = authority_.key_id();
  c.audience = "node-b";
  c.expires_at = kNow - 100;
  c.not_before = kNow - 200;
  c.perms = 0;
  wire::Bytes body = encode_token_body(c);
  const Signature sig = b.sign(signing_message(body));
  for (uint8_t x : sig) body.push_back(std::byte{x});
  EXPECT_EQ(reason_of(body, request(Opcode::kMemAlloc)), "bad_signature");
  // Then time,
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc)), "expired");
  // audience,
  c.expires_at = kNow + 100;
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc)), "wrong_audience");
  // permission,
  c.audience = kNode;
  c.lease_id = 42;
  verifier_.revocations().revoke_tenant("alice");
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc, 43)), "missing_permission");
  // revocation,
  c.perms = kAllPermissions;
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc, 43)), "revoked_tenant");
  // and the lease binding last.
  verifier_.revocations().replace({});
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc, 43)), "wrong_lease");
}

TEST_F(VerifierTest, CountsRejectionsByReason) {
  (void)verifier_.verify({}, request(Opcode::kMemAlloc));
  Claims c = reference_claims();
  c.audience = "x";
  (void)verifier_.verify(mint(c), request(Opcode::kMemAlloc));
  const auto s = verifier_.stats();
  EXPECT_EQ(s.denied[static_cast<size_t>(DenyReason::kMalformed)], 1u);
  EXPECT_EQ(s.denied[static_cast<size_t>(DenyReason::kWrongAudience)], 1u);
}

TEST_F(VerifierTest, ConcurrentVerificationIsConsistent) {
  std::vector<wire::Bytes> tokens;
  for (uint8_t i = 0; i < 8; ++i) {
    Claims c = reference_claims();
    c.token_id = testing::token_id(i);
    tokens.push_back(mint(c));
  }
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 400; ++i) {
        if (!verifier_.verify(tokens[static_cast<size_t>(i) % tokens.size()],
                              request(Opcode::kMemAlloc))) {
          failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(verifier_.stats().accepted, 1600u);
}

TEST(CheckLeaseOwner, AnotherTenantsLeaseIsAnsweredAsIfItDidNotExist) {
  Claims c = reference_claims();
  EXPECT_TRUE(check_lease_owner(c, "alice"));
  auto r = check_lease_owner(c, "bob");
  EXPECT_EQ(r.status(), Status::kLeaseNotFound);
  EXPECT_EQ(r.error().message, kNoSuchLeaseMessage);
  c.lease_id = 42;  // binding does not cross tenants
  EXPECT_EQ(check_lease_owner(c, "bob").status(), Status::kLeaseNotFound);
}

TEST_F(VerifierTest, TheHeaderLeaseRuleIsEnforcedAfterTheTokenChecks) {
  const Claims c = reference_claims();
  auto acquire = verifier_.verify(mint(c), request(Opcode::kLeaseAcquire, 42));
  EXPECT_EQ(acquire.status(), Status::kInvalidArgument);
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kLeaseAcquire, 42)), "lease_rule");
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kLeaseList, 7)), "lease_rule");
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc, 0)), "lease_rule");
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kCapRequest, 0)), "lease_rule");
  EXPECT_TRUE(verifier_.verify(mint(c), request(Opcode::kLeaseAcquire, 0)));
  EXPECT_TRUE(verifier_.verify(mint(c), request(Opcode::kMemAlloc, 9)));
  // A token check that fails first still decides.
  Claims expired = c;
  expired.expires_at = kNow - 3600;
  expired.not_before = kNow - 7200;
  EXPECT_EQ(reason_of(mint(expired), request(Opcode::kLeaseAcquire, 42)), "expired");
}

TEST_F(VerifierTest, ALeaseBoundTokenNeverAcquiresOrLists) {
  Claims c = reference_claims();
  c.lease_id = 42;
  // Not even when the header names its own lease (the hole this closes).
  for (uint64_t lease : {uint64_t{0}, uint64_t{42}}) {
    auto r = verifier_.verify(mint(c), request(Opcode::kLeaseAcquire, lease));
    EXPECT_EQ(r.status(), Status::kPermissionDenied) << lease;
    EXPECT_EQ(reason_of(mint(c), request(Opcode::kLeaseList, lease)), "wrong_lease") << lease;
  }
  EXPECT_TRUE(verifier_.verify(mint(c), request(Opcode::kMemAlloc, 42)));
  EXPECT_EQ(reason_of(mint(c), request(Opcode::kMemAlloc, 43)), "wrong_lease");
}

TEST(CheckVramCeiling, ZeroMeansNoCeiling) {
  Claims c = reference_claims();
  EXPECT_TRUE(check_vram_ceiling(c, c.max_vram));
  EXPECT_EQ(check_vram_ceiling(c, c.max_vram + 1).status(), Status::kPermissionDenied);
  c.max_vram = 0;
  EXPECT_TRUE(check_vram_ceiling(c, UINT64_MAX));
}

TEST(DenyReasons, NamesAndStatusesMatchTheSpec) {
  EXPECT_EQ(deny_reason_name(DenyReason::kBadSignature), "bad_signature");
  EXPECT_EQ(deny_reason_status(DenyReason::kMalformed), Status::kUnauthenticated);
  EXPECT_EQ(deny_reason_status(DenyReason::kUnknownKey), Status::kUnauthenticated);
  EXPECT_EQ(deny_reason_status(DenyReason::kNotYetValid), Status::kTokenExpired);
  EXPECT_EQ(deny_reason_status(DenyReason::kExpired), Status::kTokenExpired);
  EXPECT_EQ(deny_reason_status(DenyReason::kWrongAudience), Status::kPermissionDenied);
  EXPECT_EQ(deny_reason_status(DenyReason::kMissingPermission), Status::kPermissionDenied);
  EXPECT_EQ(deny_reason_status(DenyReason::kRevokedToken), Status::kRevoked);
  EXPECT_EQ(deny_reason_status(DenyReason::kRevokedTenant), Status::kRevoked);
  EXPECT_EQ(deny_reason_status(DenyReason::kWrongLease), Status::kPermissionDenied);
  EXPECT_EQ(deny_reason_status(DenyReason::kNotLeaseOwner), Status::kLeaseNotFound);
  EXPECT_EQ(deny_reason_status(DenyReason::kVramCeiling), Status::kPermissionDenied);
  EXPECT_EQ(deny_reason_status(DenyReason::kLeaseRule), Status::kInvalidArgument);
}

}  // namespace
}  // namespace gpulease::capability
