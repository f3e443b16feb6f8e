// Paged attention on the GPU over a varlen batch (see ops.h). The q/k norm + rotary +
// KV-cache write that precedes it is in rotary_kv_write.cu.
//
// PagedAttention: a CTA owns a tile of "rows", each a (query token, query head) pair of
// one KV head's group, packed token-major, so the G = Hq / Hkv heads that share a KV
// head read each K/V element once. It walks its keys in tiles gathered through the
// block table, with an online softmax in the log2 domain. When the grid would not fill
// the GPU, each CTA's key range is split (flash-decoding) and a second kernel merges
// the partial softmaxes. The split count comes from host values (the CTA count and
// max_seq_len), the split boundaries from the real lengths on the device, so a launch
// can be captured in a CUDA graph and replayed for any lengths within the bounds.
// Decode calls on tensor cores with short bounds (max_seq_len <= kClusterMaxSeqLen)
// launch each row tile's splits as one thread-block cluster instead and merge
// through distributed shared memory: no second kernel, no partials in global memory
// (batch-1 decode spent about as long in the merge kernel as in attention itself).
// bf16/f16 with head_dim 64, 128 or 256 and power-of-two blocks run on tensor cores
// (mma.sync m16n8k16 from ldmatrix fragments, K/V double-buffered with cp.async):
// calls of at most 16 rows per KV head (decode: the G heads of one token) split each
// 64-key tile over the 4 warps; longer ones give each warp 32 rows (16 at D = 256).
// f32 and other head dims run on a CUDA-core kernel that stages K/V tiles as f32.
// On Hopper, prefill-shaped calls go to the wgmma kernel of attention_prefill_sm90.cu
// first; what it declines (see there) runs here.
#include <atomic>
#include <cmath>

#include <cooperative_groups.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace lattice::cuda {

// attention_prefill_sm90.cu: launches the Hopper prefill kernel and returns true, or
// returns false (launching nothing) for a call it does not take.
bool PagedPrefillAttentionSm90(const Tensor& q, int64_t q_row_stride, const Tensor& k_cache, const Tensor& v_cache,
                               const PagedAttentionMetadata& metadata, float scale, int32_t sliding_window,
                               Tensor& out, Workspace& workspace, cudaStream_t stream);

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 128;        // every attention kernel: 4 warps
constexpr int kMaxSplits = 32;       // the merge kernel keeps one register per split
constexpr int kMinSplitKeys = 64;    // a split never has fewer keys (unless the range does)
constexpr int kMaxClusterSplits = 16;      // splits merged in one cluster (16: non-portable size)
constexpr int kClusterMaxSeqLen = 4096;    // longer bounds keep more splits and the merge kernel
// 16-row fragments per warp in prefill tiles (more run out of registers at D = 256).
constexpr int PrefillFrags(int64_t head_dim) { return head_dim <= 128 ? 2 : 1; }
constexpr int kGenericRows = 16;     // CUDA-core kernel: 4 warps x 4 rows
constexpr int kGenericKeys = 32;     // one key per lane

__device__ __forceinline__ float NegInf() { return -INFINITY; }

// ---------------------------------------------------------------------------------------
// PagedAttention: what both attention kernels and the merge share.

struct AttentionParams {
  const void* q;
  int64_t q_row_stride;
  const void* k_cache;
  const void* v_cache;
  void* out;
  float* partial_out;  // [num_splits, T, Hq, D] when num_splits > 1
  float* partial_lse;  // [num_splits, T, Hq], log2 domain; -inf for an empty split
  const int32_t* query_start_loc;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int32_t max_blocks_per_seq;
  int32_t block_size;
  int32_t block_shift;  // log2(block_size) when a power of two, else -1
  int32_t num_seqs;
  int32_t num_tokens;
  int32_t num_q_heads;
  int32_t num_kv_heads;
  int32_t group;
  int32_t head_dim;
  int32_t num_row_tiles;
  int32_t num_splits;
  int32_t cluster_merge;  // 1: the splits of a row tile are one cluster and merge in it
  int32_t sliding_window;
  float scale_log2;  // scale * log2(e): scores go straight to exp2
};

// The rows and keys of one CTA: grid (row tile x split, KV head, sequence).
struct TileRange {
  int q_begin;    // the sequence's first token in q / out
  int ctx;        // seq_len - q_len: the position of query 0
  int row_begin;  // packed rows [row_begin, row_end): row m is token m / G, head m % G
  int row_end;
  int key_begin;  // this split's keys [key_begin, key_end)
  int key_end;
};

// False when the CTA has no rows (the bounds exceed this sequence's q_len).
__device__ __forceinline__ bool GetTileRange(const AttentionParams& p, int rows_per_tile, int keys_per_tile,
                                             TileRange& r) {
  const int seq = blockIdx.z;
  const int split = blockIdx.x % p.num_splits;
  const int row_tile = p.num_row_tiles - 1 - static_cast<int>(blockIdx.x) / p.num_splits;  // longest rows first
  r.q_begin = p.query_start_loc[seq];
  const int q_len = p.query_start_loc[seq + 1] - r.q_begin;
  r.ctx = p.seq_lens[seq] - q_len;
  r.row_begin = row_tile * rows_per_tile;
  r.row_end = min(q_len * p.group, r.row_begin + rows_per_tile);
  if (r.row_begin >= r.row_end) return false;
  const int pos_first = r.ctx + r.row_begin / p.group;
  const int pos_last = r.ctx + (r.row_end - 1) / p.group;
  const int lo = p.sliding_window > 0 ? max(0, pos_first - p.sliding_window + 1) : 0;
  const int hi = pos_last + 1;
  int chunk = max((hi - lo + p.num_splits - 1) / p.num_splits, kMinSplitKeys);
  chunk = (chunk + keys_per_tile - 1) / keys_per_tile * keys_per_tile;
  r.key_begin = min(hi, lo + split * chunk);
  r.key_end = min(hi, r.key_begin + chunk);
  return true;
}

