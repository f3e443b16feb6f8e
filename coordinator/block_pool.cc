// BlockPool (see block_pool.h): per-block state in one array, an intrusive doubly
// linked free queue over block ids (O(1) removal from the middle when an evictable
// cached block is hit again), and a hash -> block map for cached full blocks.
//
// The free queue keeps plain free blocks (never used, or freed without a hash) before
// evictable cached ones, and the cached ones least recently freed first; Allocate pops
// from the front, so it uses up plain blocks before it evicts anything.
//
// Exactness of the Verified family: each cached block remembers its token ids and its
// parent as (block id, generation), where a block's generation changes whenever it
// loses its cached contents (reallocated, its hash dropped). A lookup accepts block i
// only if its tokens equal the looked-up ones and its parent is exactly block i-1 of
// the hit, at the generation it has now. By induction a hit's whole token prefix equals
// the looked-up prefix, so hashes only choose where to look and cannot cause a wrong hit.
#include "coordinator/block_pool.h"

#include <algorithm>
#include <bit>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "base/check.h"

namespace lattice {
namespace {

constexpr int32_t kNone = -2;  // no block (free queue ends, no canonical block); not kNoParent

// splitmix64's finaliser: every input bit affects every output bit.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

BlockHash BlockPool::HashBlock(BlockHash parent, std::span<const int32_t> tokens) {
  // An xxhash64-style fold over pairs of tokens (each round is a bijection of the
  // accumulator for a fixed input, and of the input for a fixed accumulator), seeded by
  // the mixed parent hash and finished with the token count and splitmix64. Fixed-width
  // arithmetic only, no per-process salt: equal inputs hash equally in every process.
  constexpr uint64_t kPrime1 = 0x9e3779b185ebca87ULL;
  constexpr uint64_t kPrime2 = 0xc2b2ae3d27d4eb4fULL;
  constexpr uint64_t kSeed = 0x6c61747469636521ULL;  // "lattice!"
  auto round = [](uint64_t acc, uint64_t word) {
    return std::rotl(acc ^ (word * kPrime2), 31) * kPrime1;
  };
  uint64_t h = Mix64(parent ^ kSeed);
  const size_t n = tokens.size();
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t word = static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) |
                          (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i + 1])) << 32);
    h = round(h, word);
  }
  if (i < n) h = round(h, static_cast<uint32_t>(tokens[i]));
  return Mix64(h ^ static_cast<uint64_t>(n));
}

struct BlockPool::Impl {
  struct Block {
    int32_t ref_count = 0;
    int32_t prev = kNone;  // free queue links
    int32_t next = kNone;
    bool in_free_queue = false;
    bool filled = false;  // CacheFullBlock* called since allocation; `hash` is its chain hash
    bool cached = false;  // owns `hash` in the map
    bool keyed = false;   // cached through CacheFullBlockVerified: parent and tokens are set
    BlockHash hash = 0;
    uint64_t generation = 0;  // changes whenever the block loses its cached contents
    // Keyed blocks: the cached block this one follows (kNoParent for a first block).
    int32_t parent = kNoParent;
    uint64_t parent_generation = 0;
    // Blocks filled through CacheFullBlockVerified: the cached block holding the same
    // prefix (itself, or the block it duplicates), or kNone when none could be cached.
    int32_t canonical = kNone;
    uint64_t canonical_generation = 0;
  };

  Impl(int32_t num_blocks, int32_t block_size) : block_size(block_size), blocks(num_blocks) {
    for (int32_t b = 1; b < num_blocks; ++b) PushBack(b);
  }

  int32_t num_blocks() const { return static_cast<int32_t>(blocks.size()); }

  void CheckBlock(int32_t block) const {
    LATTICE_CHECK_MSG(block > 0 && block < num_blocks(), "block %d outside [1, %d)", block,
                      num_blocks());
  }

  // The free queue.
  void PushBack(int32_t b) {
    Block& blk = blocks[b];
    blk.prev = tail;
    blk.next = kNone;
    (tail == kNone ? head : blocks[tail].next) = b;
    tail = b;
    blk.in_free_queue = true;
    ++num_free;
  }
  void PushFront(int32_t b) {
    Block& blk = blocks[b];
    blk.prev = kNone;
    blk.next = head;
    (head == kNone ? tail : blocks[head].prev) = b;
    head = b;
    blk.in_free_queue = true;
    ++num_free;
  }
  void Remove(int32_t b) {
    Block& blk = blocks[b];
    (blk.prev == kNone ? head : blocks[blk.prev].next) = blk.next;
    (blk.next == kNone ? tail : blocks[blk.next].prev) = blk.prev;
    blk.prev = blk.next = kNone;
    blk.in_free_queue = false;
    --num_free;
  }

