// Mixture of experts on the GPU (see ops.h): softmax top-k routing, the fused expert
// MLPs and the residual-style adds around them.
//
// FusedMoe runs in four launches whose shapes depend only on (T, k, E, H, I):
//   1. align: one block counts the (token, slot) pairs of each expert, pads each
//      expert's rows to the tile height kBlockM, scans, and scatters the pair indices
//      into `sorted_pairs` (-1 in padding rows) with a tile -> expert map (-1 past the
//      last used tile), as vLLM's moe_align_block_size;
//   2. gate/up GEMM: a CTA per (tile, 32 or 64 intermediate columns) gathers its tile's
//      token rows, multiplies them by the expert's gate and up rows and writes
//      silu(gate) * up to `intermediate` [padded rows, I];
//   3. down GEMM: a CTA per (tile, 64 hidden columns) multiplies intermediate rows by
//      w2_e, scales each row by its routing weight and writes it to `pair_out` [T*k, H];
//   4. combine: out[t] = sum of token t's k pair rows in slot order (deterministic, no
//      float atomics). Pairs with an expert outside [0, E) are skipped throughout.
// The grid covers the worst-case number of tiles; CTAs of unused tiles exit at once.
// bf16/f16 GEMMs use WMMA tensor cores on a cp.async multistage pipeline (16-byte
// loads when rows are 16-byte aligned, scalar loads otherwise); f32 uses FMA. Decode
// batches get 16-row tiles so each expert's weights are streamed about once per GEMM.
#include "kernels/cuda/ops.h"

#include <mma.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/workspace.h"
#include "kernels/moe_route.h"

namespace lattice::cuda {
namespace {

// ---- routing ----

constexpr int kRoutingWarps = 4;

// One warp per token: softmax in shared memory, then top_k rounds of a warp argmax
// (ties to the lower id), each removing its winner.
template <typename T>
__global__ void TopKRoutingKernel(const T* __restrict__ logits, int64_t tokens, int experts, int top_k,
                                  bool renormalize, int32_t* __restrict__ topk_ids, float* __restrict__ topk_weights) {
  extern __shared__ float routing_smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRoutingWarps + warp;
  if (t >= tokens) return;  // the whole warp
  float* probs = routing_smem + warp * experts;
  const T* row = logits + t * experts;
  float max_logit = -INFINITY;
  for (int e = lane; e < experts; e += 32) {
    probs[e] = ToFloat(row[e]);
    max_logit = fmaxf(max_logit, probs[e]);
  }
  max_logit = WarpMax(max_logit);
  float sum = 0.0f;
  for (int e = lane; e < experts; e += 32) {
    probs[e] = expf(probs[e] - max_logit);
    sum += probs[e];
  }
  sum = WarpSum(sum);
  for (int e = lane; e < experts; e += 32) probs[e] /= sum;  // as the CPU: exp / sum
  __syncwarp();

  int32_t* ids = topk_ids + t * top_k;
  float* weights = topk_weights + t * top_k;
  float kept = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    float best = -1.0f;  // taken experts hold -1, every probability is >= 0
    int best_id = INT_MAX;
    for (int e = lane; e < experts; e += 32) {
      if (probs[e] > best) best = probs[e], best_id = e;  // e ascends: ties keep the lower id
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, best, offset);
      const int other_id = __shfl_xor_sync(0xffffffffu, best_id, offset);
      if (other > best || (other == best && other_id < best_id)) best = other, best_id = other_id;
    }
    kept += best;  // best first, the CPU's order
    if (lane == 0) {
      ids[j] = best_id;
      weights[j] = best;
      probs[best_id] = -1.0f;
    }
    __syncwarp();
  }
  if (renormalize && lane == 0) {
    for (int j = 0; j < top_k; ++j) weights[j] /= kept;
  }
}

// ---- align: pairs sorted by expert, padded to tiles ----

constexpr int kAlignThreads = 1024;
constexpr int kMaxExperts = 4096;  // three int arrays of E in shared memory

// Exclusive prefix sum over the block; *total gets the sum of all values.
__device__ int BlockExclusiveScan(int value, int* total) {
  __shared__ int warp_sums[kAlignThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int inclusive = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    const int other = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int sums = warp_sums[lane];  // kAlignThreads / 32 == 32 warps
    for (int offset = 1; offset < 32; offset *= 2) {
      const int other = __shfl_up_sync(0xffffffffu, sums, offset);
      if (lane >= offset) sums += other;
    }
    warp_sums[lane] = sums;
  }
  __syncthreads();
  *total = warp_sums[kAlignThreads / 32 - 1];
  return (warp > 0 ? warp_sums[warp - 1] : 0) + inclusive - value;
}