__device__ __forceinline__ bool Visible(int key, int pos, int window) {
  return key <= pos && (window <= 0 || key > pos - window);
}

// Element offset of (key, kv_head, 0) in a cache [num_blocks, block_size, Hkv, D].
__device__ __forceinline__ int64_t KvOffset(const AttentionParams& p, const int32_t* block_table, int key,
                                            int kv_head) {
  const int block = p.block_shift >= 0 ? key >> p.block_shift : key / p.block_size;
  const int in_block = p.block_shift >= 0 ? key & (p.block_size - 1) : key % p.block_size;
  const int64_t slot = static_cast<int64_t>(block_table[block]) * p.block_size + in_block;
  return (slot * p.num_kv_heads + kv_head) * p.head_dim;
}

// Index of (token, head) in out [T, Hq, D] / D, for packed row `row`.
__device__ __forceinline__ int64_t OutRow(const AttentionParams& p, const TileRange& r, int row, int kv_head) {
  return static_cast<int64_t>(r.q_begin + row / p.group) * p.num_q_heads + kv_head * p.group + row % p.group;
}

// ---------------------------------------------------------------------------------------
// Tensor-core kernel (bf16/f16; D = 64, 128, 256): 64 rows per CTA, 16 per warp.

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, or zeros when !valid (src is then not read).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void LdMatrixX4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c (16x8 f32) += a (16x16) * b (16x8).
template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// The merge of a cluster's splits (one per block, cluster rank = split): every block
// has put its rows' normalised outputs and lse in shared memory; after the cluster
// barrier block c merges elements c * kThreads + tid, + splits * kThreads, ... reading
// every block's shared memory, as MergeSplitsKernel does from global memory. The
// second barrier keeps each block's shared memory alive until all have read it.
template <typename T, int D>
__device__ __forceinline__ void ClusterMerge(const AttentionParams& p, const TileRange& r, int kv_head,
                                             const float* s_val, const float* s_lse) {
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const int splits = p.num_splits;
  const int elements = (r.row_end - r.row_begin) * D;
  for (int i = static_cast<int>(cluster.block_rank()) * kThreads + threadIdx.x; i < elements;
       i += splits * kThreads) {
    const int row = i / D, d = i % D;
    float lse[kMaxClusterSplits];
    float max_lse = NegInf();
#pragma unroll
    for (int s = 0; s < kMaxClusterSplits; ++s) {
      lse[s] = s < splits ? cluster.map_shared_rank(s_lse, s)[row] : NegInf();
      max_lse = fmaxf(max_lse, lse[s]);
    }
    float acc = 0.0f, total = 0.0f;
#pragma unroll
    for (int s = 0; s < kMaxClusterSplits; ++s) {
      if (s < splits) {
        const float w = lse[s] == NegInf() ? 0.0f : exp2f(lse[s] - max_lse);
        total += w;
        acc += w * cluster.map_shared_rank(s_val, s)[row * D + d];
      }
    }
    const int64_t out_row = OutRow(p, r, r.row_begin + row, kv_head);
    static_cast<T*>(p.out)[out_row * D + d] = FromFloat<T>(acc / total);
  }
  cluster.sync();
}

// Tile shapes. Prefill: 4 warps along the rows, kFrags x 16 rows each, every warp
// sees the whole K/V tile. Decode (at most 16 rows: the heads of one token's group):
// one 16-row tile, the 4 warps take 16 keys each of a 64-key tile, then merge their
// partial softmaxes through shared memory.
template <int D, int kFrags, bool kDecode>
struct FlashShape {
  static constexpr int kRows = kDecode ? 16 : 64 * kFrags;
  static constexpr int kKeys = kDecode || D <= 128 ? 64 : 32;  // keys per K/V tile
  static constexpr int kWarpKeys = kDecode ? 16 : kKeys;                 // keys per warp per tile
  static constexpr bool kQInRegisters = D <= 128 && kFrags == 1;         // else reloaded from shared memory
  static constexpr int kRowBytes = D * 2;
  static constexpr int kStageBytes = kKeys * kRowBytes;
  static constexpr int kMergeStride = D + 4;  // decode merge rows, f32, bank-skewed
  static constexpr size_t kSmemBytes = (kRows + 4 * kKeys) * kRowBytes;  // Q, 2 stages of K and V
  static_assert(!kDecode || kFrags == 1);
  // The warps' merge buffers, then the CTA's result rows and their lse (cluster merge).
  static_assert(!kDecode || 4 * 16 * kMergeStride * 4 + 2 * 4 * 16 * 4 + (16 * D + 16) * 4 <= 4 * kStageBytes);
};

// Byte offset of 16-byte chunk `chunk` of `row` in a [rows][D] 16-bit tile. The chunk
// is XOR-swizzled with row % 8 so that ldmatrix's 8 rows hit 8 different bank groups.
template <int D>
__device__ __forceinline__ uint32_t SwizzledOffset(int row, int chunk) {
  return row * D * 2 + ((chunk ^ (row & 7)) << 4);
}

