// RenewalManager: keeps registered leases alive; gives up on lost ones.
#include "client_test_util.hpp"

namespace gpulease::testing {
namespace {

using client::Lease;
using client::LeaseBuilder;
using client::RenewalManager;
using client::RenewalPolicy;
using client::unwrap;

TEST(ClientRenewal, KeepsALeaseAliveWellPastItsTtl) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(3).acquire());
  RenewalManager renewals;
  RenewalPolicy p;
  p.renew_when_remaining = 0.8;  // renew about every 0.6 s: much slack on a busy machine
  renewals.add(lease, p);
  EXPECT_EQ(renewals.size(), 1u);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  auto info = lease.query();
  ASSERT_TRUE(info.ok()) << client::describe(info.error());
  EXPECT_EQ(info->state, wire::LeaseState::kActive);
  EXPECT_GE(renewals.renewals(), 2u);
}

TEST(ClientRenewal, AReleasedLeaseDropsOut) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  RenewalManager renewals;
  {
    Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).acquire());
    renewals.add(lease);
  }
  for (int i = 0; i < 300 && renewals.size() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(renewals.size(), 0u);
}

TEST(ClientRenewal, ALeaseEndedBehindItsBackIsReportedAndUnregistered) {
  TestNode node(client_test_config());
  auto conn = connect_client(node.port(), node.token("t1"));
  std::mutex mu;
  std::vector<std::pair<uint64_t, client::ClientStatus>> failed;
  RenewalManager renewals([&](uint64_t id, const client::Error& e) {
    std::lock_guard lock(mu);
    failed.emplace_back(id, e.status());
  });
  Lease lease = unwrap(LeaseBuilder(conn).min_vram(1 << 20).lease_secs(2).acquire());
  // Another client releases it.
  auto other = connect_client(node.port(), node.token("t1"));
  Lease alias = Lease::adopt(other, lease.lease_id());
  ASSERT_TRUE(alias.release().ok());
  renewals.add(lease);
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (!failed.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].first, lease.lease_id());
  EXPECT_EQ(failed[0].second, Status::kLeaseExpired);
  EXPECT_EQ(renewals.size(), 0u);
}

}  // namespace
}  // namespace gpulease::testing
