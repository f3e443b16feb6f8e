// The CUDA attention ops against the CPU reference: QkNormRotaryKvWrite against
// cpu::RmsNorm + cpu::ApplyRotary + cpu::WriteKvCache, PagedAttention against
// cpu::PagedAttention. Every dtype; decode batches of mixed lengths, prefill chunks on
// top of cached tokens, MHA/GQA/MQA, head dims 8..256, block sizes 16 to 256, sliding
// windows, launch bounds above the real maxima, long contexts split over many CTAs and
// a captured CUDA graph replayed with new lengths. Outputs are poisoned with NaN;
// cache slots no sequence owns and unused block-table entries (block 0) hold NaN, so a
// stray read or an unwritten output fails. Runs on the GPU machine.
#include <gtest/gtest.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"
#include "kernels/rope.h"
#include "tests/cuda/cuda_test_util.h"

namespace lattice {
namespace {

using testing::Back;
using testing::IdsOnDevice;
using testing::NanHost;
using testing::OnDevice;
using testing::Poisoned;
using testing::Random;
using testing::Rounded;

Tensor Ints(const std::vector<int32_t>& values, Shape shape) {
  Tensor t = Tensor::Empty(DType::kI32, std::move(shape));
  LATTICE_CHECK(static_cast<size_t>(t.numel()) == values.size());
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return cuda::ToDevice(t);
}

double Tolerance(DType dtype) {
  return dtype == DType::kF32 ? 2e-5 : dtype == DType::kF16 ? 2e-3 : 1.6e-2;
}
// Attention also rounds the probabilities to the dtype before P V (tensor cores).
double AttentionTolerance(DType dtype) {
  return dtype == DType::kF32 ? 5e-5 : dtype == DType::kF16 ? 4e-3 : 2e-2;
}

// Elements of `want` and `got` ([rows, inner] flattened) within tol * (1 + |want|). The
// first few mismatches are reported with their (row, column) and values, then a count.
void ExpectClose(const Tensor& want, const Tensor& got, double tol, const std::string& what,
                 int64_t inner, const char* row_name = "row") {
  ASSERT_EQ(want.numel(), got.numel()) << what;
  int64_t bad = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = want.data<float>()[i], g = got.data<float>()[i];
    if (std::abs(w - g) <= tol * (1.0 + std::abs(w))) continue;  // false for NaN
    if (++bad <= 5) {
      ADD_FAILURE() << what << ": element " << i << " (" << row_name << " " << i / inner
                    << ", column " << i % inner << ") want " << w << " got " << g
                    << (std::isnan(g) ? " (not written / NaN)" : "");
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << want.numel() << " elements differ";
}

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

std::string Name(DType dtype) { return std::string(DTypeName(dtype)); }

// ---- QkNormRotaryKvWrite ----

struct RotaryCase {
  int64_t tokens, q_heads, kv_heads, head_dim, rotary_dim;
  int64_t freq_rows;  // > 1: token t uses row t % freq_rows
  bool qk_norm;
  int64_t block_size;
  float rope_scale;
};

TEST(CudaAttention, QkNormRotaryKvWriteMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  const RotaryCase cases[] = {
      {7, 4, 2, 128, 128, 1, true, 16, 1.0f}, {33, 8, 1, 64, 32, 3, false, 16, 1.0f},
      {1, 2, 2, 256, 256, 1, true, 32, 1.0f}, {5, 6, 2, 80, 80, 2, true, 16, 1.1f},
      {9, 3, 3, 8, 8, 1, false, 16, 1.0f},    {130, 16, 4, 128, 64, 1, true, 16, 0.9f},
  };
  int seed = 100;
  for (const RotaryCase& c : cases) {
    for (DType dtype : kDTypes) {
      ++seed;
      const int64_t T = c.tokens, Hq = c.q_heads, Hkv = c.kv_heads, D = c.head_dim,
                    half = c.rotary_dim / 2;
      const int64_t width = (Hq + 2 * Hkv) * D;
      std::ostringstream what_stream;
      what_stream << "QkNormRotaryKvWrite " << Name(dtype) << " T=" << T << " Hq=" << Hq
                  << " Hkv=" << Hkv << " D=" << D << " rotary_dim=" << c.rotary_dim
                  << " freq_rows=" << c.freq_rows << " norm=" << c.qk_norm
                  << " bs=" << c.block_size;
      const std::string what = what_stream.str();
      std::mt19937 rng(seed);

      const Tensor qkv = Rounded(Random({T, width}, seed, 2.0f), dtype);
      const Tensor q_norm = Rounded(Random({D}, seed + 1, 0.5f), dtype);
      const Tensor k_norm = Rounded(Random({D}, seed + 2, 0.5f), dtype);
      std::vector<int32_t> positions(T);
      for (int64_t t = 0; t < T; ++t)
        positions[t] = t == 0 ? 0 : static_cast<int32_t>(rng() % 40000);
      std::vector<float> inv_freq;
      for (int64_t row = 0; row < c.freq_rows; ++row) {
        RopeScaling rope;
        rope.theta = 10000.0 * (1 + 9 * row);
        rope.rotary_dim = c.rotary_dim;
        const RopeFrequencies f = ComputeRopeFrequencies(rope, 1);
        inv_freq.insert(inv_freq.end(), f.inv_freq.begin(), f.inv_freq.end());
      }
      std::vector<int32_t> freq_rows(T);
      for (int64_t t = 0; t < T; ++t) freq_rows[t] = static_cast<int32_t>(t % c.freq_rows);
      const int64_t num_blocks = (2 * T + c.block_size - 1) / c.block_size + 1;
      std::vector<int32_t> all_slots(num_blocks * c.block_size);
      std::iota(all_slots.begin(), all_slots.end(), 0);
      std::shuffle(all_slots.begin(), all_slots.end(), rng);
      std::vector<int32_t> slots(all_slots.begin(), all_slots.begin() + T);
      for (int64_t t = 2; t < T; t += 3) slots[t] = -1;
      const Tensor k_cache = Rounded(Random({num_blocks, c.block_size, Hkv, D}, seed + 3), dtype);
      const Tensor v_cache = Rounded(Random({num_blocks, c.block_size, Hkv, D}, seed + 4), dtype);

      // CPU: split the heads out, norm, rotate token by token, write the caches.
      Tensor q = Tensor::Empty(DType::kF32, {T, Hq, D});
      Tensor k = Tensor::Empty(DType::kF32, {T, Hkv, D});
      Tensor v = Tensor::Empty(DType::kF32, {T, Hkv, D});
      for (int64_t t = 0; t < T; ++t) {
        const float* row = qkv.data<float>() + t * width;
        std::copy(row, row + Hq * D, q.data<float>() + t * Hq * D);
        std::copy(row + Hq * D, row + (Hq + Hkv) * D, k.data<float>() + t * Hkv * D);
        std::copy(row + (Hq + Hkv) * D, row + width, v.data<float>() + t * Hkv * D);
      }
      if (c.qk_norm) {
        Tensor q_rows = q.View({T * Hq, D}), k_rows = k.View({T * Hkv, D});
        cpu::RmsNorm(q_rows, q_norm, 1e-6f, q_rows);
        cpu::RmsNorm(k_rows, k_norm, 1e-6f, k_rows);
      }
      for (int64_t t = 0; t < T; ++t) {
        const std::span<const int32_t> position(&positions[t], 1);
        const std::span<const float> freqs(inv_freq.data() + freq_rows[t] * half, half);
        Tensor q_t = q.Slice(t, t + 1), k_t = k.Slice(t, t + 1);
        cpu::ApplyRotary(position, freqs, c.rope_scale, q_t);
        cpu::ApplyRotary(position, freqs, c.rope_scale, k_t);
      }
      Tensor want_k_cache = k_cache.Clone(), want_v_cache = v_cache.Clone();
      cpu::WriteKvCache(k, v, slots, want_k_cache, want_v_cache);
      Tensor want_qkv = Tensor::Empty(DType::kF32, {T, width});
      for (int64_t t = 0; t < T; ++t) {
        float* row = want_qkv.data<float>() + t * width;
        std::copy(q.data<float>() + t * Hq * D, q.data<float>() + (t + 1) * Hq * D, row);
        std::copy(k.data<float>() + t * Hkv * D, k.data<float>() + (t + 1) * Hkv * D, row + Hq * D);
        std::copy(v.data<float>() + t * Hkv * D, v.data<float>() + (t + 1) * Hkv * D,
                  row + (Hq + Hkv) * D);
      }

      Tensor d_qkv = OnDevice(qkv, dtype);
      Tensor d_k_cache = OnDevice(k_cache, dtype), d_v_cache = OnDevice(v_cache, dtype);
      const Tensor d_freq_rows = c.freq_rows > 1 ? Ints(freq_rows, {T}) : Tensor();
      cuda::QkNormRotaryKvWrite(d_qkv, Hq, Hkv, c.qk_norm ? OnDevice(q_norm, dtype) : Tensor(),
                                c.qk_norm ? OnDevice(k_norm, dtype) : Tensor(), 1e-6f,
                                Ints(positions, {T}),
                                cuda::ToDevice(Tensor::FromVector(inv_freq, {c.freq_rows, half})),
                                d_freq_rows, c.rope_scale, Ints(slots, {T}), d_k_cache, d_v_cache);
      ExpectClose(want_qkv, Back(d_qkv), Tolerance(dtype), what + " qkv", width, "token");
      ExpectClose(want_k_cache, Back(d_k_cache), Tolerance(dtype), what + " k_cache", Hkv * D,
                  "slot");
      ExpectClose(want_v_cache, Back(d_v_cache), Tolerance(dtype), what + " v_cache", Hkv * D,
                  "slot");
    }
  }
}

// ---- PagedAttention ----

struct Seq {
  int32_t q_len, seq_len;
};

struct AttentionCase {
  std::string name;
  int64_t q_heads, kv_heads, head_dim, block_size;
  int32_t sliding_window;
  std::vector<Seq> seqs;
  int32_t extra_query_len = 0;  // launch bounds this far above the real maxima
  int32_t extra_seq_len = 0;
  bool fused_qkv = false;  // q as the first Hq * D columns of [T, (Hq + 2 Hkv) * D]
};

std::string Describe(const AttentionCase& c, DType dtype) {
  std::ostringstream s;
  s << "PagedAttention [" << c.name << "] " << Name(dtype) << " Hq=" << c.q_heads
    << " Hkv=" << c.kv_heads << " D=" << c.head_dim << " bs=" << c.block_size
    << " window=" << c.sliding_window << " seqs(q_len/seq_len)=";
  for (size_t i = 0; i < c.seqs.size() && i < 8; ++i)
    s << (i ? "," : "") << c.seqs[i].q_len << "/" << c.seqs[i].seq_len;
  if (c.seqs.size() > 8) s << ",... (" << c.seqs.size() << " seqs)";
  s << " bounds +" << c.extra_query_len << "/+" << c.extra_seq_len
    << (c.fused_qkv ? " fused-qkv" : "");
  return s.str();
}

// A batch on the host (f32, rounded to the dtype) and its device copies. Cache slots up
// to `capacity[s]` of each sequence hold random K/V; every other slot, and block 0 that
// unused block-table entries point at, hold NaN.
struct Batch {
  int64_t num_tokens = 0, row_width = 0;
  std::vector<int32_t> query_start_loc, seq_lens, block_tables;
  int32_t max_blocks_per_seq = 0;
  Tensor q_rows;  // [T, row_width]: q in the first Hq * D columns
  Tensor q;       // [T, Hq, D]
  Tensor k_cache, v_cache;
  Tensor d_q_rows, d_k_cache, d_v_cache, d_query_start_loc, d_seq_lens, d_block_tables;
};

Batch MakeBatch(const AttentionCase& c, DType dtype, int seed,
                const std::vector<int32_t>& capacity) {
  std::mt19937 rng(seed);
  const int64_t Hq = c.q_heads, Hkv = c.kv_heads, D = c.head_dim, bs = c.block_size;
  Batch b;
  b.query_start_loc.push_back(0);
  int64_t used_blocks = 0;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    b.num_tokens += c.seqs[s].q_len;
    b.query_start_loc.push_back(static_cast<int32_t>(b.num_tokens));
    b.seq_lens.push_back(c.seqs[s].seq_len);
    const int32_t blocks = static_cast<int32_t>((capacity[s] + bs - 1) / bs);
    used_blocks += blocks;
    b.max_blocks_per_seq = std::max(b.max_blocks_per_seq, blocks + 2);  // spare entries -> block 0
  }
  const int64_t num_blocks = used_blocks + 4;  // block 0 and a few nobody owns
  std::vector<int32_t> free_blocks(num_blocks - 1);
  std::iota(free_blocks.begin(), free_blocks.end(), 1);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);

