// BlockPool: the KV block ids of one DP rank of one instance, with prefix caching.
// Tensor-free: blocks are int32 ids; the KV memory lives in the workers.
//
// A full block (block_size tokens) is identified by a hash chained over every token
// from the start of the sequence: hash(parent block's hash, this block's token ids).
// Two sequences with the same first N full blocks share those N blocks (ref counts).
// When a cached block's ref count drops to zero it stays cached (its hash stays
// findable) but becomes evictable; evictable blocks are reused least recently freed
// first, and reusing one removes its hash. Block 0 is the reserved null block, never
// handed out (padding in block tables). Running out of blocks is a value (nullopt),
// not an error: the scheduler preempts. One owner thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace lattice {

using BlockHash = uint64_t;

struct BlockPoolStats {
  int32_t num_blocks = 0;        // including the null block
  int32_t num_free = 0;          // allocatable now: never used + evictable cached
  int32_t num_cached = 0;        // blocks with a hash (in use or evictable)
  int64_t prefix_queries = 0;    // tokens looked up in GetComputedBlocks
  int64_t prefix_hits = 0;       // of those, tokens found cached
};

class BlockPool {
 public:
  // `num_blocks` includes the null block 0, so num_blocks - 1 are usable.
  BlockPool(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching = true);

  // The hash of a full block of `tokens` (exactly block_size of them) after `parent`
  // (0 for the first block).
  static BlockHash HashBlock(BlockHash parent, std::span<const int32_t> tokens);
  // The chained hashes of every full block of `tokens`.
  std::vector<BlockHash> HashBlocks(std::span<const int32_t> tokens) const;

  // The longest run of cached blocks matching the sequence's leading full-block hashes,
  // taking a reference on each (so they cannot be evicted). At most `max_blocks`.
  std::vector<int32_t> GetComputedBlocks(std::span<const BlockHash> hashes, int32_t max_blocks);

  // `n` fresh blocks (ref count 1, no hash), or nullopt with nothing allocated when
  // fewer than `n` are free. May evict cached blocks with ref count 0 (LRU).
  std::optional<std::vector<int32_t>> Allocate(int32_t n);

  // Records that `block` now holds the full block with hash `hash` (a block may be
  // cached once; a second block with an already-cached hash stays uncached).
  void CacheFullBlock(int32_t block, BlockHash hash);

  // Drops one reference from each block, in reverse order (so a sequence's tail is
  // evicted before its head). At zero, cached blocks become evictable, others free.
  // (The null block 0 may appear as padding and is skipped.)
  void Free(std::span<const int32_t> blocks);

  // The exact forms of GetComputedBlocks and CacheFullBlock. The two above trust a
  // 64-bit hash: two different prefixes with equal hashes would share KV silently. These
  // keep, per cached block, its token ids and which cached block (and which incarnation
  // of it) is its parent, and compare both on lookup, so a hit's whole token prefix
  // equals the looked-up one whatever the hashes do; a colliding block simply stays
  // uncached. Use one family per pool: a lookup of one family does not verify blocks
  // cached through the other.
  //
  // Like GetComputedBlocks, for the leading full blocks of `tokens` (hashed here).
  std::vector<int32_t> GetComputedBlocksVerified(std::span<const int32_t> tokens,
                                                 int32_t max_blocks);
  // Like CacheFullBlock: `block` holds `tokens` (block_size of them) following
  // `parent_block` (the previous entry of the sequence's block table, itself cached
  // through this call or hit by GetComputedBlocksVerified), or kNoParent for the first.
  static constexpr int32_t kNoParent = -1;
  void CacheFullBlockVerified(int32_t block, int32_t parent_block, std::span<const int32_t> tokens);

  // Ref count of a block (tests and status).
  int32_t ref_count(int32_t block) const;
  int32_t num_free_blocks() const;
  int32_t num_used_blocks() const;  // ref count > 0
  int32_t block_size() const { return block_size_; }
  BlockPoolStats stats() const;
  // Drops every evictable cached block's hash (e.g. after weights change). Blocks in use
  // keep theirs.
  void ResetPrefixCache();

  // Aborts if the free queue, ref counts and hash map disagree (tests; O(num_blocks)).
  void CheckInvariants() const;
  // Keeps only the low `bits` of the hashes the Verified calls compute, so tests can
  // force collisions. Only before anything is cached.
  void set_hash_bits_for_testing(int bits);

 private:
  // Implementation chosen by the implementer (see block_pool.cc).
  struct Impl;
  int32_t block_size_;
  bool enable_prefix_caching_;
  struct ImplDeleter {
    void operator()(Impl* impl) const;
  };
  std::unique_ptr<Impl, ImplDeleter> impl_;
};

}  // namespace lattice