__global__ void __launch_bounds__(kAlignThreads)
    MoeAlignKernel(const int32_t* __restrict__ topk_ids, int64_t num_pairs, int experts, int block_m,
                   int max_tiles, int32_t* __restrict__ sorted_pairs, int32_t* __restrict__ tile_expert) {
  extern __shared__ int32_t align_smem[];
  int32_t* counts = align_smem;
  int32_t* tile_start = align_smem + experts;
  int32_t* cursor = align_smem + 2 * experts;
  for (int e = threadIdx.x; e < experts; e += kAlignThreads) counts[e] = 0, cursor[e] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < num_pairs; i += kAlignThreads) {
    const int32_t e = topk_ids[i];
    if (0 <= e && e < experts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();

  // Each thread scans a contiguous run of experts.
  const int per_thread = (experts + kAlignThreads - 1) / kAlignThreads;
  const int begin = min(experts, static_cast<int>(threadIdx.x) * per_thread);
  const int end = min(experts, begin + per_thread);
  int tiles = 0;
  for (int e = begin; e < end; ++e) tiles += (counts[e] + block_m - 1) / block_m;
  int used_tiles = 0;
  int start = BlockExclusiveScan(tiles, &used_tiles);
  for (int e = begin; e < end; ++e) {
    tile_start[e] = start;
    const int expert_tiles = (counts[e] + block_m - 1) / block_m;
    for (int j = 0; j < expert_tiles; ++j) tile_expert[start + j] = e;
    start += expert_tiles;
  }
  for (int j = used_tiles + threadIdx.x; j < max_tiles; j += kAlignThreads) tile_expert[j] = -1;
  for (int64_t r = threadIdx.x; r < static_cast<int64_t>(used_tiles) * block_m; r += kAlignThreads) {
    sorted_pairs[r] = -1;
  }
  __syncthreads();  // orders the -1 fill before the scatter, and publishes tile_start

  for (int64_t i = threadIdx.x; i < num_pairs; i += kAlignThreads) {
    const int32_t e = topk_ids[i];
    if (0 <= e && e < experts) {
      const int slot = atomicAdd(&cursor[e], 1);
      sorted_pairs[static_cast<int64_t>(tile_start[e]) * block_m + slot] = static_cast<int32_t>(i);
    }
  }
}

// ---- grouped GEMMs ----

constexpr int kGemmThreads = 128;  // 4 warps
constexpr int kGemmWarps = kGemmThreads / 32;

// Tile geometry. A tile is [kBlockM][kBlockK] of gathered rows; B is [kRowsB][kBlockK]
// of weight rows (K contiguous, i.e. column-major B). Gated: kBlockN gate rows then the
// matching kBlockN up rows, so the SiLU-and-mul epilogue sees both. A CTA computes
// kBlockN output columns (of I for gate/up, of H for down); decode's gate/up GEMM takes
// 32 so that small batches still spread the weight stream over most SMs.
template <typename T, int kBlockMArg, bool kGated>
struct GemmShape {
  static constexpr bool kTensorCore = !std::is_same_v<T, float>;
  static constexpr int kBlockM = kBlockMArg;
  static constexpr int kBlockN = kGated && kBlockM == 16 ? 32 : 64;
  static constexpr int kBlockK = kTensorCore ? 64 : 32;
  // Padding: 16-bit rows stay 16-byte aligned and ldmatrix-conflict-free; f32 rows of
  // 33 words make the FMA path's column reads conflict-free.
  static constexpr int kLds = kTensorCore ? kBlockK + 8 : kBlockK + 1;
  static constexpr int kStages = kTensorCore ? (kBlockM == 16 ? 4 : 3) : 2;
  static constexpr int kRowsB = kGated ? 2 * kBlockN : kBlockN;
  static constexpr int kLdc = kRowsB + 4;  // f32 epilogue tile
  static constexpr int kStageElems = (kBlockM + kRowsB) * kLds;
  static constexpr size_t kPipeBytes = static_cast<size_t>(kStages) * kStageElems * sizeof(T);
  static constexpr size_t kEpilogueBytes = static_cast<size_t>(kBlockM) * kLdc * sizeof(float);
  static constexpr size_t kSmemBytes = kPipeBytes > kEpilogueBytes ? kPipeBytes : kEpilogueBytes;
  static_assert(kRowsB / 16 % kGemmWarps == 0 && kBlockM % kGemmWarps == 0 && kRowsB % 32 == 0);
};

template <typename T>
struct GemmParams {
  const T* a;                  // gated: x [T, K]; else intermediate [padded rows, K]
  const T* w;                  // gated: w13 [E, 2N, K]; else w2 [E, N, K]
  const int32_t* sorted_pairs;
  const int32_t* tile_expert;
  const float* topk_weights;   // down GEMM only
  int64_t n;                   // gated: I; else H
  int64_t k;                   // gated: H; else I
  int top_k;
  T* out;                      // gated: intermediate [padded rows, I]; else pair_out [T*k, H]
};

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool pred) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Weight row of B tile row j, or -1 past the matrix edge.
template <bool kGated, int kBlockN>
__device__ __forceinline__ int64_t WeightRow(int j, int64_t n0, int64_t n) {
  if (kGated && j >= kBlockN) {
    const int64_t col = n0 + j - kBlockN;
    return col < n ? n + col : -1;  // up rows follow the gate rows
  }
  return n0 + j < n ? n0 + j : -1;
}