  const int64_t row = Hkv * D;
  const Tensor k_random = Rounded(Random({num_blocks * bs, row}, seed + 1), dtype);
  const Tensor v_random = Rounded(Random({num_blocks * bs, row}, seed + 2), dtype);
  b.k_cache = Tensor::Empty(DType::kF32, {num_blocks, bs, Hkv, D});
  b.v_cache = Tensor::Empty(DType::kF32, {num_blocks, bs, Hkv, D});
  std::fill(b.k_cache.span<float>().begin(), b.k_cache.span<float>().end(), std::nanf(""));
  std::fill(b.v_cache.span<float>().begin(), b.v_cache.span<float>().end(), std::nanf(""));
  b.block_tables.assign(c.seqs.size() * b.max_blocks_per_seq, 0);
  size_t next = 0;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    int32_t* table = b.block_tables.data() + s * b.max_blocks_per_seq;
    for (int64_t j = 0; j * bs < capacity[s]; ++j) table[j] = free_blocks[next++];
    for (int64_t p = 0; p < capacity[s]; ++p) {
      const int64_t slot = int64_t{table[p / bs]} * bs + p % bs;
      std::memcpy(b.k_cache.data<float>() + slot * row, k_random.data<float>() + slot * row,
                  sizeof(float) * row);
      std::memcpy(b.v_cache.data<float>() + slot * row, v_random.data<float>() + slot * row,
                  sizeof(float) * row);
    }
  }

