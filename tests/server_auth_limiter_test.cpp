// The per-address limit on failed token verifications (net/auth_limiter.hpp),
// with an injected clock. Its effect on a real node is in
// server_hostile_test (AnAddressThatFailsVerificationGetsNoMoreSignatureChecks).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "auth_limiter.hpp"

namespace gpulease::server {
namespace {

using namespace std::chrono_literals;
using Clock = AuthLimiter::Clock;

TEST(AuthLimiter, AnAddressSpendsItsBurstThenOneFailureASecond) {
  AuthLimiter lim(2, 4);
  const auto t0 = Clock::now();
  const std::string a = "10.0.0.1";
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(lim.allows(a, t0)) << i;
    lim.failed(a, t0);
  }
  EXPECT_FALSE(lim.allows(a, t0));
  // Refilled at 2 a second: one failure allowed after half a second.
  EXPECT_FALSE(lim.allows(a, t0 + 400ms));
  EXPECT_TRUE(lim.allows(a, t0 + 500ms));
  lim.failed(a, t0 + 500ms);
  EXPECT_FALSE(lim.allows(a, t0 + 500ms));
  // Other addresses are not affected.
  EXPECT_TRUE(lim.allows("10.0.0.2", t0));
}

TEST(AuthLimiter, FailuresAlreadyInFlightAreOwedAsDebt) {
  AuthLimiter lim(1, 2);
  const auto t0 = Clock::now();
  // Six checks were already running when the bucket emptied.
  for (int i = 0; i < 6; ++i) lim.failed("h", t0);
  // Down to -2 (the floor is -burst): three seconds until one is allowed.
  EXPECT_FALSE(lim.allows("h", t0 + 2900ms));
  EXPECT_TRUE(lim.allows("h", t0 + 3100ms));
}

TEST(AuthLimiter, AFullBucketIsForgottenAndTheTableIsBounded) {
  AuthLimiter lim(10, 1, /*max_addresses=*/3);
  const auto t0 = Clock::now();
  for (const char* a : {"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"}) lim.failed(a, t0);
  EXPECT_EQ(lim.tracked(), 3u);
  // The least recent failure made room: 1.1.1.1 starts again from a full bucket.
  EXPECT_TRUE(lim.allows("1.1.1.1", t0));
  EXPECT_FALSE(lim.allows("1.1.1.4", t0));
  // Refilled to the burst: no longer tracked.
  EXPECT_TRUE(lim.allows("1.1.1.4", t0 + 1s));
  EXPECT_EQ(lim.tracked(), 2u);
}

TEST(AuthLimiter, ZeroRateDisablesIt) {
  AuthLimiter lim(0, 1);
  for (int i = 0; i < 10; ++i) lim.failed("h");
  EXPECT_TRUE(lim.allows("h"));
  EXPECT_EQ(lim.tracked(), 0u);
}

TEST(AuthLimiter, KeysAreIPv4AddressesAndIPv6Slash64Prefixes) {
  EXPECT_EQ(AuthLimiter::key_of("127.0.0.2"), "127.0.0.2");
  EXPECT_EQ(AuthLimiter::key_of("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(AuthLimiter::key_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(AuthLimiter::key_of("2001:db8:1:2::ffff"), AuthLimiter::key_of("2001:db8:1:2::1"));
  EXPECT_NE(AuthLimiter::key_of("2001:db8:1:3::1"), AuthLimiter::key_of("2001:db8:1:2::1"));
  EXPECT_EQ(AuthLimiter::key_of("?"), "?");
}

}  // namespace
}  // namespace gpulease::server
