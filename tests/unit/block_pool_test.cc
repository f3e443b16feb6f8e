// BlockPool: hashing, allocation, prefix sharing, LRU eviction of cached blocks, stats,
// both lookup families (hash-trusting and verified), and a randomized check of every
// operation against a reference model.
#include "coordinator/block_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace lattice {
namespace {

// Which pair of lookup/cache calls a test drives.
enum class Family { kHashed, kVerified };

std::string FamilyName(const testing::TestParamInfo<Family>& info) {
  return info.param == Family::kHashed ? "Hashed" : "Verified";
}
void PrintTo(Family family, std::ostream* os) {
  *os << (family == Family::kHashed ? "Hashed" : "Verified");
}

// Calls one family's lookup and cache functions the way a scheduler does.
class Driver {
 public:
  Driver(BlockPool& pool, Family family) : pool_(pool), family_(family) {}

  std::vector<int32_t> Lookup(std::span<const int32_t> tokens, int32_t max_blocks) {
    if (family_ == Family::kHashed)
      return pool_.GetComputedBlocks(pool_.HashBlocks(tokens), max_blocks);
    return pool_.GetComputedBlocksVerified(tokens, max_blocks);
  }

  // Caches entries [from, to) of a block table that holds `tokens`.
  void Cache(std::span<const int32_t> table, std::span<const int32_t> tokens, int32_t from,
             int32_t to) {
    const int32_t bs = pool_.block_size();
    const std::vector<BlockHash> hashes = pool_.HashBlocks(tokens);
    for (int32_t i = from; i < to; ++i) {
      if (family_ == Family::kHashed) {
        pool_.CacheFullBlock(table[i], hashes[i]);
      } else {
        pool_.CacheFullBlockVerified(table[i], i == 0 ? BlockPool::kNoParent : table[i - 1],
                                     tokens.subspan(static_cast<size_t>(i) * bs, bs));
      }
    }
  }

 private:
  BlockPool& pool_;
  Family family_;
};

// Tokens made of blocks named by small integers: block k of size bs is k*100 + [0, bs).
// `extra` trailing tokens form a partial block.
std::vector<int32_t> Tokens(std::initializer_list<int> blocks, int32_t bs, int extra = 0) {
  std::vector<int32_t> tokens;
  for (int k : blocks) {
    for (int32_t j = 0; j < bs; ++j) tokens.push_back(k * 100 + j);
  }
  for (int j = 0; j < extra; ++j) tokens.push_back(9900 + j);
  return tokens;
}

struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> table;
  int32_t num_hit = 0;
};

// Admits a sequence: takes its cached prefix (full blocks, at most `max_blocks`),
// allocates the rest and caches every full block it computed.
Seq Admit(BlockPool& pool, Driver& driver, std::vector<int32_t> tokens,
          int32_t max_blocks = 1 << 30) {
  const int32_t bs = pool.block_size();
  Seq seq;
  seq.tokens = std::move(tokens);
  seq.table = driver.Lookup(seq.tokens, max_blocks);
  seq.num_hit = static_cast<int32_t>(seq.table.size());
  const int32_t needed = static_cast<int32_t>((seq.tokens.size() + bs - 1) / bs) - seq.num_hit;
  std::optional<std::vector<int32_t>> fresh = pool.Allocate(needed);
  EXPECT_TRUE(fresh.has_value());
  if (fresh) seq.table.insert(seq.table.end(), fresh->begin(), fresh->end());
  driver.Cache(seq.table, seq.tokens, seq.num_hit, static_cast<int32_t>(seq.tokens.size()) / bs);
  return seq;
}

void ExpectStatsEqual(const BlockPoolStats& a, const BlockPoolStats& b) {
  EXPECT_EQ(a.num_blocks, b.num_blocks);
  EXPECT_EQ(a.num_free, b.num_free);
  EXPECT_EQ(a.num_cached, b.num_cached);
  EXPECT_EQ(a.prefix_queries, b.prefix_queries);
  EXPECT_EQ(a.prefix_hits, b.prefix_hits);
}

// ---------------------------------------------------------------------------------------
// Hashing.

