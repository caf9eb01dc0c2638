// Lease and LeaseBuilder: acquire, query, renew, release, ownership.
#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using client::Lease;
using client::LeaseBuilder;
using client::unwrap;

TEST(ClientLease, AcquireGrantsTheRequestedQuotaAndExpiry) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  const auto before = std::chrono::system_clock::now();
  Lease lease = unwrap(LeaseBuilder(conn).min_vram(32 << 20).lease_secs(30).device(0).acquire());
  EXPECT_NE(lease.lease_id(), 0u);
  EXPECT_EQ(lease.granted_bytes(), 32u << 20);
  EXPECT_GT(lease.expires_at(), before + std::chrono::seconds(25));
  EXPECT_LT(lease.expires_at(), before + std::chrono::seconds(40));
  auto info = unwrap(lease.query());
  EXPECT_EQ(info.lease_id, lease.lease_id());
  EXPECT_EQ(info.state, wire::LeaseState::kActive);
  EXPECT_EQ(info.quota_bytes, 32u << 20);
}

TEST(ClientLease, DestroyingALeaseReleasesIt) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  {
    Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).acquire());
    EXPECT_EQ(unwrap(client::list_leases(conn)).size(), 1u);
  }
  EXPECT_TRUE(unwrap(client::list_leases(conn)).empty());
}

TEST(ClientLease, MovingALeaseMovesOwnership) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  Lease a = unwrap(LeaseBuilder(conn).min_vram(1 << 20).acquire());
  const uint64_t id = a.lease_id();
  Lease b = std::move(a);
  EXPECT_EQ(b.lease_id(), id);
  EXPECT_EQ(unwrap(client::list_leases(conn)).size(), 1u);
  Lease c = unwrap(LeaseBuilder(conn).min_vram(1 << 20).acquire());
  c = std::move(b);  // c's first lease is released
  auto list = unwrap(client::list_leases(conn));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].lease_id, id);
}

TEST(ClientLease, RenewExtendsAndReleaseEndsIt) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(5).acquire());
  const uint64_t before = lease.expires_at_ms();
  ASSERT_TRUE(lease.renew(60).ok());
  EXPECT_GT(lease.expires_at_ms(), before + 50'000);
  ASSERT_TRUE(lease.release().ok());
  auto again = lease.release();  // refused by the library: this Lease released it already
  EXPECT_EQ(again.status(), client::ClientStatus::local(Status::kLeaseExpired));
  auto q = lease.query();
  EXPECT_EQ(q.status(), Status::kLeaseExpired);
}

TEST(ClientLease, DetachLeavesTheLeaseOnTheNodeForAdopt) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  uint64_t id;
  {
    Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).acquire());
    id = lease.detach();
  }
  auto conn2 = connect_client(node.port(), node.token("t1"));
  Lease adopted = Lease::adopt(conn2, id);
  EXPECT_EQ(unwrap(adopted.query()).lease_id, id);
  EXPECT_TRUE(adopted.release().ok());
}

TEST(ClientLease, AcquireFailsClearlyWhenNoDeviceHasRoom) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  auto r = LeaseBuilder(conn).min_vram(1ull << 40).acquire();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), Status::kCapacityExceeded);
  EXPECT_NE(r.error().message().find("LEASE_ACQUIRE"), std::string::npos);
}

TEST(ClientLease, ReleaseOnDisconnectEndsTheLeaseWithTheConnection) {
  TestNode node(client_test_config());
  auto observer = connect_client(node.port(), node.token("t1"));
  {
    auto conn = connect_client(node.port(), node.token("t1"));
    Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).release_on_disconnect().acquire());
    lease.detach();
    conn.close();
  }
  for (int i = 0; i < 500 && !unwrap(client::list_leases(observer)).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(unwrap(client::list_leases(observer)).empty());
}

TEST(ClientLease, TheLeasesOfAnotherTenantAreNotVisible) {
  TestNode node(client_test_config());
  auto a = connect_client(node.port(), node.token("alice"));
  auto b = connect_client(node.port(), node.token("bob"));
  Lease lease = unwrap(LeaseBuilder(a).min_vram(1 << 20).acquire());
  EXPECT_TRUE(unwrap(client::list_leases(b)).empty());
  Lease stolen = Lease::adopt(b, lease.lease_id());
  // Another tenant's lease is answered as one that does not exist.
  EXPECT_EQ(stolen.release().status(), Status::kLeaseNotFound);
}

}  // namespace
}  // namespace gpulease::testing