  // A (parent, generation) reference still names the same cached contents.
  bool Valid(int32_t block, uint64_t generation) const {
    return block == kNoParent || (blocks[block].cached && blocks[block].generation == generation);
  }

  bool KeyMatches(int32_t b, int32_t parent, uint64_t parent_generation,
                  std::span<const int32_t> block_tokens) const {
    const Block& blk = blocks[b];
    return blk.keyed && blk.parent == parent && blk.parent_generation == parent_generation &&
           std::equal(block_tokens.begin(), block_tokens.end(),
                      tokens.begin() + static_cast<int64_t>(b) * block_size);
  }

  BlockHash VerifiedHash(BlockHash parent, std::span<const int32_t> block_tokens) const {
    return HashBlock(parent, block_tokens) & hash_mask;
  }

  // Removes a block's hash from the map; a free block moves to the front of the queue
  // (it holds nothing worth keeping now).
  void DropHash(int32_t b) {
    Block& blk = blocks[b];
    map.erase(blk.hash);
    blk.cached = false;
    blk.keyed = false;
    ++blk.generation;
    if (blk.in_free_queue) {
      Remove(b);
      PushFront(b);
    }
  }

  // Takes a reference on a cached block found by a lookup.
  void Take(int32_t b) {
    Block& blk = blocks[b];
    if (blk.ref_count == 0) {
      Remove(b);
      ++num_used;
    }
    ++blk.ref_count;
  }

  // Queries count the tokens of the full blocks a lookup considered (at most max_blocks
  // of them), hits the tokens of the blocks it returned.
  void Record(int64_t num_looked_up, size_t num_hit) {
    prefix_queries += num_looked_up * block_size;
    prefix_hits += static_cast<int64_t>(num_hit) * block_size;
  }

  const int32_t block_size;
  std::vector<Block> blocks;
  int32_t head = kNone;
  int32_t tail = kNone;
  int32_t num_free = 0;
  int32_t num_used = 0;
  absl::flat_hash_map<BlockHash, int32_t> map;
  std::vector<int32_t> tokens;  // keyed blocks' token ids, block_size per block; sized on first use
  BlockHash hash_mask = std::numeric_limits<BlockHash>::max();
  int64_t prefix_queries = 0;
  int64_t prefix_hits = 0;
};

void BlockPool::ImplDeleter::operator()(Impl* impl) const { delete impl; }

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching) {
  LATTICE_CHECK_MSG(num_blocks >= 1 && block_size >= 1, "num_blocks %d, block_size %d", num_blocks,
                    block_size);
  impl_.reset(new Impl(num_blocks, block_size));
}

std::vector<BlockHash> BlockPool::HashBlocks(std::span<const int32_t> tokens) const {
  std::vector<BlockHash> hashes;
  hashes.reserve(tokens.size() / block_size_);
  BlockHash parent = 0;
  for (size_t start = 0; start + block_size_ <= tokens.size(); start += block_size_) {
    parent = HashBlock(parent, tokens.subspan(start, block_size_));
    hashes.push_back(parent);
  }
  return hashes;
}

std::vector<int32_t> BlockPool::GetComputedBlocks(std::span<const BlockHash> hashes,
                                                  int32_t max_blocks) {
  LATTICE_CHECK(max_blocks >= 0);
  std::vector<int32_t> hit;
  if (!enable_prefix_caching_) return hit;
  Impl& p = *impl_;
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(hashes.size()), max_blocks);
  for (int64_t i = 0; i < n; ++i) {
    const auto it = p.map.find(hashes[i]);
    if (it == p.map.end()) break;
    p.Take(it->second);
    hit.push_back(it->second);
  }
  p.Record(n, hit.size());
  return hit;
}