TEST(BlockPoolHash, IsDeterministicAndChained) {
  const std::vector<int32_t> a = {1, 2, 3, 4};
  const std::vector<int32_t> b = {5, 6, 7, 8};
  // Pinned values: the hash must not depend on the process, the run or the build (a
  // router may compare hashes computed elsewhere).
  EXPECT_EQ(BlockPool::HashBlock(0, a), 0xf08a87f66d9b65b5ULL);
  EXPECT_EQ(BlockPool::HashBlock(0xf08a87f66d9b65b5ULL, b), 0x3468a73edf29ed7fULL);

  const BlockHash ha = BlockPool::HashBlock(0, a);
  EXPECT_EQ(BlockPool::HashBlock(0, a), ha);
  EXPECT_NE(BlockPool::HashBlock(0, b), ha);
  // The same tokens after a different parent hash differently.
  EXPECT_NE(BlockPool::HashBlock(ha, b), BlockPool::HashBlock(0, b));
  EXPECT_NE(BlockPool::HashBlock(ha, b), BlockPool::HashBlock(BlockPool::HashBlock(0, b), b));
  // Order, sign and zero tokens matter.
  EXPECT_NE(BlockPool::HashBlock(0, std::vector<int32_t>{2, 1, 3, 4}), ha);
  EXPECT_NE(BlockPool::HashBlock(0, std::vector<int32_t>{-1, 2, 3, 4}), BlockPool::HashBlock(0, a));
  EXPECT_NE(BlockPool::HashBlock(0, std::vector<int32_t>{0, 0}),
            BlockPool::HashBlock(0, std::vector<int32_t>{0}));

  BlockPool pool(8, 4);
  std::vector<int32_t> tokens = a;
  tokens.insert(tokens.end(), b.begin(), b.end());
  const std::vector<BlockHash> hashes = pool.HashBlocks(tokens);
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_EQ(hashes[0], ha);
  EXPECT_EQ(hashes[1], BlockPool::HashBlock(ha, b));
}

TEST(BlockPoolHash, PartialTrailingBlocksAreNotHashed) {
  BlockPool pool(8, 4);
  const std::vector<int32_t> tokens = Tokens({1, 2, 3}, 4);
  EXPECT_EQ(pool.HashBlocks(std::span(tokens).first(0)).size(), 0u);
  EXPECT_EQ(pool.HashBlocks(std::span(tokens).first(3)).size(), 0u);
  EXPECT_EQ(pool.HashBlocks(std::span(tokens).first(4)).size(), 1u);
  EXPECT_EQ(pool.HashBlocks(std::span(tokens).first(11)).size(), 2u);
  EXPECT_EQ(pool.HashBlocks(tokens).size(), 3u);
  // A prefix's hashes are a prefix of the longer sequence's hashes.
  const std::vector<BlockHash> all = pool.HashBlocks(tokens);
  const std::vector<BlockHash> two = pool.HashBlocks(std::span(tokens).first(9));
  EXPECT_TRUE(std::equal(two.begin(), two.end(), all.begin()));
}

// ---------------------------------------------------------------------------------------
// Allocation.

TEST(BlockPool, AllocatesEachBlockOnceNeverTheNullBlock) {
  BlockPool pool(9, 4);
  EXPECT_EQ(pool.num_free_blocks(), 8);
  EXPECT_EQ(pool.ref_count(0), 0);
  std::set<int32_t> seen;
  for (int32_t n : {3, 1, 4}) {
    std::optional<std::vector<int32_t>> blocks = pool.Allocate(n);
    ASSERT_TRUE(blocks.has_value());
    ASSERT_EQ(static_cast<int32_t>(blocks->size()), n);
    for (int32_t b : *blocks) {
      EXPECT_GT(b, 0);
      EXPECT_LT(b, 9);
      EXPECT_TRUE(seen.insert(b).second) << "block " << b << " handed out twice";
      EXPECT_EQ(pool.ref_count(b), 1);
    }
  }
  EXPECT_EQ(pool.num_free_blocks(), 0);
  EXPECT_EQ(pool.num_used_blocks(), 8);
  EXPECT_FALSE(pool.Allocate(1).has_value());
  EXPECT_EQ(pool.Allocate(0), std::vector<int32_t>{});
  pool.CheckInvariants();
  // Freed blocks come back; the null block (padding) is skipped by Free.
  const std::vector<int32_t> some = {0, 2, 0, 5};
  pool.Free(some);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  std::optional<std::vector<int32_t>> again = pool.Allocate(2);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(std::set<int32_t>(again->begin(), again->end()), (std::set<int32_t>{2, 5}));
  pool.CheckInvariants();
}

TEST(BlockPoolDeathTest, MisuseAborts) {
  BlockPool pool(4, 2);
  const std::vector<int32_t> blocks = *pool.Allocate(1);
  pool.Free(blocks);
  EXPECT_DEATH(pool.Free(blocks), "double free");
  EXPECT_DEATH(pool.CacheFullBlock(blocks[0], 7), "caching free block");
  const std::vector<int32_t> two = *pool.Allocate(2);
  pool.CacheFullBlock(two[0], 7);
  EXPECT_DEATH(pool.CacheFullBlock(two[0], 8), "cached twice");
  const std::vector<int32_t> tokens = {1, 2, 3};
  EXPECT_DEATH(pool.CacheFullBlockVerified(two[1], BlockPool::kNoParent, tokens), "block size");
  EXPECT_DEATH(pool.Free(std::vector<int32_t>{4}), "outside");
}