  const int64_t T = b.num_tokens;
  b.row_width = c.fused_qkv ? (Hq + 2 * Hkv) * D : Hq * D;
  b.q_rows = Rounded(Random({T, b.row_width}, seed + 3), dtype);
  b.q = Tensor::Empty(DType::kF32, {T, Hq, D});
  for (int64_t t = 0; t < T; ++t) {
    std::copy(b.q_rows.data<float>() + t * b.row_width,
              b.q_rows.data<float>() + t * b.row_width + Hq * D, b.q.data<float>() + t * Hq * D);
  }

  b.d_q_rows = OnDevice(b.q_rows, dtype);
  b.d_k_cache = OnDevice(b.k_cache, dtype);
  b.d_v_cache = OnDevice(b.v_cache, dtype);
  b.d_query_start_loc = Ints(b.query_start_loc, {static_cast<int64_t>(c.seqs.size()) + 1});
  b.d_seq_lens = Ints(b.seq_lens, {static_cast<int64_t>(c.seqs.size())});
  b.d_block_tables =
      Ints(b.block_tables, {static_cast<int64_t>(c.seqs.size()), b.max_blocks_per_seq});
  return b;
}

Tensor CpuAttention(const AttentionCase& c, const Batch& b) {
  Tensor want = Tensor::Empty(DType::kF32, {b.num_tokens, c.q_heads, c.head_dim});
  const cpu::AttentionMetadata metadata{b.query_start_loc, b.seq_lens, b.block_tables,
                                        b.max_blocks_per_seq, static_cast<int32_t>(c.block_size)};
  cpu::PagedAttention(b.q, b.k_cache, b.v_cache, metadata,
                      1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.sliding_window, want);
  return want;
}