// Loads k-tile `kt` into pipeline stage `stage`, zero-filling outside the matrices.
template <typename S, bool kGated, bool kVec, typename T>
__device__ __forceinline__ void LoadStage(T* smem, int stage, int kt, const T* const* a_rows, const T* w,
                                          int64_t n0, const GemmParams<T>& p) {
  T* as = smem + stage * S::kStageElems;
  T* bs = as + S::kBlockM * S::kLds;
  const int64_t k0 = static_cast<int64_t>(kt) * S::kBlockK;
  if constexpr (kVec) {
    constexpr int kChunk = 16 / sizeof(T);
    constexpr int kChunksPerRow = S::kBlockK / kChunk;
    for (int c = threadIdx.x; c < S::kBlockM * kChunksPerRow; c += kGemmThreads) {
      const int r = c / kChunksPerRow, kc = c % kChunksPerRow * kChunk;
      const bool pred = a_rows[r] != nullptr && k0 + kc < p.k;
      CpAsync16(as + r * S::kLds + kc, pred ? a_rows[r] + k0 + kc : w, pred);
    }
    for (int c = threadIdx.x; c < S::kRowsB * kChunksPerRow; c += kGemmThreads) {
      const int j = c / kChunksPerRow, kc = c % kChunksPerRow * kChunk;
      const int64_t row = WeightRow<kGated, S::kBlockN>(j, n0, p.n);
      const bool pred = row >= 0 && k0 + kc < p.k;
      CpAsync16(bs + j * S::kLds + kc, pred ? w + row * p.k + k0 + kc : w, pred);
    }
  } else {
    const T zero = FromFloat<T>(0.0f);
    for (int c = threadIdx.x; c < S::kBlockM * S::kBlockK; c += kGemmThreads) {
      const int r = c / S::kBlockK, kk = c % S::kBlockK;
      as[r * S::kLds + kk] = a_rows[r] != nullptr && k0 + kk < p.k ? a_rows[r][k0 + kk] : zero;
    }
    for (int c = threadIdx.x; c < S::kRowsB * S::kBlockK; c += kGemmThreads) {
      const int j = c / S::kBlockK, kk = c % S::kBlockK;
      const int64_t row = WeightRow<kGated, S::kBlockN>(j, n0, p.n);
      bs[j * S::kLds + kk] = row >= 0 && k0 + kk < p.k ? w[row * p.k + k0 + kk] : zero;
    }
  }
}

// Warp w owns all kBlockM rows and B fragment columns [w * kFragsN, (w + 1) * kFragsN).
template <typename S, typename T>
struct TensorCoreMma {
  static constexpr int kFragsM = S::kBlockM / 16;
  static constexpr int kFragsN = S::kRowsB / 16 / kGemmWarps;
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[kFragsM][kFragsN];

  __device__ void Init() {
    for (int i = 0; i < kFragsM; ++i)
      for (int j = 0; j < kFragsN; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);
  }
  __device__ void Step(const T* as, const T* bs, int warp) {
    using namespace nvcuda;
#pragma unroll
    for (int kk = 0; kk < S::kBlockK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[kFragsM];
#pragma unroll
      for (int i = 0; i < kFragsM; ++i) wmma::load_matrix_sync(a[i], as + i * 16 * S::kLds + kk, S::kLds);
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
        wmma::load_matrix_sync(b, bs + (warp * kFragsN + j) * 16 * S::kLds + kk, S::kLds);
#pragma unroll
        for (int i = 0; i < kFragsM; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
      }
    }
  }
  __device__ void Store(float* ctile, int warp) {
    for (int i = 0; i < kFragsM; ++i)
      for (int j = 0; j < kFragsN; ++j)
        nvcuda::wmma::store_matrix_sync(ctile + i * 16 * S::kLdc + (warp * kFragsN + j) * 16, acc[i][j], S::kLdc,
                                        nvcuda::wmma::mem_row_major);
  }
};

// f32: thread (warp, lane) owns rows warp + 4 i and columns lane + 32 j.
template <typename S>
struct FmaMma {
  static constexpr int kRows = S::kBlockM / kGemmWarps;
  static constexpr int kCols = S::kRowsB / 32;
  float acc[kRows][kCols];

  __device__ void Init() {
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < kCols; ++j) acc[i][j] = 0.0f;
  }
  __device__ void Step(const float* as, const float* bs, int warp) {
    const int lane = threadIdx.x % 32;
#pragma unroll 4
    for (int kk = 0; kk < S::kBlockK; ++kk) {
      float b[kCols];
#pragma unroll
      for (int j = 0; j < kCols; ++j) b[j] = bs[(lane + 32 * j) * S::kLds + kk];
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const float a = as[(warp + kGemmWarps * i) * S::kLds + kk];
#pragma unroll
        for (int j = 0; j < kCols; ++j) acc[i][j] = fmaf(a, b[j], acc[i][j]);
      }
    }
  }
  __device__ void Store(float* ctile, int warp) {
    const int lane = threadIdx.x % 32;
    for (int i = 0; i < kRows; ++i)
      for (int j = 0; j < kCols; ++j) ctile[(warp + kGemmWarps * i) * S::kLdc + lane + 32 * j] = acc[i][j];
  }
};