// ---------------------------------------------------------------------------------------
// Prefix caching, for both families.

class BlockPoolFamilyTest : public testing::TestWithParam<Family> {};

TEST_P(BlockPoolFamilyTest, AllocateTooManyReturnsNulloptAndChangesNothing) {
  BlockPool pool(7, 2);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2}, 2));
  pool.Free(a.table);                           // two evictable cached blocks
  Seq b = Admit(pool, driver, Tokens({3}, 2));  // one in use
  const BlockPoolStats before = pool.stats();
  EXPECT_EQ(before.num_free, 5);
  EXPECT_EQ(before.num_cached, 3);
  EXPECT_FALSE(pool.Allocate(6).has_value());
  ExpectStatsEqual(pool.stats(), before);
  EXPECT_EQ(pool.ref_count(b.table[0]), 1);
  // Nothing was evicted: the freed sequence still hits in full.
  EXPECT_EQ(driver.Lookup(a.tokens, 2), a.table);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, SharesACommonPrefix) {
  BlockPool pool(20, 4);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2, 3, 4}, 4, 2));
  Seq b = Admit(pool, driver, Tokens({1, 2, 3, 5}, 4, 1));
  EXPECT_EQ(b.num_hit, 3);
  ASSERT_EQ(b.table.size(), 5u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.table[i], a.table[i]);
    EXPECT_EQ(pool.ref_count(a.table[i]), 2);
  }
  for (int i = 3; i < 5; ++i) {
    EXPECT_EQ(pool.ref_count(a.table[i]), 1);
    EXPECT_EQ(pool.ref_count(b.table[i]), 1);
    EXPECT_EQ(std::count(a.table.begin(), a.table.end(), b.table[i]), 0);
  }
  EXPECT_EQ(pool.num_used_blocks(), 7);
  EXPECT_EQ(pool.stats().num_cached, 5);  // 1, 2, 3, 4 and 5
  pool.Free(a.table);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pool.ref_count(b.table[i]), 1);
  EXPECT_EQ(pool.num_used_blocks(), 5);
  pool.Free(b.table);
  EXPECT_EQ(pool.num_used_blocks(), 0);
  EXPECT_EQ(pool.num_free_blocks(), 19);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, FreedCachedBlocksStayFindableUntilEvicted) {
  BlockPool pool(6, 2);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2}, 2, 1));  // 2 cached + 1 partial
  pool.Free(a.table);
  EXPECT_EQ(pool.num_free_blocks(), 5);
  EXPECT_EQ(pool.stats().num_cached, 2);
  // A hit takes the evictable blocks back out of the free queue.
  std::vector<int32_t> hit = driver.Lookup(a.tokens, 2);
  EXPECT_EQ(hit, (std::vector<int32_t>{a.table[0], a.table[1]}));
  EXPECT_EQ(pool.num_free_blocks(), 3);
  EXPECT_EQ(pool.ref_count(hit[0]), 1);
  // With them in use, allocating everything else evicts nothing.
  std::optional<std::vector<int32_t>> rest = pool.Allocate(3);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(pool.stats().num_cached, 2);
  EXPECT_FALSE(pool.Allocate(1).has_value());
  pool.Free(*rest);
  pool.Free(hit);
  pool.CheckInvariants();
  // Allocating every free block evicts them: their hashes are gone.
  std::optional<std::vector<int32_t>> all = pool.Allocate(5);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(pool.stats().num_cached, 0);
  pool.Free(*all);
  EXPECT_TRUE(driver.Lookup(a.tokens, 2).empty());
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, EvictsLeastRecentlyFreedFirst) {
  BlockPool pool(5, 2);  // four usable blocks
  Driver driver(pool, GetParam());
  std::vector<Seq> seqs;
  for (int k : {1, 2, 3, 4}) seqs.push_back(Admit(pool, driver, Tokens({k}, 2)));
  for (const Seq& s : seqs) pool.Free(s.table);  // freed in order 1, 2, 3, 4
  EXPECT_EQ(pool.stats().num_cached, 4);
  EXPECT_EQ(pool.num_free_blocks(), 4);
  // The full pool must evict: the least recently freed goes first.
  std::optional<std::vector<int32_t>> one = pool.Allocate(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(*one, seqs[0].table);
  EXPECT_EQ(pool.stats().num_cached, 3);
  EXPECT_TRUE(driver.Lookup(seqs[0].tokens, 1).empty());
  // Touching 2 again makes it the most recently freed: 3 goes next, then 4, then 2.
  EXPECT_EQ(driver.Lookup(seqs[1].tokens, 1), seqs[1].table);
  pool.Free(seqs[1].table);
  EXPECT_EQ(*pool.Allocate(1), seqs[2].table);
  EXPECT_EQ(*pool.Allocate(1), seqs[3].table);
  EXPECT_EQ(pool.stats().num_cached, 1);
  EXPECT_EQ(driver.Lookup(seqs[1].tokens, 1), seqs[1].table);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, FreeInReverseEvictsTheTailFirst) {
  BlockPool pool(4, 2);  // three usable blocks
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2, 3}, 2));
  pool.Free(a.table);
  EXPECT_EQ(*pool.Allocate(1), std::vector<int32_t>{a.table[2]});
  // The head is still cached; the lookup stops at the evicted tail.
  EXPECT_EQ(driver.Lookup(a.tokens, 3), (std::vector<int32_t>{a.table[0], a.table[1]}));
  pool.Free(std::vector<int32_t>{a.table[0], a.table[1]});
  EXPECT_EQ(*pool.Allocate(1), std::vector<int32_t>{a.table[1]});
  EXPECT_EQ(*pool.Allocate(1), std::vector<int32_t>{a.table[0]});
  EXPECT_EQ(pool.stats().num_cached, 0);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, PlainFreedBlocksAreReusedBeforeCachedOnes) {
  BlockPool pool(5, 2);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1}, 2, 1));                // one cached block, one partial
  std::optional<std::vector<int32_t>> other = pool.Allocate(2);  // the rest, uncached
  ASSERT_TRUE(other.has_value());
  pool.Free(a.table);
  pool.Free(*other);  // freed after a's cached block, but holds nothing
  std::optional<std::vector<int32_t>> three = pool.Allocate(3);
  ASSERT_TRUE(three.has_value());
  EXPECT_EQ(std::count(three->begin(), three->end(), a.table[0]), 0);
  EXPECT_EQ(pool.stats().num_cached, 1);
  EXPECT_EQ(driver.Lookup(a.tokens, 1), std::vector<int32_t>{a.table[0]});
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, LookupStopsAtTheFirstMissAndAtMaxBlocks) {
  BlockPool pool(20, 4);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2, 3, 4}, 4));
  auto lookup = [&](const std::vector<int32_t>& tokens, int32_t max_blocks) {
    std::vector<int32_t> hit = driver.Lookup(tokens, max_blocks);
    pool.Free(hit);
    return hit;
  };
  const std::vector<int32_t>& t = a.table;
  EXPECT_EQ(lookup(Tokens({1, 2, 3, 4}, 4), 10), t);
  EXPECT_EQ(lookup(Tokens({1, 2, 3, 4}, 4), 2), (std::vector<int32_t>{t[0], t[1]}));
  EXPECT_TRUE(lookup(Tokens({1, 2, 3, 4}, 4), 0).empty());
  EXPECT_EQ(lookup(Tokens({1, 9, 3, 4}, 4), 10),
            std::vector<int32_t>{t[0]});  // blocks after a miss too
  EXPECT_TRUE(lookup(Tokens({9, 2, 3, 4}, 4), 10).empty());
  EXPECT_EQ(lookup(Tokens({1, 2}, 4, 3), 10),
            (std::vector<int32_t>{t[0], t[1]}));  // partial block ignored
  std::vector<int32_t> changed = Tokens({1, 2, 3}, 4);
  changed.back() += 1;  // one token of the third block differs
  EXPECT_EQ(lookup(changed, 10), (std::vector<int32_t>{t[0], t[1]}));
  EXPECT_EQ(pool.num_used_blocks(), 4);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, StatsAreExact) {
  BlockPool pool(17, 4);
  Driver driver(pool, GetParam());
  BlockPoolStats s = pool.stats();
  EXPECT_EQ(s.num_blocks, 17);
  EXPECT_EQ(s.num_free, 16);
  EXPECT_EQ(s.num_cached, 0);
  // 14 tokens, last token left to compute: 3 blocks looked up, none hit.
  Seq a = Admit(pool, driver, Tokens({1, 2, 3}, 4, 2), 3);
  s = pool.stats();
  EXPECT_EQ(s.prefix_queries, 12);
  EXPECT_EQ(s.prefix_hits, 0);
  EXPECT_EQ(s.num_free, 12);
  EXPECT_EQ(s.num_cached, 3);
  // 13 tokens: 3 blocks looked up, 2 hit; 2 allocated, 1 cached.
  Seq b = Admit(pool, driver, Tokens({1, 2, 5}, 4, 1), 3);
  s = pool.stats();
  EXPECT_EQ(s.prefix_queries, 24);
  EXPECT_EQ(s.prefix_hits, 8);
  EXPECT_EQ(s.num_free, 10);
  EXPECT_EQ(s.num_cached, 4);
  pool.Free(a.table);  // its third block becomes evictable, its fourth plain
  s = pool.stats();
  EXPECT_EQ(s.num_free, 12);
  EXPECT_EQ(s.num_cached, 4);
  pool.Free(b.table);
  EXPECT_EQ(pool.stats().num_free, 16);
  // All three cached blocks of a hit again, and leave the free queue.
  std::vector<int32_t> hit = driver.Lookup(Tokens({1, 2, 3, 4}, 4), 3);
  s = pool.stats();
  EXPECT_EQ(hit.size(), 3u);
  EXPECT_EQ(s.prefix_queries, 36);
  EXPECT_EQ(s.prefix_hits, 20);
  EXPECT_EQ(s.num_free, 13);
  EXPECT_EQ(s.num_cached, 4);
  EXPECT_EQ(pool.num_used_blocks(), 3);
  pool.Free(hit);
  // Evicting: the 12 plain blocks go first, then the least recently freed cached one.
  std::optional<std::vector<int32_t>> many = pool.Allocate(13);
  ASSERT_TRUE(many.has_value());
  s = pool.stats();
  EXPECT_EQ(s.num_free, 3);
  EXPECT_EQ(s.num_cached, 3);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, ResetPrefixCacheDropsOnlyEvictableBlocks) {
  BlockPool pool(12, 2);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2}, 2));
  Seq b = Admit(pool, driver, Tokens({3, 4}, 2));
  pool.Free(a.table);
  EXPECT_EQ(pool.stats().num_cached, 4);
  const int32_t free_before = pool.num_free_blocks();
  pool.ResetPrefixCache();
  EXPECT_EQ(pool.stats().num_cached, 2);
  EXPECT_EQ(pool.num_free_blocks(), free_before);
  EXPECT_TRUE(driver.Lookup(a.tokens, 2).empty());
  std::vector<int32_t> hit = driver.Lookup(b.tokens, 2);
  EXPECT_EQ(hit, b.table);
  EXPECT_EQ(pool.ref_count(b.table[0]), 2);
  pool.Free(hit);
  pool.Free(b.table);
  pool.CheckInvariants();
  // a's blocks hold nothing now; they are handed out before b's evictable ones.
  std::optional<std::vector<int32_t>> blocks = pool.Allocate(9);
  ASSERT_TRUE(blocks.has_value());
  EXPECT_EQ(pool.stats().num_cached, 2);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, DisabledPrefixCachingNeverHits) {
  BlockPool pool(12, 2, /*enable_prefix_caching=*/false);
  Driver driver(pool, GetParam());
  Seq a = Admit(pool, driver, Tokens({1, 2, 3}, 2));
  EXPECT_EQ(pool.stats().num_cached, 0);
  Seq b = Admit(pool, driver, Tokens({1, 2, 3}, 2));
  EXPECT_EQ(b.num_hit, 0);
  pool.Free(a.table);
  pool.Free(b.table);
  EXPECT_TRUE(driver.Lookup(a.tokens, 3).empty());
  const BlockPoolStats s = pool.stats();
  EXPECT_EQ(s.num_cached, 0);
  EXPECT_EQ(s.num_free, 11);
  EXPECT_EQ(s.prefix_queries, 0);
  EXPECT_EQ(s.prefix_hits, 0);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, DuplicateBlocksStayUncached) {
  BlockPool pool(12, 2);
  Driver driver(pool, GetParam());
  // Two sequences computed the same prefix at once: neither hit the other.
  const std::vector<int32_t> tokens = Tokens({1, 2}, 2);
  Seq a{.tokens = tokens, .table = *pool.Allocate(2), .num_hit = 0};
  Seq b{.tokens = tokens, .table = *pool.Allocate(2), .num_hit = 0};
  driver.Cache(a.table, a.tokens, 0, 2);
  driver.Cache(b.table, b.tokens, 0, 2);
  EXPECT_EQ(pool.stats().num_cached, 2);
  EXPECT_EQ(driver.Lookup(tokens, 2), a.table);
  pool.Free(a.table);  // still referenced by the lookup
  pool.Free(b.table);  // b's copies were never cached: plain free blocks
  EXPECT_EQ(pool.stats().num_cached, 2);
  // A third sequence extends the prefix after b's duplicate blocks.
  Seq c = Admit(pool, driver, Tokens({1, 2, 3}, 2));
  EXPECT_EQ(c.num_hit, 2);
  pool.Free(a.table);
  pool.Free(c.table);
  EXPECT_EQ(driver.Lookup(Tokens({1, 2, 3}, 2), 3).size(), 3u);
  pool.CheckInvariants();
}