cuda::PagedAttentionMetadata DeviceMetadata(const AttentionCase& c, const Batch& b) {
  cuda::PagedAttentionMetadata m;
  m.query_start_loc = b.d_query_start_loc;
  m.seq_lens = b.d_seq_lens;
  m.block_tables = b.d_block_tables;
  m.num_seqs = static_cast<int32_t>(c.seqs.size());
  for (const Seq& s : c.seqs) {
    m.max_query_len = std::max(m.max_query_len, s.q_len);
    m.max_seq_len = std::max(m.max_seq_len, s.seq_len);
  }
  m.max_query_len = std::max(m.max_query_len, 1) + c.extra_query_len;
  m.max_seq_len += c.extra_seq_len;
  m.block_size = static_cast<int32_t>(c.block_size);
  return m;
}

cuda::Workspace& SharedWorkspace() {
  static cuda::Workspace* workspace = new cuda::Workspace(size_t{256} << 20);
  return *workspace;
}

// On the current device, with `workspace` there (default: the shared one, on GPU 0).
void RunAttentionCase(const AttentionCase& c, int seed, cuda::Workspace* on_device = nullptr) {
  for (DType dtype : kDTypes) {
    const std::string what = Describe(c, dtype);
    std::vector<int32_t> capacity;
    for (const Seq& s : c.seqs) capacity.push_back(s.seq_len);
    const Batch b = MakeBatch(c, dtype, seed, capacity);
    const Tensor want = CpuAttention(c, b);
    Tensor out = Poisoned(dtype, {b.num_tokens, c.q_heads, c.head_dim});
    cuda::Workspace& workspace = on_device != nullptr ? *on_device : SharedWorkspace();
    workspace.Reset();
    cuda::PagedAttention(b.d_q_rows, b.d_k_cache, b.d_v_cache, DeviceMetadata(c, b),
                         1.0f / std::sqrt(static_cast<float>(c.head_dim)), c.sliding_window, out,
                         workspace);
    ExpectClose(want, Back(out), AttentionTolerance(dtype), what, c.q_heads * c.head_dim, "token");
  }
}

