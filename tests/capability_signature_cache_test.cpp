#include "gpulease/capability/signature_cache.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace gpulease::capability {
namespace {

wire::Bytes token(uint32_t n, size_t len = 160) {
  wire::Bytes b(len, std::byte{0x5a});
  wire::store_le32(b.data(), n);
  return b;
}

TEST(SignatureCache, RemembersInsertedBytesAndCountsHitsAndMisses) {
  SignatureCache cache(16);
  const wire::Bytes t = token(1);
  EXPECT_FALSE(cache.contains(t));
  cache.insert(t);
  EXPECT_TRUE(cache.contains(t));
  EXPECT_TRUE(cache.contains(t));
  const auto s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.entries, 1u);
}

TEST(SignatureCache, HoldsAnswersWithoutCountingOrReordering) {
  SignatureCache cache(1, 1);
  const wire::Bytes a = token(1), b = token(2);
  EXPECT_FALSE(cache.holds(a));
  cache.insert(a);
  EXPECT_TRUE(cache.holds(a));
  EXPECT_FALSE(cache.holds(b));
  auto s = cache.stats();
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(s.misses, 0u);
  // Same hash slot, other bytes: not held.
  wire::Bytes longer = a;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(cache.holds(longer));
}

TEST(SignatureCache, DifferentBytesNeverHit) {
  SignatureCache cache(16);
  wire::Bytes t = token(1);
  cache.insert(t);
  for (size_t i = 0; i < t.size() * 8; ++i) {
    wire::Bytes u = t;
    u[i / 8] ^= std::byte(1u << (i % 8));
    EXPECT_FALSE(cache.contains(u)) << "bit " << i;
  }
  EXPECT_FALSE(cache.contains({t.data(), t.size() - 1}));
}

TEST(SignatureCache, StaysWithinCapacityAndEvictsLeastRecentlyUsed) {
  SignatureCache cache(4, 1);
  for (uint32_t i = 0; i < 4; ++i) cache.insert(token(i));
  EXPECT_TRUE(cache.contains(token(0)));  // 0 is now most recent; 1 is least
  cache.insert(token(4));
  EXPECT_FALSE(cache.contains(token(1)));
  EXPECT_TRUE(cache.contains(token(0)));
  EXPECT_TRUE(cache.contains(token(4)));
  for (uint32_t i = 5; i < 1000; ++i) cache.insert(token(i));
  EXPECT_EQ(cache.stats().entries, 4u);
  EXPECT_GT(cache.stats().evictions, 0u);
}

TEST(SignatureCache, ShardedCacheIsBoundedToo) {
  SignatureCache cache(64, 16);
  for (uint32_t i = 0; i < 10000; ++i) cache.insert(token(i));
  EXPECT_LE(cache.stats().entries, 64u);
}

TEST(SignatureCache, ZeroCapacityStoresNothing) {
  SignatureCache cache(0);
  cache.insert(token(1));
  EXPECT_FALSE(cache.contains(token(1)));
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(SignatureCache, ClearForgetsEverything) {
  SignatureCache cache(16);
  cache.insert(token(1));
  cache.clear();
  EXPECT_FALSE(cache.contains(token(1)));
}

TEST(SignatureCache, ConcurrentLookupsAndInsertsAreSafe) {
  SignatureCache cache(256, 8);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < 20000; ++i) {
        const wire::Bytes b = token((i * 7 + static_cast<uint32_t>(t)) % 512);
        if (!cache.contains(b)) cache.insert(b);
        // A token never inserted must never hit.
        if (cache.contains(token(100000 + i))) wrong.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.stats().entries, 256u);
}

}  // namespace
}  // namespace gpulease::capability