// ex2.approx with denormals flushed: p underflows to 0 a little earlier, which the
// softmax cannot see.
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <typename T, int D, int kFrags, bool kDecode>
__global__ void __launch_bounds__(kThreads) FlashAttentionKernel(const AttentionParams p) {
  using Shape = FlashShape<D, kFrags, kDecode>;
  constexpr int kRows = Shape::kRows, kKeys = Shape::kKeys, kWarpKeys = Shape::kWarpKeys, kChunks = D / 8;
  constexpr int kRowBytes = Shape::kRowBytes, kStageBytes = Shape::kStageBytes;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // Q [kRows][D], then K [2][kKeys][D], then V [2][kKeys][D], all swizzled.
  const uint32_t q_smem = SmemAddr(smem_raw);
  const uint32_t k_smem = q_smem + kRows * kRowBytes;
  const uint32_t v_smem = k_smem + 2 * kStageBytes;

  WaitForPriorGrids();
  LaunchDependentGrids();
  TileRange r;
  if (!GetTileRange(p, kRows, kKeys, r)) return;
  const int kv_head = blockIdx.y;
  const int split = blockIdx.x % p.num_splits;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const T* q = static_cast<const T*>(p.q);
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(blockIdx.z) * p.max_blocks_per_seq;
  const int num_tiles = (r.key_end - r.key_begin + kKeys - 1) / kKeys;
  const int window = p.sliding_window;

  // This warp's rows (relative to the tile) and keys (relative to each K/V tile). The
  // thread's accumulator rows are lane / 4 and lane / 4 + 8 of each 16-row fragment;
  // rows past row_end (padding) take the last row's position and are never written.
  const int warp_row0 = kDecode ? 0 : warp * 16 * kFrags;
  const int warp_key0 = kDecode ? warp * 16 : 0;
  const int last_row = r.row_end - 1;
  const bool warp_active = r.row_begin + warp_row0 < r.row_end;
  const int warp_pos_first = r.ctx + min(r.row_begin + warp_row0, last_row) / p.group;
  const int warp_pos_last = r.ctx + min(r.row_begin + warp_row0 + 16 * kFrags - 1, last_row) / p.group;
  int pos[kFrags][2];
#pragma unroll
  for (int f = 0; f < kFrags; ++f) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      pos[f][h] = r.ctx + min(r.row_begin + warp_row0 + f * 16 + h * 8 + lane / 4, last_row) / p.group;
    }
  }

  // ldmatrix addresses. Every row a lane addresses is lane % 8 modulo 8, so chunk
  // (2 j + c) ^ (lane % 8) of 16-column step j splits into a per-lane base, a constant
  // ((j & ~3) << 5) and swizzle[j & 3].
  const int r8 = lane % 8;
  uint32_t swizzle[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) swizzle[k] = (k ^ (r8 >> 1)) << 5;
  const uint32_t k_lane =
      k_smem + (warp_key0 + r8 + (lane / 16) * 8) * kRowBytes + ((((lane / 8) % 2) ^ (r8 & 1)) << 4);
  const uint32_t v_lane =
      v_smem + (warp_key0 + r8 + ((lane / 8) % 2) * 8) * kRowBytes + (((lane / 16) ^ (r8 & 1)) << 4);
  const uint32_t q_lane = q_smem + (warp_row0 + lane % 16) * kRowBytes + (((lane / 16) ^ (r8 & 1)) << 4);
  auto step_offset = [&](int j) { return static_cast<uint32_t>((j & ~3) << 5) + swizzle[j & 3]; };

  float o[kFrags][D / 8][4] = {};
  float m_run[kFrags][2], l_run[kFrags][2];  // m_run in log2 units; l_run: this thread's columns only