TEST(CudaAttention, PagedAttentionDecodeMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  const std::vector<Seq> mixed = {{1, 1}, {1, 17}, {1, 300}, {1, 2049}};
  const AttentionCase cases[] = {
      {"gqa4 d128", 8, 2, 128, 16, 0, mixed},
      {"mha d64 bs32", 4, 4, 64, 32, 0, {{1, 5}, {1, 64}, {1, 65}, {1, 1000}}},
      {"mqa d96", 8, 1, 96, 16, 0, {{1, 33}, {1, 700}}, 0, 0, true},
      {"gqa16 d128 window 100", 32, 2, 128, 16, 100, {{1, 50}, {1, 300}, {1, 2100}}},
      {"mqa80 d64 (group > 64 rows)", 80, 1, 64, 16, 0, {{1, 7}, {1, 200}}},
      {"d8", 2, 1, 8, 16, 0, {{1, 1}, {1, 40}}},
      {"d16 window 7", 4, 1, 16, 32, 7, {{1, 3}, {1, 90}}},
      {"gqa3 d32 bs32", 6, 2, 32, 32, 0, {{1, 90}, {1, 1}}},
      {"d80", 4, 2, 80, 16, 0, {{1, 129}}},
      {"d256", 4, 2, 256, 16, 0, {{1, 19}, {1, 600}}, 0, 0, true},
      {"gqa8 d128 window 1", 8, 1, 128, 16, 1, {{1, 1}, {1, 77}}},
      {"gqa4 d128 bs24 (not a power of two)", 8, 2, 128, 24, 0, {{1, 100}, {1, 1000}}},
  };
  int seed = 1000;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
}