std::vector<int32_t> BlockPool::GetComputedBlocksVerified(std::span<const int32_t> tokens,
                                                          int32_t max_blocks) {
  LATTICE_CHECK(max_blocks >= 0);
  std::vector<int32_t> hit;
  if (!enable_prefix_caching_) return hit;
  Impl& p = *impl_;
  const int64_t n =
      std::min<int64_t>(static_cast<int64_t>(tokens.size()) / block_size_, max_blocks);
  BlockHash hash = 0;
  int32_t parent = kNoParent;
  uint64_t parent_generation = 0;
  for (int64_t i = 0; i < n; ++i) {
    const std::span<const int32_t> block_tokens = tokens.subspan(i * block_size_, block_size_);
    hash = p.VerifiedHash(hash, block_tokens);
    const auto it = p.map.find(hash);
    if (it == p.map.end() || !p.KeyMatches(it->second, parent, parent_generation, block_tokens))
      break;
    parent = it->second;
    parent_generation = p.blocks[parent].generation;
    p.Take(parent);
    hit.push_back(parent);
  }
  p.Record(n, hit.size());
  return hit;
}

std::optional<std::vector<int32_t>> BlockPool::Allocate(int32_t n) {
  LATTICE_CHECK(n >= 0);
  Impl& p = *impl_;
  if (n > p.num_free) return std::nullopt;
  std::vector<int32_t> out;
  out.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = p.head;
    p.Remove(b);
    Impl::Block& blk = p.blocks[b];
    if (blk.cached) p.map.erase(blk.hash);  // evicts the least recently freed
    blk.cached = blk.keyed = blk.filled = false;
    blk.canonical = kNone;
    ++blk.generation;
    blk.ref_count = 1;
    ++p.num_used;
    out.push_back(b);
  }
  return out;
}

void BlockPool::CacheFullBlock(int32_t block, BlockHash hash) {
  Impl& p = *impl_;
  p.CheckBlock(block);
  Impl::Block& blk = p.blocks[block];
  LATTICE_CHECK_MSG(blk.ref_count > 0, "caching free block %d", block);
  if (!enable_prefix_caching_) return;
  LATTICE_CHECK_MSG(!blk.filled, "block %d cached twice", block);
  blk.filled = true;
  blk.hash = hash;
  if (!p.map.try_emplace(hash, block).second) return;  // a duplicate stays uncached
  blk.cached = true;
}

void BlockPool::CacheFullBlockVerified(int32_t block, int32_t parent_block,
                                       std::span<const int32_t> tokens) {
  Impl& p = *impl_;
  p.CheckBlock(block);
  LATTICE_CHECK_MSG(static_cast<int64_t>(tokens.size()) == block_size_, "%zu tokens, block size %d",
                    tokens.size(), block_size_);
  Impl::Block& blk = p.blocks[block];
  LATTICE_CHECK_MSG(blk.ref_count > 0, "caching free block %d", block);
  if (!enable_prefix_caching_) return;
  LATTICE_CHECK_MSG(!blk.filled, "block %d cached twice", block);

  // Where this block's prefix minus its last block is cached, if it still is.
  BlockHash parent_hash = 0;
  int32_t parent = kNoParent;
  uint64_t parent_generation = 0;
  bool linked = true;
  if (parent_block != kNoParent) {
    p.CheckBlock(parent_block);
    const Impl::Block& pb = p.blocks[parent_block];
    LATTICE_CHECK_MSG(pb.ref_count > 0 && pb.filled, "parent block %d of block %d is not cached",
                      parent_block, block);
    parent_hash = pb.hash;
    parent = pb.canonical;
    parent_generation = pb.canonical_generation;
    linked = parent != kNone && p.Valid(parent, parent_generation);
  }
  blk.filled = true;
  blk.hash = p.VerifiedHash(parent_hash, tokens);
  blk.canonical = kNone;
  // Without a cached parent no lookup can reach this block: leave it uncached.
  if (!linked) return;

  const auto it = p.map.find(blk.hash);
  if (it != p.map.end()) {
    const int32_t owner = it->second;
    const Impl::Block& o = p.blocks[owner];
    if (p.KeyMatches(owner, parent, parent_generation,
                     tokens)) {  // the same prefix: share its entry
      blk.canonical = owner;
      blk.canonical_generation = o.generation;
      return;
    }
    // A different prefix under the same hash. If its parent is gone it is unreachable
    // and gives way; otherwise (a real collision) the first one keeps the hash.
    if (!o.keyed || p.Valid(o.parent, o.parent_generation)) return;
    p.DropHash(owner);
  }
  p.map.emplace(blk.hash, block);
  blk.cached = blk.keyed = true;
  blk.parent = parent;
  blk.parent_generation = parent_generation;
  blk.canonical = block;
  blk.canonical_generation = blk.generation;
  if (p.tokens.empty()) p.tokens.resize(static_cast<size_t>(p.num_blocks()) * block_size_);
  std::copy(tokens.begin(), tokens.end(),
            p.tokens.begin() + static_cast<int64_t>(block) * block_size_);
}