// One CTA: tile blockIdx.x (kBlockM sorted rows of one expert) x kBlockN output columns.
template <typename T, int kBlockM, bool kGated, bool kVec>
__global__ void __launch_bounds__(kGemmThreads) MoeGemmKernel(const GemmParams<T> p) {
  using S = GemmShape<T, kBlockM, kGated>;
  using Mma = std::conditional_t<S::kTensorCore, TensorCoreMma<S, T>, FmaMma<S>>;
  extern __shared__ __align__(128) unsigned char gemm_smem[];
  __shared__ const T* a_rows[kBlockM];  // source row of each tile row, null for padding
  __shared__ int32_t pairs[kBlockM];

  const int tile = blockIdx.x;
  const int expert = p.tile_expert[tile];
  if (expert < 0) return;  // past the last used tile (the grid is sized for the worst case)
  const int64_t row0 = static_cast<int64_t>(tile) * kBlockM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * S::kBlockN;
  if (threadIdx.x < kBlockM) {
    const int32_t pair = p.sorted_pairs[row0 + threadIdx.x];
    pairs[threadIdx.x] = pair;
    a_rows[threadIdx.x] = pair < 0   ? nullptr
                          : kGated ? p.a + static_cast<int64_t>(pair / p.top_k) * p.k
                                   : p.a + (row0 + threadIdx.x) * p.k;
  }
  __syncthreads();

  T* smem = reinterpret_cast<T*>(gemm_smem);
  const T* w = p.w + static_cast<int64_t>(expert) * (kGated ? 2 : 1) * p.n * p.k;
  const int warp = threadIdx.x / 32;
  const int k_tiles = static_cast<int>((p.k + S::kBlockK - 1) / S::kBlockK);
  Mma mma;
  mma.Init();
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < k_tiles) LoadStage<S, kGated, kVec>(smem, s, s, a_rows, w, n0, p);
    CpAsyncCommit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    CpAsyncWait<S::kStages - 2>();  // k-tile kt has landed
    __syncthreads();                // ... for every thread, and stage kt - 1 is free
    const int next = kt + S::kStages - 1;
    if (next < k_tiles) LoadStage<S, kGated, kVec>(smem, next % S::kStages, next, a_rows, w, n0, p);
    CpAsyncCommit();
    const T* as = smem + (kt % S::kStages) * S::kStageElems;
    mma.Step(as, as + kBlockM * S::kLds, warp);
  }
  CpAsyncWait<0>();
  __syncthreads();  // the epilogue tile reuses the pipeline's shared memory
  float* ctile = reinterpret_cast<float*>(gemm_smem);
  mma.Store(ctile, warp);
  __syncthreads();

  for (int c = threadIdx.x; c < kBlockM * S::kBlockN; c += kGemmThreads) {
    const int r = c / S::kBlockN, col = c % S::kBlockN;
    const int32_t pair = pairs[r];
    if (pair < 0 || n0 + col >= p.n) continue;
    if constexpr (kGated) {
      const float gate = ctile[r * S::kLdc + col], up = ctile[r * S::kLdc + S::kBlockN + col];
      p.out[(row0 + r) * p.n + n0 + col] = FromFloat<T>(gate / (1.0f + expf(-gate)) * up);
    } else {
      p.out[static_cast<int64_t>(pair) * p.n + n0 + col] =
          FromFloat<T>(ctile[r * S::kLdc + col] * p.topk_weights[pair]);
    }
  }
}

template <typename T, int kBlockM, bool kGated, bool kVec>
void LaunchGemmKernel(const GemmParams<T>& p, int max_tiles, cudaStream_t stream) {
  using S = GemmShape<T, kBlockM, kGated>;
  auto* kernel = MoeGemmKernel<T, kBlockM, kGated, kVec>;
  LATTICE_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(S::kSmemBytes)));
  const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>((p.n + S::kBlockN - 1) / S::kBlockN));
  kernel<<<grid, kGemmThreads, S::kSmemBytes, stream>>>(p);
  LATTICE_CUDA_LAUNCH_CHECK();
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T, int kBlockM, bool kGated>
void LaunchGemm(const GemmParams<T>& p, int max_tiles, cudaStream_t stream) {
  // 16-byte loads need every row (of a, of w) to start 16-byte aligned.
  const bool vec = p.k % (16 / sizeof(T)) == 0 && Aligned16(p.a) && Aligned16(p.w);
  if constexpr (GemmShape<T, kBlockM, kGated>::kTensorCore) {
    if (vec) return LaunchGemmKernel<T, kBlockM, kGated, true>(p, max_tiles, stream);
  }
  LaunchGemmKernel<T, kBlockM, kGated, false>(p, max_tiles, stream);
}