TEST(CudaAttention, PagedAttentionLargeDecodeBatchesMatchTheCpu) {
  // Enough sequences that no split is needed: the unsplit path of every kernel.
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::mt19937 rng(7);
  std::vector<Seq> small, medium;
  for (int i = 0; i < 300; ++i) small.push_back({1, static_cast<int32_t>(1 + rng() % 150)});
  for (int i = 0; i < 140; ++i) medium.push_back({1, static_cast<int32_t>(1 + rng() % 100)});
  RunAttentionCase({"300 seqs gqa4 d64", 4, 1, 64, 16, 0, small}, 2000);
  RunAttentionCase({"140 seqs gqa4 d128", 8, 2, 128, 16, 0, medium, 0, 0, true}, 2010);
}

TEST(CudaAttention, PagedAttentionPrefillMatchesTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  // A chunk on 63 cached tokens (starts mid-block), a decode, a full prefill, a short chunk
  // on a long context, an idle sequence and a one-block prefill in one call.
  const std::vector<Seq> mixed = {{37, 100}, {1, 17}, {130, 130}, {5, 2000}, {0, 9}, {64, 64}};
  const AttentionCase cases[] = {
      {"mixed gqa4 d128", 8, 2, 128, 16, 0, mixed, 0, 0, true},
      {"mha d64 bs32 window 50", 4, 4, 64, 32, 50, {{100, 150}, {3, 3}, {77, 77}}},
      {"gqa2 d256", 4, 2, 256, 16, 0, {{40, 90}, {17, 17}}},
      {"d80", 6, 3, 80, 16, 0, {{33, 70}, {12, 12}}},
      {"mqa16 d128 window 128", 16, 1, 128, 16, 128, {{300, 700}}},
      {"d8", 2, 2, 8, 16, 0, {{9, 20}, {1, 1}}},
      {"gqa3 d64", 6, 2, 64, 16, 0, {{21, 50}, {2, 40}}},
      {"mha d128 512 tokens", 8, 8, 128, 16, 0, {{512, 512}}},
      {"gqa4 d96 window 33 bs32", 8, 2, 96, 32, 33, {{70, 200}, {45, 45}}, 0, 0, true},
      {"gqa4 d64 bs24 (not a power of two)", 8, 2, 64, 24, 0, {{50, 90}, {1, 30}}},
      // At most 16 (token, head) rows per KV head: the decode-shaped kernel with several tokens.
      {"spec-decode gqa4 d128", 8, 2, 128, 16, 0, {{4, 100}, {2, 37}, {3, 3}, {1, 1}}},
      {"spec-decode gqa2 d64 window 30", 4, 2, 64, 32, 30, {{8, 300}, {5, 5}}},
  };
  int seed = 3000;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
}