#pragma unroll
  for (int f = 0; f < kFrags; ++f) m_run[f][0] = m_run[f][1] = NegInf(), l_run[f][0] = l_run[f][1] = 0.0f;

  if (num_tiles > 0) {
    // Loads: each thread copies one 16-byte chunk column of every kThreads / kChunks-th row.
    constexpr int kLoadRows = kThreads / kChunks;
    const int load_row = tid / kChunks, load_chunk = tid % kChunks;
#pragma unroll
    for (int i = 0; i < kRows / kLoadRows; ++i) {
      const int row = load_row + i * kLoadRows, m = r.row_begin + row;
      const bool valid = m < r.row_end;
      const T* src = q;
      if (valid) {
        src = q + static_cast<int64_t>(r.q_begin + m / p.group) * p.q_row_stride +
              static_cast<int64_t>(kv_head * p.group + m % p.group) * D + load_chunk * 8;
      }
      CpAsync16(q_smem + SwizzledOffset<D>(row, load_chunk), src, valid);
    }
    const int64_t kv_row_stride = static_cast<int64_t>(p.num_kv_heads) * D;
    const int64_t kv_column = static_cast<int64_t>(kv_head) * D + load_chunk * 8;
    auto load_kv = [&](int stage, int key0) {
#pragma unroll
      for (int i = 0; i < kKeys / kLoadRows; ++i) {
        const int row = load_row + i * kLoadRows, key = key0 + row;
        const bool valid = key < r.key_end;  // zeros past the range keep 0 * garbage out of P V
        int64_t offset = 0;
        if (valid) {  // block_size is a power of two here
          const int64_t block = block_table[key >> p.block_shift];
          offset = ((block << p.block_shift) + (key & (p.block_size - 1))) * kv_row_stride + kv_column;
        }
        const uint32_t dst = stage * kStageBytes + SwizzledOffset<D>(row, load_chunk);
        CpAsync16(k_smem + dst, k_cache + offset, valid);
        CpAsync16(v_smem + dst, v_cache + offset, valid);
      }
    };
    load_kv(0, r.key_begin);
    CpAsyncCommit();

    uint32_t q_frag[Shape::kQInRegisters ? D / 16 : 1][4];
    for (int t = 0; t < num_tiles; ++t) {
      const int key0 = r.key_begin + t * kKeys;
      if (t + 1 < num_tiles) {
        load_kv((t + 1) & 1, key0 + kKeys);
        CpAsyncCommit();
        CpAsyncWait<1>();
      } else {
        CpAsyncWait<0>();
      }
      __syncthreads();
      if constexpr (Shape::kQInRegisters) {
        if (t == 0) {
#pragma unroll
          for (int ks = 0; ks < D / 16; ++ks) LdMatrixX4(q_lane + step_offset(ks), q_frag[ks]);
        }
      }
      // Warp-uniform: skip a tile that none of this warp's rows can see.
      const int wkey0 = key0 + warp_key0;
      const bool relevant = warp_active && wkey0 < r.key_end && wkey0 <= warp_pos_last &&
                            (window <= 0 || wkey0 + kWarpKeys - 1 > warp_pos_first - window);
      if (relevant) {
        const uint32_t k_tile = k_lane + (t & 1) * kStageBytes;
        const uint32_t v_tile = v_lane + (t & 1) * kStageBytes;
        float s[kFrags][kWarpKeys / 8][4] = {};
        // S = Q K^T, the K fragments of one 16-wide slice of D loaded before their mmas.
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          uint32_t kb[kWarpKeys / 16][4];
#pragma unroll
          for (int np = 0; np < kWarpKeys / 16; ++np) {
            LdMatrixX4(k_tile + np * 16 * kRowBytes + step_offset(ks), kb[np]);
          }
#pragma unroll
          for (int f = 0; f < kFrags; ++f) {
            uint32_t a[4];
            if constexpr (Shape::kQInRegisters) {
              a[0] = q_frag[ks][0], a[1] = q_frag[ks][1], a[2] = q_frag[ks][2], a[3] = q_frag[ks][3];
            } else {
              LdMatrixX4(q_lane + f * 16 * kRowBytes + step_offset(ks), a);
            }
#pragma unroll
            for (int np = 0; np < kWarpKeys / 16; ++np) {
              Mma<T>(s[f][2 * np], a, kb[np][0], kb[np][1]);
              Mma<T>(s[f][2 * np + 1], a, kb[np][2], kb[np][3]);
            }
          }
        }
        // Mask, online softmax (log2 units; scale > 0, so the raw max is the scaled max).
        // Columns 2 (lane % 4) + {0, 1} of each 8-key block.
        const bool need_mask = wkey0 + kWarpKeys > r.key_end || wkey0 + kWarpKeys - 1 > warp_pos_first ||
                               (window > 0 && wkey0 <= warp_pos_last - window);
        if (need_mask) {
#pragma unroll
          for (int f = 0; f < kFrags; ++f) {
#pragma unroll
            for (int nb = 0; nb < kWarpKeys / 8; ++nb) {
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int key = wkey0 + nb * 8 + 2 * (lane % 4) + (e & 1);
                if (!(key < r.key_end && Visible(key, pos[f][e / 2], window))) s[f][nb][e] = NegInf();
              }
            }
          }
        }
#pragma unroll
        for (int f = 0; f < kFrags; ++f) {
          float tile_max[2] = {NegInf(), NegInf()};
#pragma unroll
          for (int nb = 0; nb < kWarpKeys / 8; ++nb) {
#pragma unroll
            for (int e = 0; e < 4; ++e) tile_max[e / 2] = fmaxf(tile_max[e / 2], s[f][nb][e]);
          }
          float corr[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float mx = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float new_m = fmaxf(m_run[f][h], mx * p.scale_log2);
            // A row that has seen no key yet keeps max -inf: exponentiate against 0 (all terms are 0).
            const float base = new_m == NegInf() ? 0.0f : new_m;
            corr[h] = FastExp2(m_run[f][h] - base);
            m_run[f][h] = new_m;
            float sum = 0.0f;
#pragma unroll
            for (int nb = 0; nb < kWarpKeys / 8; ++nb) {
              s[f][nb][2 * h] = FastExp2(fmaf(s[f][nb][2 * h], p.scale_log2, -base));
              s[f][nb][2 * h + 1] = FastExp2(fmaf(s[f][nb][2 * h + 1], p.scale_log2, -base));
              sum += s[f][nb][2 * h] + s[f][nb][2 * h + 1];
            }
            l_run[f][h] = l_run[f][h] * corr[h] + sum;
          }
          // Once the running maxima settle, most tiles change none of them: skip the rescale.
          if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
            for (int db = 0; db < D / 8; ++db) {
              o[f][db][0] *= corr[0];
              o[f][db][1] *= corr[0];
              o[f][db][2] *= corr[1];
              o[f][db][3] *= corr[1];
            }
          }
        }
        // O += P V: the S accumulators of two 8-key blocks are the A fragment of one k16 step.
#pragma unroll
        for (int kk = 0; kk < kWarpKeys / 16; ++kk) {
          uint32_t a[kFrags][4];
#pragma unroll
          for (int f = 0; f < kFrags; ++f) {
            a[f][0] = PackPair<T>(s[f][2 * kk][0], s[f][2 * kk][1]);
            a[f][1] = PackPair<T>(s[f][2 * kk][2], s[f][2 * kk][3]);
            a[f][2] = PackPair<T>(s[f][2 * kk + 1][0], s[f][2 * kk + 1][1]);
            a[f][3] = PackPair<T>(s[f][2 * kk + 1][2], s[f][2 * kk + 1][3]);
          }
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t vb[4];
            LdMatrixX4Trans(v_tile + kk * 16 * kRowBytes + step_offset(dp), vb);
#pragma unroll
            for (int f = 0; f < kFrags; ++f) {
              Mma<T>(o[f][2 * dp], a[f], vb[0], vb[1]);
              Mma<T>(o[f][2 * dp + 1], a[f], vb[2], vb[3]);
            }
          }
        }
      }
      __syncthreads();  // the next iteration's loads overwrite this stage
    }
  }