// out[t] = sum over valid slots s (in slot order) of pair_out[t * k + s].
// out[t] = sum over the valid slots s of token t (in slot order) of w * rows[r]: r =
// pair_row[pair] (the per-expert route's expert-sorted rows) or the pair itself (null),
// w = topk_weights[pair], or 1 where the grouped route's down GEMM applied it (null).
template <typename T>
__global__ void MoeCombineKernel(const T* __restrict__ rows, const int32_t* __restrict__ pair_row,
                                 const int32_t* __restrict__ topk_ids, const float* __restrict__ topk_weights,
                                 int64_t tokens, int top_k, int64_t hidden, int experts, T* __restrict__ out) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, h = i % hidden;
    float sum = 0.0f;
    for (int s = 0; s < top_k; ++s) {
      const int64_t pair = t * top_k + s;
      const int32_t e = topk_ids[pair];
      if (0 <= e && e < experts) {
        const int64_t row = pair_row != nullptr ? pair_row[pair] : pair;
        const float w = topk_weights != nullptr ? topk_weights[pair] : 1.0f;
        sum += w * ToFloat(rows[row * hidden + h]);
      }
    }
    out[i] = FromFloat<T>(sum);
  }
}

// Tile height and worst-case tile count: a function of host sizes only.
struct MoePlan {
  int block_m;
  int64_t max_tiles;
  int64_t max_rows;  // max_tiles * block_m
};

// Worst-case tiles of block_m rows: every non-empty expert pads fewer than block_m rows,
// and at most min(E, pairs) are non-empty.
MoePlan PlanTiles(int64_t pairs, int64_t experts, int block_m) {
  const int64_t padded = pairs + std::min(experts, pairs) * (block_m - 1);
  const int64_t max_tiles = std::max<int64_t>(1, (padded + block_m - 1) / block_m);
  return {block_m, max_tiles, max_tiles * block_m};
}

MoePlan PlanMoe(int64_t tokens, int64_t top_k, int64_t experts) {
  const int64_t pairs = tokens * top_k;
  // Up to 16 rows per expert on average (decode): 16-row tiles, one per expert, so
  // weights stream once; beyond that 64-row tiles reuse each weight tile more.
  return PlanTiles(pairs, experts, pairs <= 16 * experts ? 16 : 64);
}

// Workspace requests of FusedMoe, in order; each may cost up to 255 bytes of alignment.
struct MoeScratch {
  size_t sorted_pairs, tile_expert, intermediate, pair_out;
  size_t Total() const { return sorted_pairs + tile_expert + intermediate + pair_out + 4 * 255; }
};

MoeScratch ScratchFor(const MoePlan& plan, int64_t tokens, int64_t top_k, int64_t hidden, int64_t intermediate,
                      DType dtype) {
  return {static_cast<size_t>(plan.max_rows) * sizeof(int32_t), static_cast<size_t>(plan.max_tiles) * sizeof(int32_t),
          static_cast<size_t>(plan.max_rows * intermediate) * DTypeSize(dtype),
          static_cast<size_t>(tokens * top_k * hidden) * DTypeSize(dtype)};
}

// The per-expert route: 64-row tiles (the align kernel's padding is each expert's GEMM
// height, so cuBLASLt plans are cached per multiple of 64 rows), x gathered into tile
// order, gate/up output and activation for one chunk, the down output in tile order and
// each pair's row in it.
constexpr int kPerExpertBlockM = 64;
constexpr int64_t kPerExpertChunkRows = 4096;

struct PerExpertScratch {
  MoePlan plan;
  int64_t chunk_rows;
  size_t sorted_pairs, tile_expert, x_sorted, gate_up, act, y_sorted, pair_row;
  size_t Total() const {
    return sorted_pairs + tile_expert + x_sorted + gate_up + act + y_sorted + pair_row + 7 * 255;
  }
};

PerExpertScratch PerExpertScratchFor(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden,
                                     int64_t intermediate, DType dtype) {
  const int64_t pairs = tokens * top_k;
  const MoePlan plan = PlanTiles(pairs, experts, kPerExpertBlockM);
  const int64_t chunk = std::min(plan.max_rows, kPerExpertChunkRows);
  const size_t e = DTypeSize(dtype);
  return {plan,
          chunk,
          static_cast<size_t>(plan.max_rows) * sizeof(int32_t),
          static_cast<size_t>(plan.max_tiles) * sizeof(int32_t),
          static_cast<size_t>(plan.max_rows * hidden) * e,
          static_cast<size_t>(chunk * 2 * intermediate) * e,
          static_cast<size_t>(chunk * intermediate) * e,
          static_cast<size_t>(plan.max_rows * hidden) * e,
          static_cast<size_t>(pairs) * sizeof(int32_t)};
}

