// The paged KV cache: per-layer key and value memory split into fixed-size blocks,
// the free list of block ids, and the arithmetic from a sequence's block table to
// the cache slot of each of its tokens.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kernels/tensor.h"
#include "worker/model_config.h"

namespace lattice {

inline constexpr int32_t kDefaultBlockSize = 16;

struct KvCacheOptions {
  int32_t num_blocks = 0;
  int32_t block_size = kDefaultBlockSize;
};

// Blocks needed to hold `num_tokens` tokens.
inline int32_t NumBlocksFor(int64_t num_tokens, int32_t block_size) {
  return static_cast<int32_t>((num_tokens + block_size - 1) / block_size);
}

// The cache slot (block * block_size + offset) of the token at `position`.
inline int32_t SlotFor(std::span<const int32_t> block_table, int32_t block_size, int64_t position) {
  return block_table[position / block_size] * block_size + static_cast<int32_t>(position % block_size);
}

// A LIFO free list of block ids [0, num_blocks). Not thread-safe: one owner.
class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);
  // A free block id, or nullopt when none is left.
  std::optional<int32_t> Allocate();
  void Free(int32_t block);
  void Free(std::span<const int32_t> blocks);
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_blocks() const { return num_blocks_; }

 private:
  int32_t num_blocks_;
  std::vector<int32_t> free_;
  std::vector<bool> is_free_;
};

// What one rank caches: its layers (a pipeline stage's) and its KV heads (a TP slice).
struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// The whole model's cache shape, on one rank.
KvCacheShape FullKvCacheShape(const ModelConfig& config);

// Key and value memory for every layer: [num_blocks, block_size, num_kv_heads, head_dim] each.
class KvCache {
 public:
  KvCache(const KvCacheShape& shape, const KvCacheOptions& options);

  // Bytes of one block across all layers (keys and values, f32).
  static size_t BytesPerBlock(const KvCacheShape& shape, int32_t block_size);

  Tensor& k(int layer) { return k_[layer]; }
  Tensor& v(int layer) { return v_[layer]; }
  int32_t num_blocks() const { return options_.num_blocks; }
  int32_t block_size() const { return options_.block_size; }

 private:
  KvCacheOptions options_;
  std::vector<Tensor> k_;
  std::vector<Tensor> v_;
};

}  // namespace lattice