#pragma unroll
  for (int f = 0; f < kFrags; ++f) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l_run[f][h] += __shfl_xor_sync(0xffffffffu, l_run[f][h], 1);
      l_run[f][h] += __shfl_xor_sync(0xffffffffu, l_run[f][h], 2);
    }
  }
  const int64_t partial_stride = static_cast<int64_t>(p.num_tokens) * p.num_q_heads;

  if constexpr (kDecode) {
    // Merge the 4 warps' softmaxes of the same 16 rows through the (now idle) K/V buffers.
    constexpr int kStride = Shape::kMergeStride;
    float* s_o = reinterpret_cast<float*>(smem_raw + kRows * kRowBytes);  // [4][16][kStride] over K/V
    float* s_m = s_o + 4 * 16 * kStride;         // [4][16]
    float* s_l = s_m + 4 * 16;                   // [4][16]
    float* s_val = s_l + 4 * 16;                 // [16][D]: this split's rows (cluster merge)
    float* s_lse = s_val + 16 * D;               // [16]
    __syncthreads();  // when there were no tiles
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = h * 8 + lane / 4;
      if (lane % 4 == 0) {
        s_m[warp * 16 + row] = m_run[0][h];
        s_l[warp * 16 + row] = l_run[0][h];
      }
#pragma unroll
      for (int db = 0; db < D / 8; ++db) {
        *reinterpret_cast<float2*>(s_o + (warp * 16 + row) * kStride + db * 8 + 2 * (lane % 4)) =
            make_float2(o[0][db][2 * h], o[0][db][2 * h + 1]);
      }
    }
    __syncthreads();
    for (int i = tid; i < 16 * D; i += kThreads) {
      const int row = i / D, d = i % D;
      if (r.row_begin + row >= r.row_end) break;  // rows are in order: the rest are padding too
      float m = NegInf();
#pragma unroll
      for (int w = 0; w < 4; ++w) m = fmaxf(m, s_m[w * 16 + row]);
      const float base = m == NegInf() ? 0.0f : m;
      float l = 0.0f, acc = 0.0f;
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float scale = exp2f(s_m[w * 16 + row] - base);
        l += s_l[w * 16 + row] * scale;
        acc += s_o[(w * 16 + row) * kStride + d] * scale;
      }
      const float value = l > 0.0f ? acc / l : 0.0f;
      const float lse = l > 0.0f ? m + log2f(l) : NegInf();
      const int64_t out_row = OutRow(p, r, r.row_begin + row, kv_head);
      if (p.num_splits == 1) {
        static_cast<T*>(p.out)[out_row * D + d] = FromFloat<T>(value);
      } else if (p.cluster_merge) {
        s_val[row * D + d] = value;
        if (d == 0) s_lse[row] = lse;
      } else {
        p.partial_out[(split * partial_stride + out_row) * D + d] = value;
        if (d == 0) p.partial_lse[split * partial_stride + out_row] = lse;
      }
    }
    if (p.num_splits > 1 && p.cluster_merge) ClusterMerge<T, D>(p, r, kv_head, s_val, s_lse);
  } else {
    if (!warp_active) return;
#pragma unroll
    for (int f = 0; f < kFrags; ++f) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = r.row_begin + warp_row0 + f * 16 + h * 8 + lane / 4;
        if (row >= r.row_end) continue;
        const float l = l_run[f][h];
        const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
        const int64_t out_row = OutRow(p, r, row, kv_head);
#pragma unroll
        for (int db = 0; db < D / 8; ++db) {
          const int d = db * 8 + 2 * (lane % 4);
          const float v0 = o[f][db][2 * h] * inv_l, v1 = o[f][db][2 * h + 1] * inv_l;
          if (p.num_splits == 1) {
            *reinterpret_cast<uint32_t*>(static_cast<T*>(p.out) + out_row * D + d) = PackPair<T>(v0, v1);
          } else {
            *reinterpret_cast<float2*>(p.partial_out + (split * partial_stride + out_row) * D + d) =
                make_float2(v0, v1);
          }
        }
        if (p.num_splits > 1 && lane % 4 == 0) {
          p.partial_lse[split * partial_stride + out_row] = l > 0.0f ? m_run[f][h] + log2f(l) : NegInf();
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// CUDA-core kernel (any float dtype, D <= 256): 16 rows per CTA, 4 per warp; K/V tiles
// of 32 keys in shared memory as f32, one key per lane for the scores and one feature
// per lane (D / 32 of them) for the output.

template <typename T, int kPerLane>
__global__ void __launch_bounds__(kThreads) GenericAttentionKernel(const AttentionParams p) {
  constexpr int kRowsPerWarp = kGenericRows / (kThreads / 32);
  const int D = p.head_dim;
  extern __shared__ float smem_f[];
  float* s_q = smem_f;                        // [kGenericRows][D], times scale * log2(e)
  float* s_k = s_q + kGenericRows * D;        // [kGenericKeys][D + 1]: padded, lane j reads row j
  float* s_v = s_k + kGenericKeys * (D + 1);  // [kGenericKeys][D]

  WaitForPriorGrids();
  LaunchDependentGrids();
  TileRange r;
  if (!GetTileRange(p, kGenericRows, kGenericKeys, r)) return;
  const int kv_head = blockIdx.y;
  const int split = blockIdx.x % p.num_splits;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const T* q = static_cast<const T*>(p.q);
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(blockIdx.z) * p.max_blocks_per_seq;
  const int window = p.sliding_window;

  for (int i = tid; i < kGenericRows * D; i += kThreads) {
    const int row = i / D, d = i % D, m = r.row_begin + row;
    float v = 0.0f;
    if (m < r.row_end) {
      v = ToFloat(q[static_cast<int64_t>(r.q_begin + m / p.group) * p.q_row_stride +
                    static_cast<int64_t>(kv_head * p.group + m % p.group) * D + d]) *
          p.scale_log2;
    }
    s_q[i] = v;
  }

  float acc[kRowsPerWarp][kPerLane] = {};
  float m_run[kRowsPerWarp], l_run[kRowsPerWarp];  // l_run: this lane's keys only
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) m_run[j] = NegInf(), l_run[j] = 0.0f;

  for (int key0 = r.key_begin; key0 < r.key_end; key0 += kGenericKeys) {
    __syncthreads();  // s_q written / the previous tile consumed
    for (int i = tid; i < kGenericKeys * D; i += kThreads) {
      const int row = i / D, d = i % D, key = key0 + row;
      float kv = 0.0f, vv = 0.0f;
      if (key < r.key_end) {
        const int64_t offset = KvOffset(p, block_table, key, kv_head) + d;
        kv = ToFloat(k_cache[offset]);
        vv = ToFloat(v_cache[offset]);
      }
      s_k[row * (D + 1) + d] = kv;
      s_v[row * D + d] = vv;
    }
    __syncthreads();
    const int key = key0 + lane;
    const int tile_keys = min(kGenericKeys, r.key_end - key0);
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int row = warp * kRowsPerWarp + j;
      if (r.row_begin + row >= r.row_end) break;  // warp-uniform
      const int pos = r.ctx + (r.row_begin + row) / p.group;
      float s = NegInf();
      if (key < r.key_end && Visible(key, pos, window)) {
        const float* q_row = s_q + row * D;
        const float* k_row = s_k + lane * (D + 1);
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += q_row[d] * k_row[d];
        s = dot;
      }
      const float tile_max = WarpMax(s);
      if (tile_max == NegInf()) continue;  // warp-uniform: nothing visible
      const float new_m = fmaxf(m_run[j], tile_max);
      const float corr = exp2f(m_run[j] - new_m);
      const float prob = exp2f(s - new_m);
      m_run[j] = new_m;
      l_run[j] = l_run[j] * corr + prob;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[j][i] *= corr;
      for (int k = 0; k < tile_keys; ++k) {
        const float pk = __shfl_sync(0xffffffffu, prob, k);
        const float* v_row = s_v + k * D;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < D) acc[j][i] += pk * v_row[d];
        }
      }
    }
  }

  const int64_t partial_stride = static_cast<int64_t>(p.num_tokens) * p.num_q_heads;
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int row = r.row_begin + warp * kRowsPerWarp + j;
    const float l = WarpSum(l_run[j]);
    if (row >= r.row_end) continue;
    const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
    const int64_t out_row = OutRow(p, r, row, kv_head);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d >= D) continue;
      if (p.num_splits == 1) {
        static_cast<T*>(p.out)[out_row * D + d] = FromFloat<T>(acc[j][i] * inv_l);
      } else {
        p.partial_out[(split * partial_stride + out_row) * D + d] = acc[j][i] * inv_l;
      }
    }
    if (p.num_splits > 1 && lane == 0) {
      p.partial_lse[split * partial_stride + out_row] = l > 0.0f ? m_run[j] + log2f(l) : NegInf();
    }
  }
}