TEST_P(BlockPoolFamilyTest, ChildOfADuplicateBlockIsCached) {
  BlockPool pool(12, 2);
  Driver driver(pool, GetParam());
  Seq a{.tokens = Tokens({1}, 2), .table = *pool.Allocate(1), .num_hit = 0};
  Seq b{.tokens = Tokens({1, 2}, 2), .table = *pool.Allocate(2), .num_hit = 0};
  driver.Cache(a.table, a.tokens, 0, 1);
  driver.Cache(b.table, b.tokens, 0, 2);  // b's first block duplicates a's
  std::vector<int32_t> hit = driver.Lookup(b.tokens, 2);
  EXPECT_EQ(hit, (std::vector<int32_t>{a.table[0], b.table[1]}));
  pool.CheckInvariants();
}

INSTANTIATE_TEST_SUITE_P(BlockPool, BlockPoolFamilyTest,
                         testing::Values(Family::kHashed, Family::kVerified), FamilyName);

// ---------------------------------------------------------------------------------------
// What each family does about hash collisions.

TEST(BlockPoolHashed, TrustsTheCallersHashes) {
  // The hash-only family cannot tell two prefixes with one hash apart: documented.
  BlockPool pool(4, 2);
  const std::vector<int32_t> block = *pool.Allocate(1);
  pool.CacheFullBlock(block[0], 42);
  const std::vector<BlockHash> hashes = {42};
  EXPECT_EQ(pool.GetComputedBlocks(hashes, 1), block);
}

