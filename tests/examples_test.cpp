// The four recipe programs, end to end, each against a fresh gpuleased
// process on the sim backend (on a GPU host the same programs run unchanged
// against a node started with --backend cuda).
#include "client_process_util.hpp"

namespace gpulease::testing {
namespace {

void expect_ok(const ProcessResult& r, const std::string& what) {
  EXPECT_EQ(r.status, 0) << what << " failed\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
  EXPECT_NE(r.out.find(": OK"), std::string::npos) << r.out;
}

TEST(Examples, Recipe30ScalesThenBiasesInOneSession) {
  NodeProcess node;
  auto r = node.run(bin("recipe30_scale_bias"));
  expect_ok(r, "recipe 30");
  EXPECT_NE(r.out.find("results[0] = 10, results[1] = 12, results[100] = 210"), std::string::npos)
      << r.out;
}

TEST(Examples, Recipe34FinishesAllSegmentsDespiteAKilledLease) {
  NodeProcess node;
  auto r = node.run(bin("recipe34_pipeline"));
  expect_ok(r, "recipe 34");
  EXPECT_NE(r.out.find("behind the coordinator's back: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("retried on a fresh lease"), std::string::npos) << r.out;
}

TEST(Examples, Recipe53ServesRequestsOnScopedLeasesAndRefusesADuplicate) {
  NodeProcess node;
  auto r = node.run(bin("recipe53_gateway"));
  expect_ok(r, "recipe 53");
  EXPECT_NE(r.out.find("refused by the idempotency store"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("timings:"), std::string::npos) << r.out;
}

TEST(Examples, Recipe5ServesThreadsAndReacquiresExpiredLeases) {
  NodeProcess node;
  auto r = node.run(bin("recipe5_inference") + " --lease-secs 2");
  expect_ok(r, "recipe 5");
  EXPECT_NE(r.out.find("after expiry: LEASE_EXPIRED"), std::string::npos) << r.out;
}

TEST(Examples, ExamplesTakeNodeAndTokenFlagsToo) {
  NodeProcess node;
  auto r = node.run("env -u GPULEASE_NODE -u GPULEASE_TOKEN " + bin("recipe30_scale_bias") +
                    " --node " + node.address() + " --token " + node.token("tenant-b"));
  expect_ok(r, "recipe 30 with flags");
}

TEST(Examples, AWrongTokenFailsWithAClearMessageAndNonZeroStatus) {
  NodeProcess node;
  NodeProcess other("other-node");
  auto r =
      node.run("env -u GPULEASE_TOKEN " + bin("recipe30_scale_bias") + " --token " + other.token());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace gpulease::testing