// One thread per output element: out = sum_s 2^(lse_s - max) o_s / sum_s 2^(lse_s - max).
// Empty splits hold o = 0 and lse = -inf. All of a thread's loads are independent, so
// the merge costs about two memory latencies.
template <typename T>
__global__ void MergeSplitsKernel(const AttentionParams p) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t rows = static_cast<int64_t>(p.num_tokens) * p.num_q_heads;
  const int D = p.head_dim;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * D) return;
  const int64_t row = i / D;
  if (row / p.num_q_heads >= p.query_start_loc[p.num_seqs]) return;  // padding tokens
  float lse[kMaxSplits];
  float max_lse = NegInf();
#pragma unroll
  for (int s = 0; s < kMaxSplits; ++s) {
    lse[s] = s < p.num_splits ? p.partial_lse[s * rows + row] : NegInf();
    max_lse = fmaxf(max_lse, lse[s]);
  }
  float acc = 0.0f, total = 0.0f;
#pragma unroll
  for (int s = 0; s < kMaxSplits; ++s) {
    if (s < p.num_splits) {
      const float w = lse[s] == NegInf() ? 0.0f : exp2f(lse[s] - max_lse);
      total += w;
      acc += w * p.partial_out[s * rows * D + i];
    }
  }
  static_cast<T*>(p.out)[i] = FromFloat<T>(acc / total);
}

// ---------------------------------------------------------------------------------------
// Host side.

// Enough splits of each CTA's keys for about two CTAs per SM, none shorter than
// kMinSplitKeys at max_seq_len.
int ChooseSplits(int64_t ctas, int64_t max_seq_len) {
  const int64_t target = 2 * static_cast<int64_t>(MultiprocessorCount());
  int64_t splits = (target + ctas - 1) / ctas;
  splits = std::min<int64_t>(splits, (max_seq_len + kMinSplitKeys - 1) / kMinSplitKeys);
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxSplits));
}