// Two different first blocks whose (truncated) hashes collide.
std::pair<std::vector<int32_t>, std::vector<int32_t>> CollidingBlocks(int bits) {
  const BlockHash mask = (BlockHash{1} << bits) - 1;
  const std::vector<int32_t> a = {1, 2};
  const BlockHash target = BlockPool::HashBlock(0, a) & mask;
  for (int32_t k = 3;; ++k) {
    std::vector<int32_t> b = {k, 2};
    if ((BlockPool::HashBlock(0, b) & mask) == target) return {a, b};
  }
}

TEST(BlockPoolVerified, CollidingBlocksNeverHit) {
  BlockPool pool(12, 2);
  pool.set_hash_bits_for_testing(8);
  Driver driver(pool, Family::kVerified);
  const auto [x, y] = CollidingBlocks(8);
  ASSERT_NE(x, y);
  Seq a = Admit(pool, driver, x);
  EXPECT_EQ(pool.stats().num_cached, 1);
  Seq b = Admit(pool, driver, y);  // same hash, different tokens: a miss, and not cached
  EXPECT_EQ(b.num_hit, 0);
  EXPECT_NE(b.table, a.table);
  EXPECT_EQ(pool.stats().num_cached, 1);
  EXPECT_TRUE(driver.Lookup(y, 1).empty());
  EXPECT_EQ(driver.Lookup(x, 1), a.table);
  pool.CheckInvariants();
}