void BlockPool::Free(std::span<const int32_t> blocks) {
  Impl& p = *impl_;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const int32_t b = *it;
    if (b == 0) continue;
    p.CheckBlock(b);
    Impl::Block& blk = p.blocks[b];
    LATTICE_CHECK_MSG(blk.ref_count > 0, "double free of block %d", b);
    if (--blk.ref_count > 0) continue;
    --p.num_used;
    if (blk.cached) {
      p.PushBack(b);  // evictable, most recently freed
    } else {
      p.PushFront(b);  // nothing to keep: reused first
    }
  }
}

int32_t BlockPool::ref_count(int32_t block) const {
  LATTICE_CHECK(block >= 0 && block < impl_->num_blocks());
  return impl_->blocks[block].ref_count;
}

int32_t BlockPool::num_free_blocks() const { return impl_->num_free; }

int32_t BlockPool::num_used_blocks() const { return impl_->num_used; }

BlockPoolStats BlockPool::stats() const {
  const Impl& p = *impl_;
  return {.num_blocks = p.num_blocks(),
          .num_free = p.num_free,
          .num_cached = static_cast<int32_t>(p.map.size()),
          .prefix_queries = p.prefix_queries,
          .prefix_hits = p.prefix_hits};
}

void BlockPool::ResetPrefixCache() {
  Impl& p = *impl_;
  for (int32_t b = 1; b < p.num_blocks(); ++b) {
    if (p.blocks[b].cached && p.blocks[b].ref_count == 0) p.DropHash(b);
  }
}

void BlockPool::CheckInvariants() const {
  const Impl& p = *impl_;
  const Impl::Block& null_block = p.blocks[0];
  LATTICE_CHECK(null_block.ref_count == 0 && !null_block.in_free_queue && !null_block.cached);
  // The queue: linked both ways, plain blocks before cached ones.
  int32_t queued = 0;
  bool seen_cached = false;
  for (int32_t b = p.head, prev = kNone; b != kNone; prev = b, b = p.blocks[b].next) {
    const Impl::Block& blk = p.blocks[b];
    LATTICE_CHECK_MSG(b > 0 && blk.in_free_queue && blk.ref_count == 0 && blk.prev == prev,
                      "queue at block %d", b);
    LATTICE_CHECK_MSG(blk.cached || !seen_cached, "plain block %d after a cached one", b);
    seen_cached = seen_cached || blk.cached;
    if (blk.next == kNone) LATTICE_CHECK(p.tail == b);
    LATTICE_CHECK(++queued <= p.num_blocks());
  }
  LATTICE_CHECK(queued == p.num_free);
  int32_t used = 0;
  int32_t cached = 0;
  for (int32_t b = 1; b < p.num_blocks(); ++b) {
    const Impl::Block& blk = p.blocks[b];
    LATTICE_CHECK_MSG(blk.ref_count >= 0 && (blk.ref_count > 0) != blk.in_free_queue, "block %d",
                      b);
    used += blk.ref_count > 0;
    if (blk.cached) {
      ++cached;
      const auto it = p.map.find(blk.hash);
      LATTICE_CHECK_MSG(blk.filled && it != p.map.end() && it->second == b, "cached block %d", b);
    }
    LATTICE_CHECK(!blk.keyed || blk.cached);
  }
  LATTICE_CHECK(used == p.num_used);
  LATTICE_CHECK(cached == static_cast<int32_t>(p.map.size()));
}

void BlockPool::set_hash_bits_for_testing(int bits) {
  LATTICE_CHECK(bits >= 0 && bits <= 64 && impl_->map.empty());
  impl_->hash_mask =
      bits == 64 ? std::numeric_limits<BlockHash>::max() : (BlockHash{1} << bits) - 1;
}

}  // namespace lattice