template <typename Kernel>
void Launch(Kernel kernel, dim3 grid, size_t smem, cudaStream_t stream, const AttentionParams& params,
            unsigned cluster_x = 1) {
  LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
  LaunchKernelInClusters(LaunchMode::kProgrammatic, cluster_x, kernel, grid, kThreads, smem, stream, params);
}

// The most splits the decode kernel merges in one cluster on this GPU: 16 (a
// non-portable cluster size) where such clusters can be resident, else 8 (the
// portable size; also while `stream` is being captured and nothing was asked yet).
// Per device: the query below also allows the non-portable size, a function attribute
// of each device's copy of the kernel, and one process may drive several GPUs (a thread
// each in lattice_step_bench and the tests).
template <typename T, int D>
int MaxClusterSplits(cudaStream_t stream) {
  static std::atomic<int> cached[kMaxDevices] = {};
  const int device = CurrentDevice();
  int limit = cached[device].load(std::memory_order_relaxed);
  if (limit == 0) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    LATTICE_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
    if (capturing != cudaStreamCaptureStatusNone) return 8;
    auto kernel = FlashAttentionKernel<T, D, 1, true>;
    const int smem = static_cast<int>(FlashShape<D, 1, true>::kSmemBytes);
    LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    limit = 8;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess) {
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(kMaxClusterSplits);
      config.blockDim = dim3(kThreads);
      config.dynamicSmemBytes = smem;
      cudaLaunchAttribute attribute{};
      attribute.id = cudaLaunchAttributeClusterDimension;
      attribute.val.clusterDim.x = kMaxClusterSplits;
      attribute.val.clusterDim.y = 1;
      attribute.val.clusterDim.z = 1;
      config.attrs = &attribute;
      config.numAttrs = 1;
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) == cudaSuccess && clusters > 0) {
        limit = kMaxClusterSplits;
      }
    }
    cudaGetLastError();  // a refused query is not an error of the next launch
    cached[device].store(limit, std::memory_order_relaxed);
  }
  return limit;
}

int MaxClusterSplits(DType dtype, int64_t head_dim, cudaStream_t stream) {
  int limit = 1;
  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if constexpr (!std::is_same_v<T, float>) {
      limit = head_dim == 64    ? MaxClusterSplits<T, 64>(stream)
              : head_dim == 128 ? MaxClusterSplits<T, 128>(stream)
                                : MaxClusterSplits<T, 256>(stream);
    }
  });
  return limit;
}

template <typename T, int D>
void LaunchFlash(bool decode, const AttentionParams& params, dim3 grid, cudaStream_t stream) {
  if (decode) {
    Launch(FlashAttentionKernel<T, D, 1, true>, grid, FlashShape<D, 1, true>::kSmemBytes, stream, params,
           params.cluster_merge ? static_cast<unsigned>(params.num_splits) : 1u);
  } else {
    Launch(FlashAttentionKernel<T, D, PrefillFrags(D), false>, grid,
           FlashShape<D, PrefillFrags(D), false>::kSmemBytes, stream, params);
  }
}