TEST(BlockPoolVerified, ChecksTheParentBlockNotJustItsHash) {
  // x and y collide, so x+z and y+z collide too. After x's block is evicted and y is
  // cached, a lookup of y+z finds y, then x+z's block under the next hash with equal
  // tokens (z) and an equal parent hash. Its K/V was computed after x, not y: a miss.
  BlockPool pool(3, 2);  // two usable blocks
  pool.set_hash_bits_for_testing(8);
  Driver driver(pool, Family::kVerified);
  const auto [x, y] = CollidingBlocks(8);
  const std::vector<int32_t> z = {7, 8};
  std::vector<int32_t> xz = x, yz = y;
  xz.insert(xz.end(), z.begin(), z.end());
  yz.insert(yz.end(), z.begin(), z.end());
  Seq a = Admit(pool, driver, xz);
  pool.Free(std::vector<int32_t>{a.table[0]});  // x's block first: evicted first
  pool.Free(std::vector<int32_t>{a.table[1]});
  Seq b = Admit(pool, driver, y);
  EXPECT_EQ(b.table, std::vector<int32_t>{a.table[0]});  // reused, now holding y
  EXPECT_EQ(pool.stats().num_cached, 2);                 // y, and x+z's block
  std::vector<int32_t> hit = driver.Lookup(yz, 2);
  EXPECT_EQ(hit, b.table);
  pool.Free(hit);
  pool.CheckInvariants();
}

TEST(BlockPoolVerified, AnUnreachableEntryGivesWayToALiveOne) {
  BlockPool pool(4, 2);  // three usable blocks
  Driver driver(pool, Family::kVerified);
  const std::vector<int32_t> xz = Tokens({1, 2}, 2);
  Seq a = Admit(pool, driver, xz);
  pool.Free(std::vector<int32_t>{a.table[0]});
  pool.Free(std::vector<int32_t>{a.table[1]});
  std::optional<std::vector<int32_t>> plain = pool.Allocate(1);  // the never-used block
  ASSERT_TRUE(plain.has_value());
  std::optional<std::vector<int32_t>> evict = pool.Allocate(1);  // evicts block x
  EXPECT_EQ(*evict, std::vector<int32_t>{a.table[0]});
  pool.Free(*plain);
  pool.Free(*evict);
  // The block after x is still cached but unreachable; recomputing x and z must
  // replace it, or x+z would never hit again.
  Seq b = Admit(pool, driver, xz);
  EXPECT_EQ(b.num_hit, 0);
  EXPECT_EQ(pool.stats().num_cached, 2);
  pool.Free(b.table);
  std::vector<int32_t> hit = driver.Lookup(xz, 2);
  EXPECT_EQ(hit, b.table);
  pool.CheckInvariants();
}