MoeRoute RouteFromEnv() {
  static const MoeRoute route = [] {
    const char* env = std::getenv("LATTICE_MOE_GEMM");
    if (env == nullptr || std::strcmp(env, "auto") == 0 || *env == '\0') return MoeRoute::kAuto;
    if (std::strcmp(env, "grouped") == 0) return MoeRoute::kGrouped;
    if (std::strcmp(env, "per_expert") == 0) return MoeRoute::kPerExpert;
    LATTICE_CHECK_MSG(false, "LATTICE_MOE_GEMM=%s: expected auto, grouped or per_expert", env);
    return MoeRoute::kAuto;
  }();
  return route;
}

bool PerExpertRoute(MoeRoute route, int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden,
                    int64_t intermediate) {
  if (route == MoeRoute::kAuto) route = RouteFromEnv();
  if (route != MoeRoute::kAuto) return route == MoeRoute::kPerExpert;
  const double rows = static_cast<double>(tokens * top_k) / static_cast<double>(experts);
  return MoePerExpertRouteWins(rows, 6.0 * rows * static_cast<double>(hidden) * static_cast<double>(intermediate));
}

// Row r of x_sorted is x[sorted_pairs[r] / top_k] (zeros in padding rows), and
// pair_row[pair] = r. One block per row; W is the load width (uint4 when rows are
// 16-byte aligned, else T).
template <typename W>
__global__ void GatherSortedKernel(const W* __restrict__ x, const int32_t* __restrict__ sorted_pairs,
                                   int64_t row_words, int top_k, W* __restrict__ x_sorted,
                                   int32_t* __restrict__ pair_row) {
  const int64_t r = blockIdx.x;
  const int32_t pair = sorted_pairs[r];
  W* dst = x_sorted + r * row_words;
  if (pair < 0) {
    W zero;
    if constexpr (std::is_same_v<W, uint4>) {
      zero = make_uint4(0, 0, 0, 0);
    } else {
      zero = FromFloat<W>(0.0f);
    }
    for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = zero;
    return;
  }
  if (threadIdx.x == 0) pair_row[pair] = static_cast<int32_t>(r);
  const W* src = x + static_cast<int64_t>(pair / top_k) * row_words;
  for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = src[i];
}

// Steps 2-4 through cuBLASLt, one expert at a time (see the file comment).
void PerExpertMoe(const Tensor& x, const Tensor& w13, const Tensor& w2, const Tensor& topk_ids,
                  const Tensor& topk_weights, Tensor& out, Workspace& workspace, Gemm& gemm, cudaStream_t stream) {
  const int64_t tokens = x.dim(0), hidden = x.dim(1), experts = w13.dim(0), inter = w13.dim(1) / 2;
  const int64_t top_k = topk_ids.dim(1);
  const DType dtype = x.dtype();
  const PerExpertScratch scratch = PerExpertScratchFor(tokens, top_k, experts, hidden, inter, dtype);
  const MoePlan& plan = scratch.plan;
  auto* sorted_pairs = static_cast<int32_t*>(workspace.Allocate(scratch.sorted_pairs));
  auto* tile_expert = static_cast<int32_t*>(workspace.Allocate(scratch.tile_expert));
  Tensor x_sorted = workspace.Empty(dtype, {plan.max_rows, hidden});
  Tensor gate_up = workspace.Empty(dtype, {scratch.chunk_rows, 2 * inter});
  Tensor act = workspace.Empty(dtype, {scratch.chunk_rows, inter});
  Tensor y_sorted = workspace.Empty(dtype, {plan.max_rows, hidden});
  auto* pair_row = static_cast<int32_t*>(workspace.Allocate(scratch.pair_row));
  const int max_tiles = static_cast<int>(plan.max_tiles);

  MoeAlignKernel<<<1, kAlignThreads, 3 * sizeof(int32_t) * experts, stream>>>(
      Ptr<int32_t>(topk_ids), tokens * top_k, static_cast<int>(experts), plan.block_m, max_tiles, sorted_pairs,
      tile_expert);
  LATTICE_CUDA_LAUNCH_CHECK();
  std::vector<int32_t> host_tiles(max_tiles);
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(host_tiles.data(), tile_expert, sizeof(int32_t) * max_tiles,
                                     cudaMemcpyDeviceToHost, stream));
  LATTICE_CUDA_CHECK(cudaStreamSynchronize(stream));
  int used_tiles = 0;
  while (used_tiles < max_tiles && host_tiles[used_tiles] >= 0) ++used_tiles;
  if (used_tiles == 0) {  // every pair belongs to another rank's experts
    LATTICE_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), stream));
    return;
  }

  const size_t row_bytes = static_cast<size_t>(hidden) * DTypeSize(dtype);
  if (row_bytes % 16 == 0 && Aligned16(x.raw_data()) && Aligned16(x_sorted.raw_data())) {
    GatherSortedKernel<uint4><<<used_tiles * plan.block_m, 128, 0, stream>>>(
        static_cast<const uint4*>(x.raw_data()), sorted_pairs, static_cast<int64_t>(row_bytes / 16),
        static_cast<int>(top_k), static_cast<uint4*>(x_sorted.raw_data()), pair_row);
  } else {
    DispatchFloat(dtype, [&](auto* type) {
      using T = std::remove_pointer_t<decltype(type)>;
      GatherSortedKernel<T><<<used_tiles * plan.block_m, 128, 0, stream>>>(
          Ptr<T>(x), sorted_pairs, hidden, static_cast<int>(top_k), MutablePtr<T>(x_sorted), pair_row);
    });
  }
  LATTICE_CUDA_LAUNCH_CHECK();

  // Each expert's tiles are one run of host_tiles.
  for (int tile = 0; tile < used_tiles;) {
    const int expert = host_tiles[tile];
    int end = tile;
    while (end < used_tiles && host_tiles[end] == expert) ++end;
    const Tensor w13_e = w13.Slice(expert, expert + 1).View({2 * inter, hidden});
    const Tensor w2_e = w2.Slice(expert, expert + 1).View({hidden, inter});
    for (int64_t r = static_cast<int64_t>(tile) * plan.block_m; r < static_cast<int64_t>(end) * plan.block_m;
         r += scratch.chunk_rows) {
      const int64_t rows = std::min(scratch.chunk_rows, static_cast<int64_t>(end) * plan.block_m - r);
      Tensor gu = gate_up.Slice(0, rows);
      Tensor a = act.Slice(0, rows);
      Tensor y = y_sorted.Slice(r, r + rows);
      gemm.Linear(x_sorted.Slice(r, r + rows), w13_e, Tensor(), gu, stream);
      gemm.LinearSiluAndMul(gu, w2_e, Tensor(), a, y, stream);
    }
    tile = end;
  }

  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    MoeCombineKernel<T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(
        Ptr<T>(y_sorted), pair_row, Ptr<int32_t>(topk_ids), Ptr<float>(topk_weights), tokens,
        static_cast<int>(top_k), hidden, static_cast<int>(experts), MutablePtr<T>(out));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

