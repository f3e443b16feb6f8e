// Paged KV cache writes and causal attention over a varlen batch of sequences whose
// keys and values live in fixed-size cache blocks (vLLM's layout:
// [num_blocks, block_size, Hkv, D]). The reference favours clarity: per query head it
// scores every visible key, takes an f32 softmax with max subtraction and averages V.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace lattice::cpu {
namespace {

void CheckCacheShape(const Tensor& cache, int64_t num_kv_heads, int64_t head_dim) {
  LATTICE_CHECK(cache.ndim() == 4);
  LATTICE_CHECK(cache.dim(2) == num_kv_heads && cache.dim(3) == head_dim);
}

}  // namespace

void WriteKvCache(const Tensor& k, const Tensor& v, std::span<const int32_t> slot_mapping,
                  Tensor& k_cache, Tensor& v_cache) {
  LATTICE_CHECK(k.ndim() == 3 && v.shape() == k.shape());
  const int64_t num_tokens = k.dim(0);
  const int64_t row = k.dim(1) * k.dim(2);
  CheckCacheShape(k_cache, k.dim(1), k.dim(2));
  LATTICE_CHECK(v_cache.shape() == k_cache.shape());
  LATTICE_CHECK(static_cast<int64_t>(slot_mapping.size()) == num_tokens);
  const int64_t num_slots = k_cache.dim(0) * k_cache.dim(1);

  const float* k_src = k.data<float>();
  const float* v_src = v.data<float>();
  float* k_dst = k_cache.data<float>();
  float* v_dst = v_cache.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = slot_mapping[t];
    if (slot == -1) continue;
    LATTICE_CHECK_MSG(0 <= slot && slot < num_slots, "slot %lld outside [0, %lld)",
                      static_cast<long long>(slot), static_cast<long long>(num_slots));
    std::memcpy(k_dst + slot * row, k_src + t * row, sizeof(float) * row);
    std::memcpy(v_dst + slot * row, v_src + t * row, sizeof(float) * row);
  }
}

void PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const AttentionMetadata& metadata, float scale, int32_t sliding_window,
                    Tensor& out) {
  LATTICE_CHECK(q.ndim() == 3 && out.shape() == q.shape());
  const int64_t num_tokens = q.dim(0);
  const int64_t num_q_heads = q.dim(1);
  const int64_t head_dim = q.dim(2);
  LATTICE_CHECK(k_cache.ndim() == 4 && v_cache.shape() == k_cache.shape());
  const int64_t num_blocks = k_cache.dim(0);
  const int64_t block_size = k_cache.dim(1);
  const int64_t num_kv_heads = k_cache.dim(2);
  CheckCacheShape(k_cache, num_kv_heads, head_dim);
  LATTICE_CHECK(num_kv_heads > 0 && num_q_heads % num_kv_heads == 0);
  LATTICE_CHECK(metadata.block_size == block_size);
  const int64_t group = num_q_heads / num_kv_heads;

  const int64_t num_seqs = static_cast<int64_t>(metadata.seq_lens.size());
  const int64_t max_blocks = metadata.max_blocks_per_seq;
  LATTICE_CHECK(static_cast<int64_t>(metadata.query_start_loc.size()) == num_seqs + 1);
  LATTICE_CHECK(static_cast<int64_t>(metadata.block_tables.size()) >= num_seqs * max_blocks);
  LATTICE_CHECK(metadata.query_start_loc[0] == 0 &&
                metadata.query_start_loc[num_seqs] == num_tokens);

  // Slot row of every key position of the current sequence, and the scores of one query.
  std::vector<int64_t> slots;
  std::vector<float> scores;
  std::vector<float> acc(head_dim);
  const int64_t kv_row = num_kv_heads * head_dim;
  const float* q_data = q.data<float>();
  const float* k_data = k_cache.data<float>();
  const float* v_data = v_cache.data<float>();
  float* out_data = out.data<float>();

  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t q_begin = metadata.query_start_loc[s];
    const int64_t q_len = metadata.query_start_loc[s + 1] - q_begin;
    const int64_t seq_len = metadata.seq_lens[s];
    LATTICE_CHECK(0 <= q_len && q_len <= seq_len);
    LATTICE_CHECK((seq_len + block_size - 1) / block_size <= max_blocks);
    const int32_t* block_table = metadata.block_tables.data() + s * max_blocks;
    slots.resize(seq_len);
    for (int64_t p = 0; p < seq_len; ++p) {
      const int64_t block = block_table[p / block_size];
      LATTICE_CHECK(0 <= block && block < num_blocks);
      slots[p] = (block * block_size + p % block_size) * kv_row;
    }

    for (int64_t i = 0; i < q_len; ++i) {
      const int64_t t = q_begin + i;
      const int64_t position = seq_len - q_len + i;
      const int64_t first =
          sliding_window > 0 ? std::max<int64_t>(0, position - sliding_window + 1) : 0;
      const int64_t num_keys = position + 1 - first;
      scores.resize(num_keys);
      for (int64_t h = 0; h < num_q_heads; ++h) {
        const float* q_head = q_data + (t * num_q_heads + h) * head_dim;
        const int64_t kv_offset = (h / group) * head_dim;
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < num_keys; ++j) {
          const float* k_head = k_data + slots[first + j] + kv_offset;
          scores[j] = internal::Dot(q_head, k_head, head_dim) * scale;
          max_score = std::max(max_score, scores[j]);
        }
        float sum = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < num_keys; ++j) {
          const float p = std::exp(scores[j] - max_score);
          sum += p;
          internal::Axpy(p, v_data + slots[first + j] + kv_offset, acc.data(), head_dim);
        }
        float* out_head = out_data + (t * num_q_heads + h) * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) out_head[d] = acc[d] / sum;
      }
    }
  }
}

}  // namespace lattice::cpu