// ---------------------------------------------------------------------------------------
// Randomized: random admissions (lookup, allocate, cache part), decodes, cache steps,
// finishes, preemptions and resets against a reference model, checked after every step.

struct ModelParam {
  Family family;
  int hash_bits;  // 64: full hashes; fewer forces collisions (Verified only)
  std::string name;
};

void PrintTo(const ModelParam& param, std::ostream* os) { *os << param.name; }

class BlockPoolModelCheck : public testing::TestWithParam<ModelParam> {};

TEST_P(BlockPoolModelCheck, RandomOperationsMatchAReferenceModel) {
  constexpr int32_t kNumBlocks = 48;
  constexpr int32_t kBs = 4;
  constexpr int kOps = 20000;
  constexpr size_t kMaxSeqs = 8;
  constexpr size_t kMaxLen = 72;
  BlockPool pool(kNumBlocks, kBs);
  if (GetParam().hash_bits < 64) pool.set_hash_bits_for_testing(GetParam().hash_bits);
  Driver driver(pool, GetParam().family);
  std::mt19937 rng(12345);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  struct ModelSeq {
    std::vector<int32_t> tokens;
    std::vector<int32_t> table;
    int32_t num_cached = 0;  // leading blocks of the table cached (or hit)
  };
  std::vector<ModelSeq> seqs;
  std::vector<int32_t> ref(kNumBlocks, 0);
  // Per block, the whole token prefix its K/V was computed from (once cached by its owner).
  std::vector<std::optional<std::vector<int32_t>>> content(kNumBlocks);
  // A small alphabet so that equal blocks recur after different parents.
  std::vector<std::vector<int32_t>> templates(3);
  for (auto& t : templates) {
    for (size_t i = 0; i < 48; ++i) t.push_back(uniform(0, 2));
  }
  int64_t num_hit_blocks = 0, num_evictions = 0, num_failed_allocations = 0;

  auto prefix = [](const std::vector<int32_t>& tokens, size_t n) {
    return std::vector<int32_t>(tokens.begin(), tokens.begin() + n);
  };
  // Allocates n fresh blocks for seq; false (and nothing changed) when too few are free.
  auto allocate = [&](ModelSeq& seq, int32_t n) {
    const BlockPoolStats before = pool.stats();
    std::optional<std::vector<int32_t>> blocks = pool.Allocate(n);
    if (!blocks) {
      EXPECT_GT(n, before.num_free);
      ExpectStatsEqual(pool.stats(), before);
      ++num_failed_allocations;
      return false;
    }
    EXPECT_EQ(static_cast<int32_t>(blocks->size()), n);
    EXPECT_LE(before.num_cached - pool.stats().num_cached, n);
    num_evictions += before.num_cached - pool.stats().num_cached;
    for (int32_t b : *blocks) {
      EXPECT_TRUE(b > 0 && b < kNumBlocks);
      EXPECT_EQ(ref[b], 0) << "block " << b << " handed out while held";
      ref[b] = 1;
      content[b].reset();
      seq.table.push_back(b);
    }
    return true;
  };
  // Caches the seq's full blocks up to `upto`.
  auto cache = [&](ModelSeq& seq, int32_t upto) {
    upto =
        std::min(upto, static_cast<int32_t>(std::min(seq.tokens.size() / kBs, seq.table.size())));
    if (upto <= seq.num_cached) return;
    driver.Cache(seq.table, seq.tokens, seq.num_cached, upto);
    for (int32_t i = seq.num_cached; i < upto; ++i)
      content[seq.table[i]] = prefix(seq.tokens, (i + 1) * kBs);
    seq.num_cached = upto;
  };
  auto release = [&](ModelSeq& seq) {
    pool.Free(seq.table);
    for (int32_t b : seq.table) --ref[b];
    seq.table.clear();
  };
  auto admit = [&]() {
    ModelSeq seq;
    if (uniform(0, 3) > 0) seq.tokens = prefix(templates[uniform(0, 2)], uniform(0, 48));
    for (int n = uniform(1, 16); n > 0; --n) seq.tokens.push_back(uniform(0, 2));
    const int32_t max_blocks = static_cast<int32_t>((seq.tokens.size() - 1) / kBs);
    seq.table = driver.Lookup(seq.tokens, max_blocks);
    EXPECT_LE(static_cast<int32_t>(seq.table.size()), max_blocks);
    for (size_t i = 0; i < seq.table.size(); ++i) {
      const int32_t b = seq.table[i];
      // A hit holds exactly the looked-up prefix.
      EXPECT_TRUE(content[b].has_value() && *content[b] == prefix(seq.tokens, (i + 1) * kBs))
          << "block " << b << " hit at " << i << " holds another prefix";
      ++ref[b];
    }
    num_hit_blocks += seq.table.size();
    seq.num_cached = static_cast<int32_t>(seq.table.size());
    const int32_t needed =
        static_cast<int32_t>((seq.tokens.size() + kBs - 1) / kBs - seq.table.size());
    if (!allocate(seq, needed)) {
      release(seq);  // the scheduler gives the hit back and waits
      return;
    }
    cache(seq, uniform(seq.num_cached, static_cast<int32_t>(seq.tokens.size() / kBs)));  // a chunk
    seqs.push_back(std::move(seq));
  };
  auto check = [&]() {
    pool.CheckInvariants();
    int32_t used = 0;
    for (int32_t b = 0; b < kNumBlocks; ++b) {
      ASSERT_EQ(pool.ref_count(b), ref[b]) << "block " << b;
      used += ref[b] > 0;
    }
    ASSERT_EQ(ref[0], 0);
    ASSERT_EQ(pool.num_used_blocks(), used);
    ASSERT_EQ(pool.num_used_blocks() + pool.num_free_blocks(), kNumBlocks - 1);
    ASSERT_EQ(pool.stats().num_free, pool.num_free_blocks());
    ASSERT_LE(pool.stats().num_cached, kNumBlocks - 1);
    // A block held by two sequences holds the same prefix for both (shared by a hit).
    std::map<int32_t, std::vector<int32_t>> held;
    for (const ModelSeq& s : seqs) {
      for (size_t i = 0; i < s.table.size(); ++i) {
        const auto [it, inserted] = held.try_emplace(
            s.table[i], prefix(s.tokens, std::min(s.tokens.size(), (i + 1) * kBs)));
        if (!inserted) {
          ASSERT_TRUE(content[s.table[i]].has_value());
          ASSERT_EQ(it->second, prefix(s.tokens, (i + 1) * kBs)) << "block " << s.table[i];
        }
      }
    }
  };

  for (int op = 0; op < kOps; ++op) {
    const int r = uniform(0, 99);
    if (r < 30) {
      if (seqs.size() < kMaxSeqs) admit();
    } else if (r < 55 && !seqs.empty()) {  // decode a few tokens
      const size_t i = uniform(0, static_cast<int>(seqs.size()) - 1);
      ModelSeq& seq = seqs[i];
      cache(seq, static_cast<int32_t>(seq.tokens.size() / kBs));  // the last step completed
      for (int n = uniform(1, 5); n > 0; --n) seq.tokens.push_back(uniform(0, 2));
      const int32_t needed =
          static_cast<int32_t>((seq.tokens.size() + kBs - 1) / kBs - seq.table.size());
      if (seq.tokens.size() > kMaxLen ||
          !allocate(seq, std::max(needed, 0))) {  // finished or preempted
        release(seq);
        seqs.erase(seqs.begin() + i);
      }
    } else if (r < 70 && !seqs.empty()) {  // a step completed: cache what it filled
      ModelSeq& seq = seqs[uniform(0, static_cast<int>(seqs.size()) - 1)];
      cache(seq, static_cast<int32_t>(seq.tokens.size() / kBs));
    } else if (r < 99 && !seqs.empty()) {  // finish
      const size_t i = uniform(0, static_cast<int>(seqs.size()) - 1);
      release(seqs[i]);
      seqs.erase(seqs.begin() + i);
    } else if (r == 99) {
      pool.ResetPrefixCache();
    }
    check();
    if (testing::Test::HasFailure()) FAIL() << "after operation " << op;
  }
  for (ModelSeq& seq : seqs) release(seq);
  check();
  EXPECT_EQ(pool.num_free_blocks(), kNumBlocks - 1);
  // The run exercised what it claims to.
  EXPECT_GT(num_hit_blocks, 2000);
  EXPECT_GT(num_evictions, 200);
  EXPECT_GT(num_failed_allocations, 100);
  const BlockPoolStats s = pool.stats();
  EXPECT_EQ(s.prefix_hits, num_hit_blocks * kBs);
  EXPECT_GT(s.prefix_queries, s.prefix_hits);
}

INSTANTIATE_TEST_SUITE_P(
    BlockPool, BlockPoolModelCheck,
    testing::Values(ModelParam{Family::kHashed, 64, "Hashed"},
                    ModelParam{Family::kVerified, 64, "Verified"},
                    ModelParam{Family::kVerified, 3, "VerifiedWith3BitHashes"}),
    [](const testing::TestParamInfo<ModelParam>& info) { return info.param.name; });

}  // namespace
}  // namespace lattice