template <typename T>
__global__ void AddKernel(const T* __restrict__ x, int64_t n, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = FromFloat<T>(ToFloat(out[i]) + ToFloat(x[i]));
  }
}

template <typename G, typename T>
__global__ void AddSigmoidGatedKernel(const G* __restrict__ gate_logit, const T* __restrict__ y, int64_t tokens,
                                      int64_t hidden, T* __restrict__ out) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gate = 1.0f / (1.0f + expf(-ToFloat(gate_logit[i / hidden])));
    out[i] = FromFloat<T>(ToFloat(out[i]) + gate * ToFloat(y[i]));
  }
}

}  // namespace

void MoeTopKRouting(const Tensor& router_logits, int top_k, bool renormalize, Tensor& topk_ids,
                    Tensor& topk_weights, cudaStream_t stream) {
  LATTICE_CHECK(router_logits.device() == Device::kCuda && topk_ids.device() == Device::kCuda &&
                topk_weights.device() == Device::kCuda);
  LATTICE_CHECK(router_logits.ndim() == 2);
  const int64_t tokens = router_logits.dim(0), experts = router_logits.dim(1);
  LATTICE_CHECK(1 <= top_k && top_k <= experts && experts <= kMaxExperts);
  LATTICE_CHECK(topk_ids.dtype() == DType::kI32 && topk_ids.shape() == Shape({tokens, top_k}));
  LATTICE_CHECK(topk_weights.dtype() == DType::kF32 && topk_weights.shape() == Shape({tokens, top_k}));
  if (tokens == 0) return;
  const unsigned blocks = static_cast<unsigned>((tokens + kRoutingWarps - 1) / kRoutingWarps);
  const size_t smem = sizeof(float) * kRoutingWarps * experts;
  DispatchFloat(router_logits.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    TopKRoutingKernel<T><<<blocks, kRoutingWarps * 32, smem, stream>>>(
        Ptr<T>(router_logits), tokens, static_cast<int>(experts), top_k, renormalize, MutablePtr<int32_t>(topk_ids),
        MutablePtr<float>(topk_weights));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

size_t FusedMoeWorkspaceBytes(int64_t tokens, int64_t top_k, int64_t num_experts, int64_t hidden,
                              int64_t intermediate, DType dtype) {
  return std::max(ScratchFor(PlanMoe(tokens, top_k, num_experts), tokens, top_k, hidden, intermediate, dtype).Total(),
                  PerExpertScratchFor(tokens, top_k, num_experts, hidden, intermediate, dtype).Total());
}

bool FusedMoeRunsPerExpert(int64_t tokens, int64_t top_k, int64_t experts, int64_t hidden, int64_t intermediate) {
  return PerExpertRoute(MoeRoute::kAuto, tokens, top_k, experts, hidden, intermediate);
}

void FusedMoe(const Tensor& x, const Tensor& w13, const Tensor& w2, const Tensor& topk_ids,
              const Tensor& topk_weights, Tensor& out, Workspace& workspace, cudaStream_t stream, Gemm* gemm,
              MoeRoute route) {
  LATTICE_CHECK(x.device() == Device::kCuda && w13.device() == Device::kCuda && w2.device() == Device::kCuda &&
                topk_ids.device() == Device::kCuda && topk_weights.device() == Device::kCuda &&
                out.device() == Device::kCuda);
  LATTICE_CHECK(x.ndim() == 2 && out.shape() == x.shape() && w13.ndim() == 3 && w2.ndim() == 3);
  LATTICE_CHECK(w13.dtype() == x.dtype() && w2.dtype() == x.dtype() && out.dtype() == x.dtype());
  const int64_t tokens = x.dim(0), hidden = x.dim(1), experts = w13.dim(0), inter = w13.dim(1) / 2;
  LATTICE_CHECK(inter > 0 && w13.dim(1) == 2 * inter && w13.dim(2) == hidden);
  LATTICE_CHECK(w2.dim(0) == experts && w2.dim(1) == hidden && w2.dim(2) == inter);
  LATTICE_CHECK(1 <= experts && experts <= kMaxExperts);
  LATTICE_CHECK(topk_ids.dtype() == DType::kI32 && topk_ids.ndim() == 2 && topk_ids.dim(0) == tokens);
  const int64_t top_k = topk_ids.dim(1);
  LATTICE_CHECK(top_k >= 1 && topk_weights.dtype() == DType::kF32 && topk_weights.shape() == topk_ids.shape());
  LATTICE_CHECK(tokens * top_k < INT32_MAX);
  if (out.numel() == 0) return;

  if (gemm != nullptr && PerExpertRoute(route, tokens, top_k, experts, hidden, inter)) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    LATTICE_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      return PerExpertMoe(x, w13, w2, topk_ids, topk_weights, out, workspace, *gemm, stream);
    }
  }

  const MoePlan plan = PlanMoe(tokens, top_k, experts);
  LATTICE_CHECK(plan.max_tiles <= INT32_MAX);
  const MoeScratch scratch = ScratchFor(plan, tokens, top_k, hidden, inter, x.dtype());
  auto* sorted_pairs = static_cast<int32_t*>(workspace.Allocate(scratch.sorted_pairs));
  auto* tile_expert = static_cast<int32_t*>(workspace.Allocate(scratch.tile_expert));
  void* intermediate = workspace.Allocate(scratch.intermediate);
  void* pair_out = workspace.Allocate(scratch.pair_out);
  const int max_tiles = static_cast<int>(plan.max_tiles);

  MoeAlignKernel<<<1, kAlignThreads, 3 * sizeof(int32_t) * experts, stream>>>(
      Ptr<int32_t>(topk_ids), tokens * top_k, static_cast<int>(experts), plan.block_m, max_tiles, sorted_pairs,
      tile_expert);
  LATTICE_CUDA_LAUNCH_CHECK();

  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const GemmParams<T> gate_up{Ptr<T>(x), Ptr<T>(w13), sorted_pairs, tile_expert, nullptr, inter, hidden,
                                static_cast<int>(top_k), static_cast<T*>(intermediate)};
    const GemmParams<T> down{static_cast<const T*>(intermediate), Ptr<T>(w2), sorted_pairs,
                             tile_expert, Ptr<float>(topk_weights), hidden,
                             inter, static_cast<int>(top_k), static_cast<T*>(pair_out)};
    if (plan.block_m == 16) {
      LaunchGemm<T, 16, true>(gate_up, max_tiles, stream);
      LaunchGemm<T, 16, false>(down, max_tiles, stream);
    } else {
      LaunchGemm<T, 64, true>(gate_up, max_tiles, stream);
      LaunchGemm<T, 64, false>(down, max_tiles, stream);
    }
    MoeCombineKernel<T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(
        static_cast<const T*>(pair_out), nullptr, Ptr<int32_t>(topk_ids), nullptr, tokens, static_cast<int>(top_k),
        hidden, static_cast<int>(experts), MutablePtr<T>(out));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

void AddSigmoidGated(const Tensor& gate_logit, const Tensor& y, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(gate_logit.device() == Device::kCuda && y.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(y.ndim() == 2 && out.shape() == y.shape() && out.dtype() == y.dtype());
  LATTICE_CHECK(gate_logit.ndim() == 2 && gate_logit.dim(0) == y.dim(0) && gate_logit.dim(1) == 1);
  if (out.numel() == 0) return;
  DispatchFloat(gate_logit.dtype(), [&](auto* gate_type) {
    using G = std::remove_pointer_t<decltype(gate_type)>;
    DispatchFloat(y.dtype(), [&](auto* type) {
      using T = std::remove_pointer_t<decltype(type)>;
      AddSigmoidGatedKernel<G, T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(
          Ptr<G>(gate_logit), Ptr<T>(y), y.dim(0), y.dim(1), MutablePtr<T>(out));
    });
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

void Add(const Tensor& x, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(x.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK_MSG(x.shape() == out.shape() && x.dtype() == out.dtype(), "%s vs %s",
                    ShapeToString(x.shape()).c_str(), ShapeToString(out.shape()).c_str());
  if (out.numel() == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    AddKernel<T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(Ptr<T>(x), out.numel(), MutablePtr<T>(out));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda
