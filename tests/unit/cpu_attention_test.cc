// WriteKvCache and PagedAttention against a double-precision attention over contiguous
// per-sequence K/V: varlen batches mixing prefill, a chunk on top of cached tokens and
// decode; GQA, MQA and MHA; odd head dims; block sizes 1 and 16; sliding windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "tests/unit/cpu_test_util.h"

namespace lattice {
namespace {

using testing::ExpectAllClose;
using testing::PoisonedOutput;
using testing::RandomNormal;
using testing::RandomTensor;

TEST(CpuWriteKvCache, WritesMappedSlotsOnly) {
  std::mt19937 rng(20);
  for (int64_t t : {1, 7, 33}) {
    for (int64_t kv_heads : {1, 2}) {
      for (int64_t d : {1, 7, 64}) {
        for (int64_t block_size : {1, 16}) {
          const std::string name = "T=" + std::to_string(t) + " Hkv=" + std::to_string(kv_heads) +
                                   " D=" + std::to_string(d) + " bs=" + std::to_string(block_size);
          const int64_t num_blocks = (2 * t + block_size - 1) / block_size + 1;
          const int64_t num_slots = num_blocks * block_size;
          const int64_t row = kv_heads * d;
          const Tensor k = RandomTensor(rng, {t, kv_heads, d});
          const Tensor v = RandomTensor(rng, {t, kv_heads, d});
          Tensor k_cache = RandomTensor(rng, {num_blocks, block_size, kv_heads, d});
          Tensor v_cache = RandomTensor(rng, {num_blocks, block_size, kv_heads, d});
          const Tensor k_before = k_cache.Clone();
          const Tensor v_before = v_cache.Clone();

          // Distinct random slots, every third token padding.
          std::vector<int32_t> all_slots(num_slots);
          std::iota(all_slots.begin(), all_slots.end(), 0);
          std::shuffle(all_slots.begin(), all_slots.end(), rng);
          std::vector<int32_t> slot_mapping(all_slots.begin(), all_slots.begin() + t);
          for (int64_t i = 2; i < t; i += 3) slot_mapping[i] = -1;
          cpu::WriteKvCache(k, v, slot_mapping, k_cache, v_cache);

          // Expected caches: the old contents with the mapped rows replaced.
          std::vector<double> k_want = testing::ToDouble(k_before);
          std::vector<double> v_want = testing::ToDouble(v_before);
          for (int64_t i = 0; i < t; ++i) {
            if (slot_mapping[i] < 0) continue;
            for (int64_t j = 0; j < row; ++j) {
              k_want[slot_mapping[i] * row + j] = k.data<float>()[i * row + j];
              v_want[slot_mapping[i] * row + j] = v.data<float>()[i * row + j];
            }
          }
          ExpectAllClose(k_cache, k_want, 0.0, "k " + name);
          ExpectAllClose(v_cache, v_want, 0.0, "v " + name);
        }
      }
    }
  }
}

// One sequence of a batch: q_len new tokens at the end of a seq_len-long context.
struct SeqSpec {
  int32_t q_len;
  int32_t seq_len;
};

struct PagedBatch {
  std::vector<std::vector<double>> k, v;  // per sequence, contiguous [seq_len, Hkv, D]
  Tensor q;                               // [T, Hq, D]
  Tensor k_cache, v_cache;                // [num_blocks, block_size, Hkv, D]
  std::vector<int32_t> query_start_loc, seq_lens, block_tables;
  int32_t max_blocks_per_seq = 0;

  cpu::AttentionMetadata Metadata(int32_t block_size) const {
    return {query_start_loc, seq_lens, block_tables, max_blocks_per_seq, block_size};
  }
};

// Random q/K/V for the sequences; K/V scattered into shuffled cache blocks. Cache slots
// that no sequence owns, and unused block-table entries, hold NaN and -1 so reading
// them shows up as a NaN output or a failed check.
PagedBatch MakeBatch(std::mt19937& rng, const std::vector<SeqSpec>& seqs, int64_t q_heads,
                     int64_t kv_heads, int64_t d, int32_t block_size) {
  PagedBatch b;
  int32_t total_tokens = 0, total_blocks = 0;
  b.query_start_loc.push_back(0);
  for (const SeqSpec& s : seqs) {
    total_tokens += s.q_len;
    b.query_start_loc.push_back(total_tokens);
    b.seq_lens.push_back(s.seq_len);
    const int32_t blocks = (s.seq_len + block_size - 1) / block_size;
    total_blocks += blocks;
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, blocks + 1);  // one spare entry
  }
  const int64_t num_blocks = total_blocks + 3;  // a few blocks nobody owns
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  b.q = RandomTensor(rng, {total_tokens, q_heads, d});
  b.k_cache = Tensor::Empty(DType::kF32, {num_blocks, block_size, kv_heads, d});
  b.v_cache = Tensor::Empty(DType::kF32, {num_blocks, block_size, kv_heads, d});
  std::fill(b.k_cache.span<float>().begin(), b.k_cache.span<float>().end(), nan);
  std::fill(b.v_cache.span<float>().begin(), b.v_cache.span<float>().end(), nan);
  b.block_tables.assign(seqs.size() * b.max_blocks_per_seq, -1);

  const int64_t row = kv_heads * d;
  size_t next_block = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int32_t seq_len = seqs[s].seq_len;
    const int32_t* table = b.block_tables.data() + s * b.max_blocks_per_seq;
    for (int32_t j = 0; j * block_size < seq_len; ++j) {
      b.block_tables[s * b.max_blocks_per_seq + j] = free_blocks[next_block++];
    }
    const std::vector<float> k = RandomNormal(rng, seq_len * row);
    const std::vector<float> v = RandomNormal(rng, seq_len * row);
    b.k.emplace_back(k.begin(), k.end());
    b.v.emplace_back(v.begin(), v.end());
    for (int32_t p = 0; p < seq_len; ++p) {
      const int64_t slot = int64_t{table[p / block_size]} * block_size + p % block_size;
      std::memcpy(b.k_cache.data<float>() + slot * row, k.data() + p * row, sizeof(float) * row);
      std::memcpy(b.v_cache.data<float>() + slot * row, v.data() + p * row, sizeof(float) * row);
    }
  }
  return b;
}

std::vector<double> AttentionReference(const PagedBatch& b, const std::vector<SeqSpec>& seqs,
                                       int64_t q_heads, int64_t kv_heads, int64_t d, double scale,
                                       int32_t window) {
  std::vector<double> out(b.q.numel());
  const float* q = b.q.data<float>();
  const int64_t group = q_heads / kv_heads;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t i = 0; i < seqs[s].q_len; ++i) {
      const int64_t t = b.query_start_loc[s] + i;
      const int64_t pos = seqs[s].seq_len - seqs[s].q_len + i;
      for (int64_t h = 0; h < q_heads; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> scores;
        std::vector<int64_t> keys;
        for (int64_t p = 0; p <= pos; ++p) {
          if (window > 0 && p <= pos - window) continue;
          double dot = 0.0;
          for (int64_t e = 0; e < d; ++e) {
            dot += q[(t * q_heads + h) * d + e] * b.k[s][(p * kv_heads + kvh) * d + e];
          }
          scores.push_back(dot * scale);
          keys.push_back(p);
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& sc : scores) sum += (sc = std::exp(sc - max_score));
        for (int64_t e = 0; e < d; ++e) {
          double acc = 0.0;
          for (size_t j = 0; j < keys.size(); ++j) {
            acc += scores[j] * b.v[s][(keys[j] * kv_heads + kvh) * d + e];
          }
          out[(t * q_heads + h) * d + e] = acc / sum;
        }
      }
    }
  }
  return out;
}

// Prefill, a chunk on top of 35 cached tokens, decode at 33, a 1-token context, an idle
// sequence (no query, context 9) and a prefill spanning blocks.
const std::vector<SeqSpec> kMixedBatch = {{7, 7}, {5, 40}, {1, 33}, {1, 1}, {0, 9}, {18, 18}};

TEST(CpuPagedAttention, MatchesReferenceAcrossLayouts) {
  std::mt19937 rng(21);
  struct Heads {
    int64_t q, kv;
  };
  const Heads head_layouts[] = {{8, 2}, {4, 1}, {4, 4}};  // GQA, MQA, MHA
  for (const Heads& heads : head_layouts) {
    for (int64_t d : {1, 7, 64, 80}) {
      for (int32_t block_size : {1, 16}) {
        for (int32_t window : {0, 1, 5, 16, 64}) {
          const std::string name = "Hq=" + std::to_string(heads.q) +
                                   " Hkv=" + std::to_string(heads.kv) + " D=" + std::to_string(d) +
                                   " bs=" + std::to_string(block_size) +
                                   " window=" + std::to_string(window);
          PagedBatch b = MakeBatch(rng, kMixedBatch, heads.q, heads.kv, d, block_size);
          const float scale = 1.0f / std::sqrt(static_cast<float>(d));
          PoisonedOutput out(b.q.shape());
          cpu::PagedAttention(b.q, b.k_cache, b.v_cache, b.Metadata(block_size), scale, window,
                              out.view());
          ExpectAllClose(out.view(),
                         AttentionReference(b, kMixedBatch, heads.q, heads.kv, d, scale, window),
                         1e-5, name);
          EXPECT_TRUE(out.GuardsIntact()) << name;
        }
      }
    }
  }
}

TEST(CpuPagedAttention, DecodeBatch) {
  // Pure decode: one query per sequence, contexts of different lengths.
  std::mt19937 rng(22);
  const std::vector<SeqSpec> seqs = {{1, 1}, {1, 16}, {1, 17}, {1, 100}};
  PagedBatch b = MakeBatch(rng, seqs, 8, 2, 64, 16);
  PoisonedOutput out(b.q.shape());
  cpu::PagedAttention(b.q, b.k_cache, b.v_cache, b.Metadata(16), 0.125f, 0, out.view());
  ExpectAllClose(out.view(), AttentionReference(b, seqs, 8, 2, 64, 0.125, 0), 1e-5);
  EXPECT_TRUE(out.GuardsIntact());
}

TEST(CpuPagedAttention, WindowOfOneReturnsOwnValue) {
  // Each query sees only its own key: softmax weight exactly 1, output exactly V.
  std::mt19937 rng(23);
  const std::vector<SeqSpec> seqs = {{3, 10}};
  PagedBatch b = MakeBatch(rng, seqs, 4, 2, 7, 4);
  Tensor out = Tensor::Empty(DType::kF32, b.q.shape());
  cpu::PagedAttention(b.q, b.k_cache, b.v_cache, b.Metadata(4), 0.3f, 1, out);
  for (int32_t i = 0; i < 3; ++i) {
    for (int64_t h = 0; h < 4; ++h) {
      for (int64_t e = 0; e < 7; ++e) {
        EXPECT_EQ(out.data<float>()[(i * 4 + h) * 7 + e], b.v[0][((7 + i) * 2 + h / 2) * 7 + e]);
      }
    }
  }
}

TEST(CpuPagedAttention, HugeScoresStayFinite) {
  // Scores in the hundreds overflow exp in f32 without max subtraction.
  std::mt19937 rng(24);
  const std::vector<SeqSpec> seqs = {{4, 20}, {1, 5}};
  PagedBatch b = MakeBatch(rng, seqs, 4, 4, 64, 16);
  for (float& x : b.q.span<float>()) x *= 100.0f;
  PoisonedOutput out(b.q.shape());
  cpu::PagedAttention(b.q, b.k_cache, b.v_cache, b.Metadata(16), 0.125f, 0, out.view());
  ExpectAllClose(out.view(), AttentionReference(b, seqs, 4, 4, 64, 0.125, 0), 1e-3);
}

TEST(CpuPagedAttention, WriteKvCacheThenAttendEqualsPrewrittenCache) {
  // The engine's order: write the new tokens' K/V through slot_mapping, then attend.
  std::mt19937 rng(25);
  const std::vector<SeqSpec> seqs = {{6, 6}, {3, 21}};
  const int32_t block_size = 4;
  PagedBatch b = MakeBatch(rng, seqs, 4, 2, 8, block_size);
  const int64_t row = 2 * 8;
  // Wipe the new tokens' slots, then restore them with WriteKvCache.
  Tensor k_new = Tensor::Empty(DType::kF32, {9, 2, 8});
  Tensor v_new = Tensor::Empty(DType::kF32, {9, 2, 8});
  std::vector<int32_t> slot_mapping;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t i = 0; i < seqs[s].q_len; ++i) {
      const int32_t p = seqs[s].seq_len - seqs[s].q_len + i;
      const int32_t t = b.query_start_loc[s] + i;
      const int32_t slot =
          b.block_tables[s * b.max_blocks_per_seq + p / block_size] * block_size + p % block_size;
      slot_mapping.push_back(slot);
      for (int64_t j = 0; j < row; ++j) {
        k_new.data<float>()[t * row + j] = static_cast<float>(b.k[s][p * row + j]);
        v_new.data<float>()[t * row + j] = static_cast<float>(b.v[s][p * row + j]);
        b.k_cache.data<float>()[slot * row + j] = std::numeric_limits<float>::quiet_NaN();
        b.v_cache.data<float>()[slot * row + j] = std::numeric_limits<float>::quiet_NaN();
      }
    }
  }
  cpu::WriteKvCache(k_new, v_new, slot_mapping, b.k_cache, b.v_cache);
  PoisonedOutput out(b.q.shape());
  cpu::PagedAttention(b.q, b.k_cache, b.v_cache, b.Metadata(block_size), 0.35f, 0, out.view());
  ExpectAllClose(out.view(), AttentionReference(b, seqs, 4, 2, 8, 0.35, 0), 1e-5);
}

}  // namespace
}  // namespace lattice
