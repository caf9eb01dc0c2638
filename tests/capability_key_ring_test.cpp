#include "gpulease/capability/key_ring.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "capability_test_util.hpp"

namespace gpulease::capability {
namespace {

TEST(KeyRing, FindsAddedKeysByDerivedId) {
  KeyRing ring;
  const SecretKey a = testing::key_a();
  EXPECT_FALSE(ring.find(a.key_id()));
  EXPECT_EQ(ring.add(a.public_key()), a.key_id());
  EXPECT_EQ(ring.find(a.key_id()), a.public_key());
  EXPECT_EQ(ring.size(), 1u);
}

TEST(KeyRing, RotatesWithoutLosingTheOtherKey) {
  KeyRing ring;
  const SecretKey a = testing::key_a(), b = testing::key_b();
  ring.add(a.public_key());
  ring.add(b.public_key());
  EXPECT_TRUE(ring.remove(a.key_id()));
  EXPECT_FALSE(ring.remove(a.key_id()));
  EXPECT_FALSE(ring.find(a.key_id()));
  EXPECT_TRUE(ring.find(b.key_id()));
}

TEST(KeyRing, ReplaceAllSwapsTheWholeSet) {
  KeyRing ring;
  const SecretKey a = testing::key_a(), b = testing::key_b();
  ring.add(a.public_key());
  ring.replace_all({b.public_key()});
  EXPECT_EQ(ring.key_ids(), std::vector<uint64_t>{b.key_id()});
}

TEST(KeyRing, ConcurrentReadsAndRotationAreSafe) {
  KeyRing ring;
  const SecretKey a = testing::key_a(), b = testing::key_b();
  ring.add(a.public_key());
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        auto k = ring.find(a.key_id());
        ASSERT_TRUE(k);
        (void)ring.find(b.key_id());
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    ring.add(b.public_key());
    ring.remove(b.key_id());
  }
  for (auto& t : readers) t.join();
}

}  // namespace
}  // namespace gpulease::capability
