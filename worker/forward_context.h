// ForwardBatch: one step's flattened tokens across sequences, and ForwardContext:
// what every layer of one forward pass reads (batch metadata, KV cache, rotary
// frequencies). Passed explicitly; there is no global forward state.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/rope.h"
#include "parallel/communicator.h"
#include "worker/kv_cache.h"

namespace lattice {

// Tokens of S sequences, each a chunk [num_computed, num_computed + q_len) of its
// tokens, laid out one sequence after another.
struct ForwardBatch {
  std::vector<int32_t> token_ids;        // [T]
  std::vector<int32_t> positions;        // [T]
  std::vector<int32_t> slot_mapping;     // [T]: where each token's K/V is written
  std::vector<int32_t> query_start_loc;  // [S + 1]
  std::vector<int32_t> seq_lens;         // [S]: tokens in the cache after this step
  std::vector<int32_t> block_tables;     // [S, max_blocks_per_seq], padded with -1
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> logits_indices;   // rows of the batch whose logits are returned

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(seq_lens.size()); }
};

struct ForwardContext {
  const ForwardBatch& batch;
  cpu::AttentionMetadata attention;
  KvCache& kv_cache;
  Communicator& tp;  // the stage's tensor-parallel group
  Communicator& ep;  // the stage's expert-parallel group (size 1 when off)
  // Rotary frequencies per sequence (the same object for all unless the rope
  // type depends on the sequence length).
  std::vector<const RopeFrequencies*> rope;
};

}  // namespace lattice