TEST(CudaAttention, PagedAttentionHopperPrefillMatchesTheCpu) {
  // Shapes for the wgmma prefill kernel (attention_prefill_sm90.cu; elsewhere the
  // mma.sync one): 128-row tiles of packed (token, head) rows over 128-key tiles (64 at
  // D = 256) loaded by TMA boxes of one KV block, or of one tile when blocks are larger.
  // Lengths off the tiles, chunks on cached context, blocks the last tile only partly
  // covers (their tail slots hold NaN), groups of 1..16 (3: rows cross tokens unevenly).
  ASSERT_GT(cuda::DeviceCount(), 0);
  // Smaller grids than the GPU's multiprocessor count go to the split mma.sync kernel
  // unless the Hopper kernel is forced.
  setenv("LATTICE_ATTENTION_SM90", "1", 1);
  const AttentionCase cases[] = {
      {"gqa4 d128 777 tokens", 8, 2, 128, 16, 0, {{777, 777}}},
      {"chunks gqa4 d128 bs32", 8, 2, 128, 32, 0, {{300, 1000}, {129, 129}, {77, 3000}, {0, 5}, {1, 40}}},
      {"mha d128 bs64", 4, 4, 128, 64, 0, {{200, 333}, {65, 65}}},
      {"gqa8 d128 bs256", 16, 2, 128, 256, 0, {{150, 600}, {40, 40}}},
      {"gqa2 d64", 4, 2, 64, 16, 0, {{257, 400}, {31, 31}}},
      {"gqa2 d256 bs128", 4, 2, 256, 128, 0, {{130, 300}, {64, 64}}},
      {"gqa4 d128 window 200", 8, 2, 128, 16, 200, {{500, 700}, {33, 33}}},
      {"gqa3 d128", 6, 2, 128, 16, 0, {{100, 170}, {43, 43}}},
      {"mqa16 d64 bs32", 16, 1, 64, 32, 0, {{45, 45}, {20, 300}}},
      {"bounds gqa4 d128", 8, 2, 128, 16, 0, {{37, 100}, {20, 20}}, 200, 3000, true},
  };
  int seed = 3500;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
  // The grid is persistent: with 3 CTAs each walks many work items (of several
  // sequences, empty ones among them), carrying its K/V ring and Q buffer across them.
  setenv("LATTICE_ATTENTION_SM90_CTAS", "3", 1);
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
  unsetenv("LATTICE_ATTENTION_SM90_CTAS");
  unsetenv("LATTICE_ATTENTION_SM90");
  // Every launch above found the workspace's work counters zero (no memset before it)
  // only because the one before left them so; the last one did too.
  int32_t counters[cuda::Workspace::kCounters];
  ASSERT_EQ(cudaMemcpy(counters, SharedWorkspace().counters(), sizeof counters, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (int32_t counter : counters) EXPECT_EQ(counter, 0);
}

TEST(CudaAttention, PagedAttentionBoundsAboveTheMaximaMatchTheCpu) {
  // The launch shape follows the bounds; the kernels must follow the real lengths.
  ASSERT_GT(cuda::DeviceCount(), 0);
  const AttentionCase cases[] = {
      {"decode gqa4 d128", 8, 2, 128, 16, 0, {{1, 1}, {1, 17}, {1, 300}}, 0, 5000},
      {"decode as chunk bound gqa4 d64", 8, 2, 64, 16, 0, {{1, 40}, {1, 3}}, 4, 100},
      {"decode d80", 4, 1, 80, 16, 0, {{1, 20}, {1, 130}}, 0, 3000},
      {"prefill gqa4 d128", 8, 2, 128, 16, 0, {{37, 100}, {1, 17}, {20, 20}}, 9, 4000, true},
      {"prefill mha d64 window 20", 4, 4, 64, 32, 20, {{30, 60}, {2, 2}}, 70, 1000},
      {"prefill d32", 4, 2, 32, 16, 0, {{10, 30}}, 5, 500},
  };
  int seed = 4000;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
}

TEST(CudaAttention, PagedAttentionLongContextDecodeSplitsMatchTheCpu) {
  ASSERT_GT(cuda::DeviceCount(), 0);
  const AttentionCase cases[] = {
      {"16k gqa8 d128", 8, 1, 128, 16, 0, {{1, 16384}, {1, 5}}},
      {"9k mha d64 bs32", 4, 4, 64, 32, 0, {{1, 9000}}},
      {"12k d80 window 5000", 4, 2, 80, 16, 5000, {{1, 12000}, {1, 4999}}},
  };
  int seed = 5000;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
}

TEST(CudaAttention, PagedAttentionClusterMergedDecodeMatchesTheCpu) {
  // Decode on tensor cores with bounds up to 4096 keys merges its splits inside a
  // thread-block cluster (up to 16 splits, 2..8 at larger batches, odd sizes too);
  // empty splits (short sequences under a long bound) carry no weight.
  ASSERT_GT(cuda::DeviceCount(), 0);
  std::vector<Seq> eight, three;
  for (int i = 0; i < 8; ++i) eight.push_back({1, 1025});
  for (int i = 0; i < 3; ++i) three.push_back({1, 700 + 300 * i});
  const AttentionCase cases[] = {
      {"llama-8b batch 1", 32, 8, 128, 16, 0, {{1, 1025}}, 0, 63},
      {"llama-8b batch 8", 32, 8, 128, 16, 0, eight, 0, 63},
      {"3 seqs gqa4 d128", 8, 2, 128, 16, 0, three},
      {"short under a 4000 bound d64", 4, 1, 64, 16, 0, {{1, 2}, {1, 90}}, 0, 4000},
      {"d256 window 300", 4, 2, 256, 16, 300, {{1, 1500}}},
      {"mqa d128 bs32", 8, 1, 128, 32, 0, {{1, 3000}, {1, 64}}},
  };
  int seed = 5500;
  for (const AttentionCase& c : cases) RunAttentionCase(c, seed += 10);
}

TEST(CudaAttention, PagedAttentionClusterMergedDecodeOnASecondGpuOfTheProcess) {
  // The 16-split cluster needs a kernel attribute that each device's copy of the kernel
  // holds apart: after GPU 0 has launched it, GPU 1 (another thread, as in
  // lattice_step_bench --tp 2) must still get its own.
  if (cuda::DeviceCount() < 2) GTEST_SKIP() << "needs 2 GPUs";
  const AttentionCase batch1 = {"llama-8b batch 1", 32, 8, 128, 16, 0, {{1, 1025}}, 0, 63};
  RunAttentionCase(batch1, 5600);
  std::thread([&] {
    ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
    cuda::Workspace workspace(size_t{256} << 20);
    RunAttentionCase(batch1, 5610, &workspace);
  }).join();
}

TEST(CudaAttention, PagedAttentionCapturedGraphReplaysWithNewLengths) {
  // Captured once with bounds; replayed after the lengths on the device change.
  ASSERT_GT(cuda::DeviceCount(), 0);
  for (const int64_t head_dim : {128, 80}) {
    for (DType dtype : kDTypes) {
      AttentionCase c{"graph", 8, 2, head_dim, 16, 0, {{1, 100}, {1, 3000}, {1, 17}}, 0, 0, true};
      const std::vector<int32_t> capacity = {4000, 3000, 2500};
      Batch b = MakeBatch(c, dtype, 6000 + static_cast<int>(head_dim), capacity);
      cuda::PagedAttentionMetadata metadata = DeviceMetadata(c, b);
      metadata.max_seq_len = 4096;
      Tensor out = Poisoned(dtype, {b.num_tokens, c.q_heads, c.head_dim});
      cuda::Workspace& workspace = SharedWorkspace();
      workspace.Reset();
      cudaStream_t stream;
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
      cuda::PagedAttention(b.d_q_rows, b.d_k_cache, b.d_v_cache, metadata,
                           1.0f / std::sqrt(static_cast<float>(head_dim)), 0, out, workspace,
                           stream);
      ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
      ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

      for (const std::vector<int32_t>& lens :
           {std::vector<int32_t>{100, 3000, 17}, {4000, 1, 2500}}) {
        for (size_t s = 0; s < lens.size(); ++s) c.seqs[s].seq_len = b.seq_lens[s] = lens[s];
        ASSERT_EQ(cudaMemcpy(b.d_seq_lens.raw_data(), b.seq_lens.data(),
                             sizeof(int32_t) * lens.size(), cudaMemcpyHostToDevice),
                  cudaSuccess);
        ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        ExpectClose(CpuAttention(c, b), Back(out), AttentionTolerance(dtype),
                    Describe(c, dtype) + " graph replay", c.q_heads * c.head_dim, "token");
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaStreamDestroy(stream);
    }
  }
}

}  // namespace
}  // namespace lattice
