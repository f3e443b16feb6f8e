// Paged KV cache memory and block allocation (see kv_cache.h).
#include "worker/kv_cache.h"

namespace lattice {

BlockAllocator::BlockAllocator(int32_t num_blocks)
    : num_blocks_(num_blocks), is_free_(num_blocks, true) {
  LATTICE_CHECK(num_blocks >= 0);
  free_.reserve(num_blocks);
  // Hand out low ids first: pop from the back.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> BlockAllocator::Allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t block = free_.back();
  free_.pop_back();
  is_free_[block] = false;
  return block;
}

void BlockAllocator::Free(int32_t block) {
  LATTICE_CHECK_MSG(block >= 0 && block < num_blocks_ && !is_free_[block], "double free of block %d", block);
  is_free_[block] = true;
  free_.push_back(block);
}

void BlockAllocator::Free(std::span<const int32_t> blocks) {
  // Free in reverse so that a sequence's first block is handed out first next time.
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) Free(*it);
}

KvCacheShape FullKvCacheShape(const ModelConfig& config) {
  return {config.num_hidden_layers, config.num_key_value_heads, config.head_dim};
}

KvCache::KvCache(const KvCacheShape& cache, const KvCacheOptions& options) : options_(options) {
  LATTICE_CHECK(options.block_size > 0 && options.num_blocks > 0);
  const Shape shape = {options.num_blocks, options.block_size, cache.num_kv_heads, cache.head_dim};
  for (int64_t layer = 0; layer < cache.num_layers; ++layer) {
    k_.push_back(Tensor::Zeros(DType::kF32, shape));
    v_.push_back(Tensor::Zeros(DType::kF32, shape));
  }
}

size_t KvCache::BytesPerBlock(const KvCacheShape& shape, int32_t block_size) {
  return 2 * static_cast<size_t>(shape.num_layers) * block_size * shape.num_kv_heads * shape.head_dim *
         sizeof(float);
}

}  // namespace lattice