template <typename T>
void LaunchGeneric(const AttentionParams& params, dim3 grid, cudaStream_t stream) {
  const int D = params.head_dim;
  const size_t smem = sizeof(float) * (kGenericRows * D + kGenericKeys * (D + 1) + kGenericKeys * D);
  switch ((D + 31) / 32) {
    case 1: return Launch(GenericAttentionKernel<T, 1>, grid, smem, stream, params);
    case 2: return Launch(GenericAttentionKernel<T, 2>, grid, smem, stream, params);
    case 3: return Launch(GenericAttentionKernel<T, 3>, grid, smem, stream, params);
    case 4: return Launch(GenericAttentionKernel<T, 4>, grid, smem, stream, params);
    case 5: return Launch(GenericAttentionKernel<T, 5>, grid, smem, stream, params);
    case 6: return Launch(GenericAttentionKernel<T, 6>, grid, smem, stream, params);
    case 7: return Launch(GenericAttentionKernel<T, 7>, grid, smem, stream, params);
    case 8: return Launch(GenericAttentionKernel<T, 8>, grid, smem, stream, params);
    default: LATTICE_CHECK_MSG(false, "PagedAttention: head_dim %d > 256", D);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void PagedAttention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const PagedAttentionMetadata& metadata, float scale, int32_t sliding_window, Tensor& out,
                    Workspace& workspace, cudaStream_t stream) {
  const DType dtype = q.dtype();
  CheckDeviceTensor(q, dtype, "q");
  CheckDeviceTensor(k_cache, dtype, "k_cache");
  CheckDeviceTensor(v_cache, dtype, "v_cache");
  CheckDeviceTensor(out, dtype, "out");
  LATTICE_CHECK(k_cache.ndim() == 4 && v_cache.shape() == k_cache.shape());
  LATTICE_CHECK(out.ndim() == 3 && q.ndim() >= 2 && q.dim(0) == out.dim(0));
  const int64_t num_tokens = out.dim(0), num_q_heads = out.dim(1), head_dim = out.dim(2);
  const int64_t num_kv_heads = k_cache.dim(2);
  LATTICE_CHECK(k_cache.dim(3) == head_dim && k_cache.dim(1) == metadata.block_size);
  LATTICE_CHECK(num_kv_heads > 0 && num_q_heads % num_kv_heads == 0);
  const int64_t q_row_stride = num_tokens > 0 ? q.numel() / num_tokens : 0;
  LATTICE_CHECK_MSG(q_row_stride >= num_q_heads * head_dim, "q rows hold %lld < Hq * D = %lld values",
                    static_cast<long long>(q_row_stride), static_cast<long long>(num_q_heads * head_dim));
  const int num_seqs = metadata.num_seqs;
  if (num_tokens == 0 || num_seqs == 0) return;
  CheckDeviceTensor(metadata.query_start_loc, DType::kI32, "query_start_loc");
  CheckDeviceTensor(metadata.seq_lens, DType::kI32, "seq_lens");
  CheckDeviceTensor(metadata.block_tables, DType::kI32, "block_tables");
  LATTICE_CHECK(metadata.query_start_loc.numel() >= num_seqs + 1 && metadata.seq_lens.numel() >= num_seqs);
  LATTICE_CHECK(metadata.block_tables.ndim() == 2 && metadata.block_tables.dim(0) >= num_seqs);
  LATTICE_CHECK(metadata.max_query_len >= 1 && metadata.max_seq_len >= 1);
  LATTICE_CHECK_MSG(scale > 0.0f, "PagedAttention: scale %g must be positive", scale);
  LATTICE_CHECK(num_seqs < 65536 && num_kv_heads < 65536 && head_dim <= 256);

  AttentionParams params{};
  params.q = q.raw_data();
  params.q_row_stride = q_row_stride;
  params.k_cache = k_cache.raw_data();
  params.v_cache = v_cache.raw_data();
  params.out = out.raw_data();
  params.query_start_loc = Ptr<int32_t>(metadata.query_start_loc);
  params.seq_lens = Ptr<int32_t>(metadata.seq_lens);
  params.block_tables = Ptr<int32_t>(metadata.block_tables);
  params.max_blocks_per_seq = static_cast<int32_t>(metadata.block_tables.dim(1));
  params.block_size = metadata.block_size;
  params.block_shift = -1;
  for (int shift = 0; shift < 31; ++shift) {
    if (metadata.block_size == 1 << shift) params.block_shift = shift;
  }
  params.num_seqs = num_seqs;
  params.num_tokens = static_cast<int32_t>(num_tokens);
  params.num_q_heads = static_cast<int32_t>(num_q_heads);
  params.num_kv_heads = static_cast<int32_t>(num_kv_heads);
  params.group = static_cast<int32_t>(num_q_heads / num_kv_heads);
  params.head_dim = static_cast<int32_t>(head_dim);
  params.sliding_window = sliding_window;
  params.scale_log2 = scale * kLog2e;

  // Tensor cores for 16-bit types and the head dims they are instantiated for, when
  // every 16-byte chunk of q and the caches is aligned and block_size is a power of two.
  const bool tensor_cores = dtype != DType::kF32 && (head_dim == 64 || head_dim == 128 || head_dim == 256) &&
                            params.block_shift >= 0 &&
                            q_row_stride % 8 == 0 && Aligned16(q.raw_data()) && Aligned16(k_cache.raw_data()) &&
                            Aligned16(v_cache.raw_data());
  // Decode-shaped calls (a group's rows of one token fit a 16-row tile) split each K/V
  // tile over the warps; longer ones give each warp its own rows.
  const int64_t max_rows = static_cast<int64_t>(metadata.max_query_len) * params.group;
  const bool decode = max_rows <= 16;
  if (tensor_cores && !decode &&
      PagedPrefillAttentionSm90(q, q_row_stride, k_cache, v_cache, metadata, scale, sliding_window, out, workspace,
                                stream)) {
    return;
  }
  const int rows_per_cta = !tensor_cores ? kGenericRows : decode ? 16 : 64 * PrefillFrags(head_dim);
  const int64_t row_tiles = (max_rows + rows_per_cta - 1) / rows_per_cta;
  LATTICE_CHECK(row_tiles * kMaxSplits < (int64_t{1} << 31));
  params.num_row_tiles = static_cast<int32_t>(row_tiles);
  params.num_splits = ChooseSplits(row_tiles * num_kv_heads * num_seqs, metadata.max_seq_len);
  // Short decode bounds: at most a cluster's worth of splits, merged in the cluster.
  if (decode && tensor_cores && params.num_splits > 1 && metadata.max_seq_len <= kClusterMaxSeqLen) {
    params.num_splits = std::min(params.num_splits, MaxClusterSplits(dtype, head_dim, stream));
    params.cluster_merge = params.num_splits > 1 ? 1 : 0;
  }
  if (params.num_splits > 1 && !params.cluster_merge) {
    const int64_t rows = num_tokens * num_q_heads;
    params.partial_out = static_cast<float*>(workspace.Allocate(sizeof(float) * params.num_splits * rows * head_dim));
    params.partial_lse = static_cast<float*>(workspace.Allocate(sizeof(float) * params.num_splits * rows));
  }
  const dim3 grid(static_cast<unsigned>(row_tiles * params.num_splits), static_cast<unsigned>(num_kv_heads),
                  static_cast<unsigned>(num_seqs));

  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if constexpr (std::is_same_v<T, float>) {
      LaunchGeneric<T>(params, grid, stream);
    } else if (!tensor_cores) {
      LaunchGeneric<T>(params, grid, stream);
    } else if (head_dim == 64) {
      LaunchFlash<T, 64>(decode, params, grid, stream);
    } else if (head_dim == 128) {
      LaunchFlash<T, 128>(decode, params, grid, stream);
    } else {
      LaunchFlash<T, 256>(decode, params, grid, stream);
    }
    if (params.num_splits > 1 && !params.cluster_merge) {
      const int64_t elements = num_tokens * num_q_heads * head_dim;
      LaunchKernel(LaunchMode::kProgrammatic, MergeSplitsKernel<T>,
                   static_cast<unsigned>((elements + kThreads - 1) / kThreads), kThreads, 0, stream, params);
    }
  });
}

}  // namespace lattice::cuda
