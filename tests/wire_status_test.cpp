// Status codes: numbers are protocol, names round trip, retryability is as
// documented in docs/PROTOCOL.md.
#include "gpulease/wire/status.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace gpulease::wire {
namespace {

struct Expected {
  uint16_t number;
  const char* name;
  bool retryable;
};

// The table of docs/PROTOCOL.md, "Status codes".
constexpr Expected kTable[] = {
    {0, "OK", false},
    {1, "BAD_FRAME", false},
    {2, "UNSUPPORTED_VERSION", false},
    {3, "UNKNOWN_OPCODE", false},
    {4, "CHECKSUM_MISMATCH", true},
    {5, "FRAME_TOO_LARGE", false},
    {6, "UNAUTHENTICATED", false},
    {7, "PERMISSION_DENIED", false},
    {8, "TOKEN_EXPIRED", true},
    {9, "REVOKED", false},
    {10, "LEASE_NOT_FOUND", false},
    {11, "LEASE_EXPIRED", true},
    {12, "CAPACITY_EXCEEDED", true},
    {13, "ALLOC_FAILED", true},
    {14, "INVALID_HANDLE", false},
    {15, "OUT_OF_RANGE", false},
    {16, "LOAD_FAILED", false},
    {17, "LAUNCH_FAILED", false},
    {18, "SYNC_FAILED", false},
    {19, "LEASE_FAULTED", true},
    {20, "BUSY", true},
    {21, "INTERNAL", true},
    {22, "INVALID_ARGUMENT", false},
    {23, "UNSUPPORTED", false},
    {24, "IDEMPOTENCY_CONFLICT", false},
};

TEST(WireStatus, EveryStatusHasTheNumberAndNameTheSpecGives) {
  ASSERT_EQ(std::size(kTable), size_t{kMaxStatusValue} + 1);
  for (const Expected& e : kTable) {
    EXPECT_EQ(status_name(static_cast<Status>(e.number)), e.name);
  }
}

TEST(WireStatus, EveryNameRoundTrips) {
  for (uint16_t v = 0; v <= kMaxStatusValue; ++v) {
    auto s = static_cast<Status>(v);
    auto back = status_from_name(status_name(s));
    ASSERT_TRUE(back.has_value()) << v;
    EXPECT_EQ(*back, s);
  }
}

TEST(WireStatus, NamesAreUniqueAndUpperSnakeCase) {
  std::set<std::string> seen;
  for (uint16_t v = 0; v <= kMaxStatusValue; ++v) {
    std::string n(status_name(static_cast<Status>(v)));
    EXPECT_TRUE(seen.insert(n).second) << n;
    for (char c : n) EXPECT_TRUE((c >= 'A' && c <= 'Z') || c == '_') << n;
  }
}

TEST(WireStatus, UnknownNamesAndNumbersAreNotStatuses) {
  EXPECT_FALSE(status_from_name("").has_value());
  EXPECT_FALSE(status_from_name("ok").has_value());
  EXPECT_FALSE(status_from_name("NOT_A_STATUS").has_value());
  EXPECT_FALSE(is_known_status(kMaxStatusValue + 1));
  EXPECT_FALSE(is_known_status(0xffff));
  EXPECT_EQ(status_name(static_cast<Status>(kMaxStatusValue + 1)), "UNKNOWN_STATUS");
  EXPECT_FALSE(status_retryable(static_cast<Status>(0xffff)));
}

TEST(WireStatus, RetryabilityMatchesTheSpecTable) {
  for (const Expected& e : kTable) {
    EXPECT_EQ(status_retryable(static_cast<Status>(e.number)), e.retryable) << e.name;
  }
}

TEST(WireStatus, RecipeNamesAllExist) {
  for (const char* n : {"LEASE_EXPIRED", "ALLOC_FAILED", "INVALID_HANDLE", "LOAD_FAILED",
                        "LAUNCH_FAILED", "SYNC_FAILED"}) {
    EXPECT_TRUE(status_from_name(n).has_value()) << n;
  }
}

}  // namespace
}  // namespace gpulease::wire
