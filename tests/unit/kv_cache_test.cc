// Block allocation and the block-table to slot arithmetic.
#include "worker/kv_cache.h"

#include <gtest/gtest.h>

#include <set>

namespace lattice {
namespace {

TEST(KvCache, NumBlocksAndSlots) {
  EXPECT_EQ(NumBlocksFor(0, 16), 0);
  EXPECT_EQ(NumBlocksFor(1, 16), 1);
  EXPECT_EQ(NumBlocksFor(16, 16), 1);
  EXPECT_EQ(NumBlocksFor(17, 16), 2);
  const std::vector<int32_t> table = {5, 2, 9};
  EXPECT_EQ(SlotFor(table, 16, 0), 80);
  EXPECT_EQ(SlotFor(table, 16, 15), 95);
  EXPECT_EQ(SlotFor(table, 16, 16), 32);
  EXPECT_EQ(SlotFor(table, 16, 40), 9 * 16 + 8);
}

TEST(KvCache, AllocatorHandsOutEachBlockOnce) {
  BlockAllocator allocator(7);
  std::set<int32_t> seen;
  for (int i = 0; i < 7; ++i) {
    const std::optional<int32_t> b = allocator.Allocate();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(seen.insert(*b).second);
    EXPECT_GE(*b, 0);
    EXPECT_LT(*b, 7);
  }
  EXPECT_FALSE(allocator.Allocate().has_value());
  EXPECT_EQ(allocator.num_free(), 0);
  const std::vector<int32_t> some = {3, 1};
  allocator.Free(some);
  EXPECT_EQ(allocator.num_free(), 2);
  // Freed in reverse so the sequence's first block comes back first.
  EXPECT_EQ(allocator.Allocate(), 3);
  EXPECT_EQ(allocator.Allocate(), 1);
}

TEST(KvCacheDeathTest, DoubleFreeAborts) {
  BlockAllocator allocator(2);
  const int32_t b = *allocator.Allocate();
  allocator.Free(b);
  EXPECT_DEATH(allocator.Free(b), "double free");
}

TEST(KvCache, ShapesFollowTheConfig) {
  const KvCacheShape shape = {.num_layers = 3, .num_kv_heads = 2, .head_dim = 8};
  KvCache cache(shape, {.num_blocks = 5, .block_size = 4});
  EXPECT_EQ(cache.k(2).shape(), (Shape{5, 4, 2, 8}));
  EXPECT_EQ(cache.v(0).shape(), (Shape{5, 4, 2, 8}));
  EXPECT_EQ(KvCache::BytesPerBlock(shape, 4), 2u * 3 * 4 * 2 * 8 * 4);
}

}  // namespace
}  // namespace lattice
