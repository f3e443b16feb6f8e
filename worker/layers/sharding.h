// Tensor-parallel shard arithmetic: which rows of a full checkpoint tensor a rank
// holds, and which attention heads. Pure functions; the layers cut their own shards
// with them.
#pragma once

#include <cstdint>

#include "base/check.h"

namespace lattice {

// A rank's place in a group that splits a layer (the TP group, or the EP group).
struct Shard {
  int rank = 0;
  int size = 1;
};

struct RowRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// The rank's equal part of `total` rows (the config validation guarantees divisibility).
inline RowRange EvenSplit(int64_t total, Shard shard) {
  LATTICE_CHECK_MSG(total % shard.size == 0, "%lld rows do not split over %d ranks",
                    static_cast<long long>(total), shard.size);
  const int64_t part = total / shard.size;
  return {shard.rank * part, (shard.rank + 1) * part};
}

// The attention heads of one TP rank. Query heads split evenly; KV heads split evenly
// when there are at least as many as ranks, else each rank holds the one KV head its
// query heads read (replicated over tp / num_kv_heads ranks).
struct LocalHeads {
  int64_t num_heads = 0;     // query heads on this rank
  int64_t num_kv_heads = 0;  // KV heads on this rank
  int64_t first_head = 0;    // global index of the first query head
  int64_t first_kv_head = 0;
};

inline LocalHeads LocalHeadsFor(int64_t num_heads, int64_t num_kv_heads, Shard tp) {
  LocalHeads local;
  local.num_heads = num_heads / tp.size;
  local.first_head = tp.rank * local.num_heads;
  if (num_kv_heads >= tp.size) {
    local.num_kv_heads = num_kv_heads / tp.size;
    local.first_kv_head = tp.rank * local.num_kv_heads;
  } else {
    local.num_kv_heads = 1;
    local.first_kv_head = tp.rank / (tp.size / num_kv_heads);
  }
  return local;
}

}  // namespace lattice
