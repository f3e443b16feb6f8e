// Prefill paged attention for Hopper (sm_90a), FlashAttention-3 style: the tensor cores
// are driven with wgmma from shared memory in 128-byte swizzled panels, fed by the TMA
// copy engine, with producer/consumer warp specialisation.
//
// PagedAttention (attention.cu) hands non-decode bf16/f16 calls with head_dim 64, 128
// or 256 and power-of-two blocks of at least 16 here (PagedPrefillAttentionSm90).
// The rows of a work item are those of attention.cu's CTAs: (query token, query head)
// pairs of one KV head's group, packed token-major, 128 per item, so the group's heads
// share each K/V tile. The grid is persistent: each CTA takes items from a counter
// until none is left, its producer running ahead into the next item. A CTA is three
// warpgroups:
//   - the producer (one warp) takes and decodes the items, hands them to the consumers
//     through a ring in shared memory, and walks their key tiles through the block table: one
//     TMA box per KV block (block_size rows, or the tile when blocks are larger; lane
//     b issues box b), into a ring of K and V tiles (3 stages, 2 at D = 256), each
//     stage with a "full" mbarrier (transaction bytes) and an "empty" one (consumer
//     warps);
//   - two consumer warpgroups of 64 rows each (setmaxnreg moves registers to them)
//     compute S = Q K^T with wgmma from shared memory, an online softmax in the log2
//     domain on the accumulators, and O += P V with P as the register A operand. The
//     next tile's S GEMM is issued before this tile's P V so the softmax of one tile
//     overlaps the tensor cores' work on the other.
// Keys past a sequence's end come from blocks the table may not hold: whole boxes past
// seq_len are loaded from an out-of-bounds slot (the TMA fills zeros); the rows past
// seq_len of the last partial box are masked in S and zeroed in V before P V (0 * NaN).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace lattice::cuda {
namespace {

constexpr int kWarpgroupThreads = 128;
constexpr int kPrefillThreads = 3 * kWarpgroupThreads;  // producer + 2 consumer warpgroups
constexpr int kTileRows = 128;                           // 64 per consumer warpgroup
constexpr int kPanelRowBytes = 128;      // a row of one 64-column panel (the swizzle span)

template <int D>
struct PrefillShape {
  static constexpr int kKeys = D <= 128 ? 128 : 64;  // keys per K/V tile
  static constexpr int kPanels = D / 64;
  static constexpr int kStages = D <= 128 ? 3 : 2;  // 3: 225 KB at D = 128
  // setmaxnreg's split of the 64K registers (producer * 128 + consumer * 256 <= 64K):
  // the producer's item loop (Q prefetch, block table) needs 64 to run without spills;
  // the accumulators at D = 256 take all a consumer can have (ptxas still spills ~100
  // bytes there: D = 256 is no target model's head size).
  static constexpr int kProducerRegisters = D <= 128 ? 64 : 40;
  static constexpr int kConsumerRegisters = D <= 128 ? 216 : 232;
  static constexpr int kQPanelBytes = kTileRows * kPanelRowBytes;
  static constexpr int kKvGroupBytes = kPanels * 1024;  // 8 key rows x all panels
  static constexpr int kQBytes = kPanels * kQPanelBytes;
  static constexpr int kKvBytes = kKeys / 8 * kKvGroupBytes;  // one stage of K or of V
  static constexpr int kBarrierOffset = kQBytes + 2 * kStages * kKvBytes;
  // The producer hands each decoded work item to the consumers through a ring of
  // kItemSlots descriptors (one full and one empty mbarrier each).
  static constexpr int kItemSlots = 4;
  static constexpr int kItemSlotBytes = 48;
  static constexpr int kItemOffset = kBarrierOffset + (4 * kStages + 2 * kItemSlots) * 8;
  static constexpr size_t kSmemBytes = kItemOffset + kItemSlots * kItemSlotBytes + 1024;  // + alignment slack
};

// n / d for 0 <= n < 2^31 by a multiply-high and a shift (d >= 1 fixed per launch):
// the kernel divides by the group, the KV heads and the sequences on every item.
struct FastDiv {
  uint32_t mul = 0, shift = 0;  // the default divides by 1
  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) {
    const uint64_t d = divisor > 0 ? divisor : 1;
    while ((uint64_t{1} << shift) < d) ++shift;
    mul = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ int Div(int n) const {
    return static_cast<int>((__umulhi(static_cast<uint32_t>(n), mul) + static_cast<uint32_t>(n)) >> shift);
  }
};

struct PrefillParams {
  const void* q;
  int32_t q_row_stride;
  void* out;
  const int32_t* query_start_loc;
  const int32_t* seq_lens;
  const int32_t* block_tables;
  int32_t max_blocks_per_seq;
  int32_t block_shift;  // log2(block_size)
  int32_t box_rows;     // keys per TMA box: min(block_size, keys per tile)
  int32_t num_slots;    // num_blocks * block_size: a box there is out of bounds (zeros)
  int32_t num_seqs;
  int32_t num_q_heads;
  int32_t num_kv_heads;
  int32_t group;
  FastDiv kv_heads_div, group_div;
  // The item order goes band by band, each band_pairs consecutive (sequence, KV head)
  // pairs (BandPairs()); band_items = band_pairs * num_row_tiles.
  int32_t band_pairs;
  FastDiv band_pairs_div, band_items_div;
  int32_t num_row_tiles;
  int32_t num_items;  // num_row_tiles * num_seqs * num_kv_heads
  // [0]: the items taken so far, [1]: the CTAs done taking (Workspace::counters()):
  // zero at launch, and zero again when the kernel completes.
  int32_t* item_counter;
  int32_t sliding_window;
  float scale_log2;
};

// ---------------------------------------------------------------------------------------
// PTX wrappers: mbarriers, TMA, wgmma.

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void BarrierInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void BarrierExpectBytes(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void BarrierArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void BarrierWait(uint32_t bar, int parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// The box of a KV cache map (KvTensorMap) at slot group `group` of head `kv_head` into
// shared memory, completing on `bar`.
__device__ __forceinline__ void TmaLoadKv(uint32_t dst, const CUtensorMap* map, int group, int kv_head,
                                          uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %2, %2, %3, "
      "%4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(0), "r"(group), "r"(kv_head), "r"(bar)
      : "memory");
}

// 16 bytes global -> shared, or zeros when !valid (src is then not read).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

// `bytes` (a multiple of 16) from global memory into L2, asynchronously.
__device__ __forceinline__ void PrefetchL2(const void* src, int bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void NamedBarrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Ordinary shared-memory stores made visible to the async proxy (wgmma, TMA).
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// wgmma shared-memory descriptor of a 128-byte-swizzled operand (1024-byte atoms of
// 8 rows): lbo = bytes between 64-column panels along M/N (MN-major operands only),
// sbo = bytes between groups of 8 rows.
__device__ __forceinline__ uint64_t Descriptor(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | static_cast<uint64_t>(lbo >> 4) << 16 |
         static_cast<uint64_t>(sbo >> 4) << 32 | uint64_t{1} << 62;
}

__device__ __forceinline__ void WgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving accesses of registers an in-flight wgmma owns across
// the wait that ends it.
template <int N>
__device__ __forceinline__ void FenceRegisters(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// m64nNk16 with f32 accumulators d: SS (A and B from shared memory, both K-major) and
// RS (A from registers, B MN-major: V with its rows along K). `accumulate` = 0
// overwrites d. The operand lists: d's registers first (%0 ...), then A, B and the
// predicate.
#define LATTICE_D8(i) \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define LATTICE_D32(i) LATTICE_D8(i), LATTICE_D8(i + 8), LATTICE_D8(i + 16), LATTICE_D8(i + 24)
#define LATTICE_D32_NAMES \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define LATTICE_D64_NAMES \
  LATTICE_D32_NAMES ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define LATTICE_D128_NAMES \
  LATTICE_D64_NAMES ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
// SS: A and B are descriptors %N, %N+1, the predicate %N+2 (N = accumulator registers).
#define LATTICE_WGMMA_SS(SHAPE, TYPES, NAMES, PRED, A, B, ...) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n" \
               "wgmma.mma_async.sync.aligned." SHAPE ".f32" TYPES " {" NAMES "}, " A ", " B ", p, 1, 1, 0, 0;\n}\n" \
               : __VA_ARGS__ \
               : "l"(a), "l"(b), "r"(accumulate))
// RS: A is four registers %N..%N+3, B the descriptor %N+4, the predicate %N+5.
#define LATTICE_WGMMA_RS(SHAPE, TYPES, NAMES, PRED, A, B, ...) \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n" \
               "wgmma.mma_async.sync.aligned." SHAPE ".f32" TYPES " {" NAMES "}, {" A "}, " B ", p, 1, 1, 1;\n}\n" \
               : __VA_ARGS__ \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate))
#define LATTICE_WGMMA_SS_N64(TYPES) \
  LATTICE_WGMMA_SS("m64n64k16", TYPES, LATTICE_D32_NAMES, "%34", "%32", "%33", LATTICE_D32(0))
#define LATTICE_WGMMA_RS_N64(TYPES) \
  LATTICE_WGMMA_RS("m64n64k16", TYPES, LATTICE_D32_NAMES, "%37", "%32, %33, %34, %35", "%36", LATTICE_D32(0))
#define LATTICE_WGMMA_SS_N128(TYPES) \
  LATTICE_WGMMA_SS("m64n128k16", TYPES, LATTICE_D64_NAMES, "%66", "%64", "%65", LATTICE_D32(0), LATTICE_D32(32))
#define LATTICE_WGMMA_RS_N128(TYPES)                                                                            \
  LATTICE_WGMMA_RS("m64n128k16", TYPES, LATTICE_D64_NAMES, "%69", "%64, %65, %66, %67", "%68", LATTICE_D32(0), \
                   LATTICE_D32(32))
#define LATTICE_WGMMA_RS_N256(TYPES)                                                                               \
  LATTICE_WGMMA_RS("m64n256k16", TYPES, LATTICE_D128_NAMES, "%133", "%128, %129, %130, %131", "%132", LATTICE_D32(0), \
                   LATTICE_D32(32), LATTICE_D32(64), LATTICE_D32(96))

template <typename T, int N>
__device__ __forceinline__ void WgmmaSS(float (&d)[N / 2], uint64_t a, uint64_t b, int accumulate) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 64) {
    if constexpr (kBf16) LATTICE_WGMMA_SS_N64(".bf16.bf16"); else LATTICE_WGMMA_SS_N64(".f16.f16");
  } else {
    static_assert(N == 128);
    if constexpr (kBf16) LATTICE_WGMMA_SS_N128(".bf16.bf16"); else LATTICE_WGMMA_SS_N128(".f16.f16");
  }
}

template <typename T, int N>
__device__ __forceinline__ void WgmmaRS(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 64) {
    if constexpr (kBf16) LATTICE_WGMMA_RS_N64(".bf16.bf16"); else LATTICE_WGMMA_RS_N64(".f16.f16");
  } else if constexpr (N == 128) {
    if constexpr (kBf16) LATTICE_WGMMA_RS_N128(".bf16.bf16"); else LATTICE_WGMMA_RS_N128(".f16.f16");
  } else {
    static_assert(N == 256);
    if constexpr (kBf16) LATTICE_WGMMA_RS_N256(".bf16.bf16"); else LATTICE_WGMMA_RS_N256(".f16.f16");
  }
}

__device__ __forceinline__ float FastRcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// 16 bytes to global memory in one store (the compiler splits a uint4 store it cannot
// prove aligned).
__device__ __forceinline__ void StoreGlobal16(void* dst, const uint32_t (&v)[4]) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(dst), "r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3])
               : "memory");
}

__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---------------------------------------------------------------------------------------
// The kernel. Work items: one per (row tile, sequence, KV head), in bands of a few
// (sequence, KV head) pairs (BandPairs()); inside a band, KV head fastest and the row
// tiles with the most keys first. The grid is persistent (at most one CTA per
// multiprocessor). Items are handed out in that order by an atomic counter, the next
// one to whichever CTA's producer asks first (longest first, taken greedily: the CTAs
// finish together; a static snake over the same order left ~3% of the time at the
// tail, and far more on chunked prefills of a few items per CTA). The producer decodes
// the item, hands it to the consumers through a small ring in shared memory, and loads
// its first key tiles while the consumers finish the last one (the last P V, the
// output) and load its Q. Shared memory (1024-byte aligned): Q [panel][128 rows][64], K
// and V [stage][keys / 8][panel][8 keys][64], each row 128 bytes, swizzled; mbarriers;
// the item ring.

// One work item's rows and key tiles; num_tiles == 0: nothing to do (a row tile past
// its sequence's query rows).
struct WorkItem {
  int kv_head, seq, q_begin, seq_len, ctx, row_begin, row_end, tile_begin, num_tiles;
};

template <int kKeys>
__device__ __forceinline__ WorkItem DecodeWorkItem(const PrefillParams& p, int index) {
  WorkItem w;
  const int band = p.band_items_div.Div(index);
  const int rest = index - band * p.band_pairs * p.num_row_tiles;
  const int row_tile_from_end = p.band_pairs_div.Div(rest);
  const int pair = band * p.band_pairs + rest - row_tile_from_end * p.band_pairs;
  w.seq = p.kv_heads_div.Div(pair);
  w.kv_head = pair - w.seq * p.num_kv_heads;
  const int row_tile = p.num_row_tiles - 1 - row_tile_from_end;
  w.q_begin = p.query_start_loc[w.seq];
  const int q_len = p.query_start_loc[w.seq + 1] - w.q_begin;
  w.seq_len = p.seq_lens[w.seq];
  w.ctx = w.seq_len - q_len;
  w.row_begin = row_tile * kTileRows;
  w.row_end = min(q_len * p.group, w.row_begin + kTileRows);
  w.tile_begin = 0;
  w.num_tiles = 0;
  if (w.row_begin < w.row_end) {
    const int pos_first = w.ctx + p.group_div.Div(w.row_begin), pos_last = w.ctx + p.group_div.Div(w.row_end - 1);
    const int lo = p.sliding_window > 0 ? max(0, pos_first - p.sliding_window + 1) : 0;
    w.tile_begin = lo / kKeys;
    w.num_tiles = pos_last / kKeys + 1 - w.tile_begin;
  }
  return w;
}

// The producer's lane 0 when it has taken its last index: the CTA that does so last
// (every other CTA's last atomicAdd on the counter is then ordered before) zeroes the
// counters for the next launch, which waits for this grid to complete before it reads
// them (griddepcontrol.wait, or plain stream order).
__device__ __forceinline__ void ReleaseItemCounter(int32_t* counter) {
  __threadfence();
  if (atomicAdd(counter + 1, 1) == static_cast<int>(gridDim.x) - 1) {
    __threadfence();
    atomicExch(counter, 0);
    atomicExch(counter + 1, 0);
  }
}

// The producer warp's next item with work, taken from the launch's counter (lane 0
// fetches, every lane gets it); >= num_items when none is left.
template <int kKeys>
__device__ __forceinline__ int NextItem(const PrefillParams& p, int lane) {
  for (;;) {
    int index = 0;
    if (lane == 0) index = atomicAdd(p.item_counter, 1);
    index = __shfl_sync(0xffffffffu, index, 0);
    if (index >= p.num_items || DecodeWorkItem<kKeys>(p, index).num_tiles > 0) return index;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kPrefillThreads, 1)
    PrefillAttentionSm90Kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                               const PrefillParams p) {
  using Shape = PrefillShape<D>;
  constexpr int kKeys = Shape::kKeys, kStages = Shape::kStages, kPanels = Shape::kPanels;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t q_smem = (SmemAddress(smem_raw) + 1023) & ~1023u;
  const uint32_t k_smem = q_smem + Shape::kQBytes;
  const uint32_t v_smem = k_smem + kStages * Shape::kKvBytes;
  const uint32_t bars = q_smem + Shape::kBarrierOffset;
  // full_k, full_v (1 arrival + bytes), empty_k, empty_v (one per consumer warp).
  auto barrier = [&](int kind, int stage) { return bars + 8 * (kind * kStages + stage); };
  enum { kFullK, kFullV, kEmptyK, kEmptyV };
  // The work-item ring: item n in slot n % kItemSlots; its full barrier (the producer
  // wrote it) and empty barrier (every consumer warp is done with it).
  constexpr int kItemSlots = Shape::kItemSlots;
  auto item_full = [&](int n) { return bars + 8 * (4 * kStages + n % kItemSlots); };
  auto item_empty = [&](int n) { return bars + 8 * (4 * kStages + kItemSlots + n % kItemSlots); };
  auto item_slot = [&](int n) {
    return reinterpret_cast<WorkItem*>(smem_raw + (q_smem - SmemAddress(smem_raw)) + Shape::kItemOffset +
                                       (n % kItemSlots) * Shape::kItemSlotBytes);
  };

  WaitForPriorGrids();
  const int group = p.group;
  const int window = p.sliding_window;
  const int tid = threadIdx.x, warpgroup = tid / kWarpgroupThreads, lane = tid % 32;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      BarrierInit(barrier(kFullK, s), 1);
      BarrierInit(barrier(kFullV, s), 1);
      BarrierInit(barrier(kEmptyK, s), 8);
      BarrierInit(barrier(kEmptyV, s), 8);
    }
    for (int s = 0; s < kItemSlots; ++s) {
      BarrierInit(item_full(s), 1);
      BarrierInit(item_empty(s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warpgroup == 0) {
    // Producer, warp 0: lane b loads box b of each tile (its slot read from the block
    // table a tile ahead, so the read's latency hides behind the waits); lane 0 waits for
    // the stage to be free and announces its bytes first.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Shape::kProducerRegisters));
    if (tid >= 32) return;
    const int block_mask = (1 << p.block_shift) - 1;
    const bool loads_box = lane < kKeys / p.box_rows;
    int loaded = 0;  // tiles this CTA has loaded: the ring position
    for (int n = 0;; ++n) {
      const int index = NextItem<kKeys>(p, lane);
      WorkItem w{};
      if (index < p.num_items) {
        w = DecodeWorkItem<kKeys>(p, index);
      } else {
        w.num_tiles = -1;  // no more items
      }
      // Hand the item to the consumers.
      if (lane == 0) {
        BarrierWait(item_empty(n), ((n / kItemSlots) & 1) ^ 1);
        *item_slot(n) = w;
        BarrierArrive(item_full(n));
      }
      if (w.num_tiles < 0) {
        if (lane == 0) ReleaseItemCounter(p.item_counter);
        break;
      }
      // The item's Q rows into L2 now, the ring's depth of tiles before the consumers
      // copy them in: one bulk prefetch per token (the group's heads are contiguous).
      const int t_end = p.group_div.Div(w.row_end - 1);
      for (int t = p.group_div.Div(w.row_begin) + lane; t <= t_end; t += 32) {
        const T* row = static_cast<const T*>(p.q) + static_cast<int64_t>(w.q_begin + t) * p.q_row_stride +
                       static_cast<int64_t>(w.kv_head) * group * D;
        PrefetchL2(row, group * D * static_cast<int>(sizeof(T)));
      }
      const int32_t* table = p.block_tables + static_cast<int64_t>(w.seq) * p.max_blocks_per_seq;
      auto box_slot = [&](int i) {
        const int key = (w.tile_begin + i) * kKeys + lane * p.box_rows;
        return loads_box && key < w.seq_len ? (table[key >> p.block_shift] << p.block_shift) + (key & block_mask)
                                            : p.num_slots;
      };
      int slot = box_slot(0);
      for (int i = 0; i < w.num_tiles; ++i, ++loaded) {
        const int stage = loaded % kStages, parity = ((loaded / kStages) & 1) ^ 1;
        const int next_slot = i + 1 < w.num_tiles ? box_slot(i + 1) : 0;
#pragma unroll
        for (int tensor = 0; tensor < 2; ++tensor) {
          const uint32_t full = barrier(tensor == 0 ? kFullK : kFullV, stage);
          if (lane == 0) {
            BarrierWait(barrier(tensor == 0 ? kEmptyK : kEmptyV, stage), parity);
            BarrierExpectBytes(full, Shape::kKvBytes);
          }
          __syncwarp();
          if (loads_box) {
            const uint32_t dst = (tensor == 0 ? k_smem : v_smem) + stage * Shape::kKvBytes +
                                 lane * (p.box_rows / 8) * Shape::kKvGroupBytes;
            TmaLoadKv(dst, tensor == 0 ? &k_map : &v_map, slot / 8, w.kv_head, full);
          }
        }
        slot = next_slot;
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Shape::kConsumerRegisters));
  const int cw = warpgroup - 1;  // rows [64 cw, 64 cw + 64) of the tile
  const int wtid = tid % kWarpgroupThreads, warp = wtid / 32;

  // Q: this warpgroup's 64 rows of an item (zeros past row_end), swizzled as the TMA
  // would; completed by wait_q. It runs under the last P V of the item before: few
  // instructions, no branches (each thread copies the same 16-byte chunk of its rows).
  constexpr int kChunks = D / 8;                              // 16-byte chunks of a row
  constexpr int kRowStep = kWarpgroupThreads / kChunks;       // rows per pass of the warpgroup
  const int q_chunk = wtid % kChunks, q_row0 = 64 * cw + wtid / kChunks;
  auto load_q = [&](const WorkItem& w) {
    const T* q = static_cast<const T*>(p.q);
    const T* base = q + static_cast<int64_t>(w.q_begin) * p.q_row_stride + w.kv_head * group * D + q_chunk * 8;
    const uint32_t dst = q_smem + (q_chunk / 8) * Shape::kQPanelBytes;
#pragma unroll
    for (int k = 0; k < 64 / kRowStep; ++k) {
      const int r = q_row0 + k * kRowStep, m = w.row_begin + r;
      const int token = p.group_div.Div(m);
      const bool valid = m < w.row_end;
      const T* src = base + static_cast<int64_t>(token) * p.q_row_stride + (m - token * group) * D;
      CpAsync16(dst + r * kPanelRowBytes + (((q_chunk % 8) ^ (r & 7)) << 4), valid ? src : q, valid);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };
  auto wait_q = [&]() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    FenceProxyAsync();
    NamedBarrier(1 + cw, kWarpgroupThreads);
  };

  const uint64_t q_desc = Descriptor(q_smem + cw * 64 * kPanelRowBytes, 16, 1024);
  const uint64_t k_desc = Descriptor(k_smem, 16, Shape::kKvGroupBytes);
  const uint64_t v_desc = Descriptor(v_smem, 1024, Shape::kKvGroupBytes);
  // Descriptor address fields count 16-byte units. K-major k16 step ks: 32 bytes into
  // the 128-byte rows of panel ks / 4 (Q: panels of 128 rows; K: 1024-byte panels of
  // each 8-key group). V k16 step kk: two 8-key groups down.
  auto k_step = [](int ks, int panel_bytes) {
    return static_cast<uint64_t>(((ks / 4) * panel_bytes + (ks % 4) * 32) >> 4);
  };
  constexpr uint64_t kStageStep = Shape::kKvBytes >> 4;

  float o[D / 2];
  float s[kKeys / 2];
  uint32_t pa[kKeys / 16][4];
  float m_run[2], l_run[2];  // l_run: this thread's columns only

  auto issue_s = [&](int stage) {
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      WgmmaSS<T, kKeys>(s, q_desc + k_step(ks, Shape::kQPanelBytes),
                        k_desc + stage * kStageStep + k_step(ks, 1024), ks > 0 ? 1 : 0);
    }
    WgmmaCommit();
  };
  auto issue_pv = [&](int stage) {
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      WgmmaRS<T, D>(o, pa[kk], v_desc + stage * kStageStep + ((2 * kk * Shape::kKvGroupBytes) >> 4), 1);
    }
    WgmmaCommit();
  };
  auto release = [&](int kind, int stage) {
    if (lane == 0) BarrierArrive(barrier(kind, stage));
  };
  auto wait_full = [&](int kind, int stage, int parity) { BarrierWait(barrier(kind, stage), parity); };

  // This thread's accumulator rows: g and g + 8 of its warp's 16.
  const int g = lane / 4, t4 = lane % 4;
  // Items come from the producer's ring. Only what the key loop needs stays live across
  // it (the output's place is read from the item's slot again afterwards): the
  // consumers run at the edge of their registers.
  int item = 0;  // items this CTA's consumers have taken
  BarrierWait(item_full(0), 0);
  if (item_slot(0)->num_tiles < 0) return;
  load_q(*item_slot(0));
  for (int consumed = 0;;) {  // consumed: tiles this CTA has used, the ring position
    wait_q();
    int tile_begin, num_tiles, last_valid, pos[2], wg_pos_first, wg_pos_last;
    {
      const WorkItem w = *item_slot(item);
      tile_begin = w.tile_begin, num_tiles = w.num_tiles;
      last_valid = w.seq_len - (w.tile_begin + w.num_tiles - 1) * kKeys;
      // Padding rows take the last row's position and are never written.
      const int row0 = w.row_begin + 64 * cw + 16 * warp + g;
#pragma unroll
      for (int h = 0; h < 2; ++h) pos[h] = w.ctx + p.group_div.Div(min(row0 + 8 * h, w.row_end - 1));
      wg_pos_first = w.ctx + p.group_div.Div(min(w.row_begin + 64 * cw, w.row_end - 1));
      wg_pos_last = w.ctx + p.group_div.Div(min(w.row_begin + 64 * cw + 63, w.row_end - 1));
    }
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
    m_run[0] = m_run[1] = -INFINITY;
    l_run[0] = l_run[1] = 0.0f;

    // Mask and exponentiate S in place (log2 units; scale > 0, so the raw max is the
    // scaled max); corr: the factors of the old accumulators.
    auto softmax = [&](int key0, float (&corr)[2]) {
      const bool need_mask =
          key0 + kKeys - 1 > wg_pos_first || (window > 0 && key0 <= wg_pos_last - window);
      if (need_mask) {
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = key0 + 8 * j + 2 * t4 + (e & 1), at = pos[e / 2];
            if (!(key <= at && (window <= 0 || key > at - window))) s[4 * j + e] = -INFINITY;
          }
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float new_m = fmaxf(m_run[h], mx * p.scale_log2);
        // A row that has seen no key yet keeps max -inf: exponentiate against 0 (all terms are 0).
        const float base = new_m == -INFINITY ? 0.0f : new_m;
        corr[h] = FastExp2(m_run[h] - base);
        m_run[h] = new_m;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
          s[4 * j + 2 * h] = FastExp2(fmaf(s[4 * j + 2 * h], p.scale_log2, -base));
          s[4 * j + 2 * h + 1] = FastExp2(fmaf(s[4 * j + 2 * h + 1], p.scale_log2, -base));
          sum += s[4 * j + 2 * h] + s[4 * j + 2 * h + 1];
        }
        l_run[h] = l_run[h] * corr[h] + sum;
      }
    };
    // P as the A fragments of the k16 steps of P V: the S accumulators of two 8-key blocks.
    auto pack_p = [&]() {
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
        for (int r = 0; r < 4; ++r) pa[kk][r] = PackPair<T>(s[8 * kk + 2 * r], s[8 * kk + 2 * r + 1]);
      }
    };
    auto rescale = [&](const float (&corr)[2]) {
      // Once the running maxima settle, most tiles change none of them: skip the rescale.
      if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          o[4 * j] *= corr[0], o[4 * j + 1] *= corr[0];
          o[4 * j + 2] *= corr[1], o[4 * j + 3] *= corr[1];
        }
      }
    };

    float corr[2];
    const int first = consumed;
    wait_full(kFullK, first % kStages, (first / kStages) & 1);
    issue_s(first % kStages);
    WgmmaWait<0>();
    FenceRegisters(s);
    release(kEmptyK, first % kStages);
    softmax(tile_begin * kKeys, corr);
    pack_p();
    for (int i = 1; i < num_tiles; ++i) {
      const int n = first + i, stage = n % kStages, prev = (n - 1) % kStages;
      wait_full(kFullK, stage, (n / kStages) & 1);
      wait_full(kFullV, prev, ((n - 1) / kStages) & 1);
      issue_s(stage);
      issue_pv(prev);
      WgmmaWait<1>();  // S of tile i; P V of tile i - 1 still runs
      FenceRegisters(s);
      release(kEmptyK, stage);
      softmax((tile_begin + i) * kKeys, corr);
      WgmmaWait<0>();
      FenceRegisters(o);
      release(kEmptyV, prev);
      rescale(corr);
      pack_p();
    }
    consumed = first + num_tiles;
    const int last = (consumed - 1) % kStages;
    wait_full(kFullV, last, ((consumed - 1) / kStages) & 1);
    if (last_valid < kKeys) {
      // V rows past seq_len may hold anything (NaN) from a block the sequence only partly
      // owns: zero them so that P = 0 there gives 0. Both warpgroups write the same zeros.
      const uint32_t v_stage = v_smem + last * Shape::kKvBytes;
      const int rows = kKeys - last_valid;
      for (int i = wtid; i < rows * kPanels * 8; i += kWarpgroupThreads) {
        const int r = last_valid + i / (kPanels * 8), panel = i / 8 % kPanels, chunk = i % 8;
        asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(v_stage + r / 8 * Shape::kKvGroupBytes +
                                                                      panel * 1024 + r % 8 * kPanelRowBytes +
                                                                      chunk * 16),
                     "r"(0)
                     : "memory");
      }
      FenceProxyAsync();
    }
    // Every warp of the warpgroup is past its last S GEMM (and its V zeros are visible):
    // the warpgroup's Q rows are free for the next item, loaded under the last P V.
    NamedBarrier(1 + cw, kWarpgroupThreads);
    issue_pv(last);
    // The next item's Q goes out under the last P V; at D = 256 the accumulators leave
    // no registers for its addresses, and it waits for the output.
    constexpr bool kEarlyQ = D <= 128;
    BarrierWait(item_full(item + 1), ((item + 1) / kItemSlots) & 1);
    const bool more = item_slot(item + 1)->num_tiles >= 0;
    if (kEarlyQ && more) load_q(*item_slot(item + 1));
    WgmmaWait<0>();
    FenceRegisters(o);
    release(kEmptyV, last);
    if (!more) LaunchDependentGrids();

    const WorkItem done = *item_slot(item);
    const int row0 = done.row_begin + 64 * cw + 16 * warp + g;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = l_run[h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int row = row0 + 8 * h;
      const float inv_l = l > 0.0f ? FastRcp(l) : 0.0f;
      const int token = p.group_div.Div(row);
      T* out = static_cast<T*>(p.out) + (static_cast<int64_t>(done.q_begin + token) * p.num_q_heads +
                                         done.kv_head * group + row - token * group) *
                                            D;
      // The quad holds the row: thread t4 has columns 2 t4, 2 t4 + 1 of each 8-column
      // block j. A 4 x 4 transpose over the quad (two shuffle rounds) gives thread t4 all
      // 8 columns of blocks 4 q + t4: one 16-byte store each instead of four 4-byte ones.
#pragma unroll
      for (int q4 = 0; q4 < D / 32; ++q4) {
        uint32_t v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int j = 4 * q4 + k;
          v[k] = PackPair<T>(o[4 * j + 2 * h] * inv_l, o[4 * j + 2 * h + 1] * inv_l);
        }
#pragma unroll
        for (int k = 0; k < 2; ++k) {  // exchange bit 1 of the block with bit 1 of the thread
          const uint32_t x = __shfl_xor_sync(0xffffffffu, (t4 & 2) ? v[k] : v[k + 2], 2);
          if (t4 & 2) v[k] = x; else v[k + 2] = x;
        }
#pragma unroll
        for (int k = 0; k < 4; k += 2) {  // then bit 0
          const uint32_t x = __shfl_xor_sync(0xffffffffu, (t4 & 1) ? v[k] : v[k + 1], 1);
          if (t4 & 1) v[k] = x; else v[k + 1] = x;
        }
        if (row < done.row_end) StoreGlobal16(out + 8 * (4 * q4 + t4), v);
      }
    }
    // Every lane of the warp has read the item: its slot may take another.
    __syncwarp();
    if (lane == 0) BarrierArrive(item_empty(item));
    ++item;
    if (!more) break;
    if (!kEarlyQ) load_q(*item_slot(item));
  }
}

// ---------------------------------------------------------------------------------------
// Host side.

bool IsSm90Device() {
  return CurrentDeviceAttribute<cudaDevAttrComputeCapabilityMajor>() == 9 &&
         CurrentDeviceAttribute<cudaDevAttrComputeCapabilityMinor>() == 0;
}

// LATTICE_ATTENTION_SM90: "0" never takes a call (A/B timings of the mma.sync kernel),
// "1" takes every supported call, whatever its grid (tests); unset: see below.
int Sm90Override() {
  const char* env = std::getenv("LATTICE_ATTENTION_SM90");
  if (env == nullptr) return -1;
  return std::strcmp(env, "0") == 0 ? 0 : std::strcmp(env, "1") == 0 ? 1 : -1;
}

// LATTICE_ATTENTION_SM90_CTAS=n caps the persistent grid at n CTAs, so that tests walk
// every CTA through many work items of mixed sequences; unset or invalid: no cap.
int64_t GridCap() {
  const char* env = std::getenv("LATTICE_ATTENTION_SM90_CTAS");
  const int64_t cap = env == nullptr ? 0 : std::atoll(env);
  return cap > 0 ? cap : std::numeric_limits<int64_t>::max();
}

PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult status{};
    LATTICE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                                        &status));
    LATTICE_CHECK_MSG(status == cudaDriverEntryPointSuccess && fn != nullptr, "cuTensorMapEncodeTiled not found");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// A cache [num_blocks, block_size, Hkv, D] as 5-D (64 columns, 8 slots, D / 64 panels,
// slots / 8, Hkv): one box, `box_rows` slots of one head, lands in shared memory as
// [box_rows / 8][panel][8 slots][64 columns], 128B-swizzled: consecutive 1024-byte
// atoms, so a tile of boxes has one stride between its 8-key groups (for K, the wgmma
// N direction; for V, the K direction) and one between panels.
CUtensorMap KvTensorMap(const Tensor& cache, DType dtype, int box_rows) {
  const int64_t slots = cache.dim(0) * cache.dim(1), heads = cache.dim(2), D = cache.dim(3);
  const cuuint64_t row_bytes = static_cast<cuuint64_t>(heads * D * 2);
  const cuuint64_t dims[5] = {64, 8, static_cast<cuuint64_t>(D / 64), static_cast<cuuint64_t>(slots / 8),
                              static_cast<cuuint64_t>(heads)};
  const cuuint64_t strides[4] = {row_bytes, kPanelRowBytes, 8 * row_bytes, static_cast<cuuint64_t>(D * 2)};
  const cuuint32_t box[5] = {64, 8, static_cast<cuuint32_t>(D / 64), static_cast<cuuint32_t>(box_rows / 8), 1};
  const cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
  CUtensorMap map;
  const CUresult result = TensorMapEncoder()(
      &map, dtype == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 5,
      cache.raw_data(), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  LATTICE_CHECK_MSG(result == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (%d)", static_cast<int>(result));
  return map;
}

// The (sequence, KV head) pairs of a band of the item order: the fewest (a divisor of
// all pairs) whose items still number twice the grid, so that the longest-first order
// inside a band balances the CTAs, while the keys and values they read at once are only
// a band's. In the plain order (every pair's row tile, then the next row tile) every
// CTA works on a different pair: at 4 x 2048 the whole 33 MB of K and V is live, L2
// misses on a quarter of the reads, and the kernel moves about 1.7x the DRAM bytes it needs.
int64_t BandPairs(int64_t pairs, int64_t row_tiles, int64_t ctas) {
  for (int64_t d = 1; d < pairs; ++d) {
    if (pairs % d == 0 && d * row_tiles >= 2 * ctas) return d;
  }
  return pairs;
}

// The persistent grid: every work item's CTA resident at once, or as many as fit.
template <typename T, int D>
void LaunchPrefillSm90(const CUtensorMap& k_map, const CUtensorMap& v_map, PrefillParams params,
                       cudaStream_t stream) {
  auto kernel = PrefillAttentionSm90Kernel<T, D>;
  constexpr int kSmem = static_cast<int>(PrefillShape<D>::kSmemBytes);
  LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  static std::atomic<int> resident{0};  // CTAs per multiprocessor (the same on every Hopper GPU)
  int per_sm = resident.load(std::memory_order_relaxed);
  if (per_sm == 0) {
    LATTICE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kPrefillThreads, kSmem));
    per_sm = std::max(per_sm, 1);
    resident.store(per_sm, std::memory_order_relaxed);
  }
  const int64_t ctas = std::min({static_cast<int64_t>(params.num_items),
                                 static_cast<int64_t>(MultiprocessorCount()) * per_sm, GridCap()});
  const int64_t pairs = static_cast<int64_t>(params.num_seqs) * params.num_kv_heads;
  const int64_t band = BandPairs(pairs, params.num_row_tiles, ctas);
  params.band_pairs = static_cast<int32_t>(band);
  params.band_pairs_div = FastDiv(static_cast<uint32_t>(band));
  params.band_items_div = FastDiv(static_cast<uint32_t>(band * params.num_row_tiles));
  LaunchKernel(LaunchMode::kProgrammatic, kernel, dim3(static_cast<unsigned>(ctas)), dim3(kPrefillThreads),
               PrefillShape<D>::kSmemBytes, stream, k_map, v_map, params);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool PagedPrefillAttentionSm90(const Tensor& q, int64_t q_row_stride, const Tensor& k_cache, const Tensor& v_cache,
                               const PagedAttentionMetadata& metadata, float scale, int32_t sliding_window,
                               Tensor& out, Workspace& workspace, cudaStream_t stream) {
  const int forced = Sm90Override();
  if (forced == 0) return false;
  const DType dtype = q.dtype();
  const int64_t head_dim = out.dim(2), num_q_heads = out.dim(1), num_kv_heads = k_cache.dim(2);
  const int64_t block_size = metadata.block_size;
  const int64_t num_slots = k_cache.dim(0) * block_size;
  const bool supported = (dtype == DType::kBF16 || dtype == DType::kF16) &&
                         (head_dim == 64 || head_dim == 128 || head_dim == 256) && block_size >= 16 &&
                         q_row_stride < (int64_t{1} << 31) &&
                         (block_size & (block_size - 1)) == 0 && num_slots < (int64_t{1} << 31) &&
                         q_row_stride % 8 == 0 && Aligned16(q.raw_data()) && Aligned16(k_cache.raw_data()) &&
                         Aligned16(v_cache.raw_data()) && Aligned16(out.raw_data()) && IsSm90Device();
  if (!supported) return false;
  const int64_t group = num_q_heads / num_kv_heads;
  const int64_t row_tiles = (static_cast<int64_t>(metadata.max_query_len) * group + kTileRows - 1) / kTileRows;
  const int64_t items = row_tiles * metadata.num_seqs * num_kv_heads;
  // This kernel does not split an item's keys: work that would not fill the GPU once
  // (a short chunk on a long context) runs faster on the split mma.sync kernel.
  if (items < MultiprocessorCount() && forced != 1) return false;
  LATTICE_CHECK(items < (int64_t{1} << 31));
  const int keys_per_tile = head_dim <= 128 ? 128 : 64;

  PrefillParams params{};
  params.q = q.raw_data();
  params.q_row_stride = static_cast<int32_t>(q_row_stride);
  params.out = out.raw_data();
  params.query_start_loc = Ptr<int32_t>(metadata.query_start_loc);
  params.seq_lens = Ptr<int32_t>(metadata.seq_lens);
  params.block_tables = Ptr<int32_t>(metadata.block_tables);
  params.max_blocks_per_seq = static_cast<int32_t>(metadata.block_tables.dim(1));
  params.block_shift = 0;
  while ((int64_t{1} << params.block_shift) < block_size) ++params.block_shift;
  params.box_rows = static_cast<int32_t>(std::min<int64_t>(block_size, keys_per_tile));
  params.num_slots = static_cast<int32_t>(num_slots);
  params.num_seqs = metadata.num_seqs;
  params.num_q_heads = static_cast<int32_t>(num_q_heads);
  params.num_kv_heads = static_cast<int32_t>(num_kv_heads);
  params.group = static_cast<int32_t>(group);
  params.kv_heads_div = FastDiv(static_cast<uint32_t>(num_kv_heads));
  params.group_div = FastDiv(static_cast<uint32_t>(group));
  params.num_row_tiles = static_cast<int32_t>(row_tiles);
  params.num_items = static_cast<int32_t>(items);
  static_assert(Workspace::kCounters >= 2);
  params.item_counter = workspace.counters();
  params.sliding_window = sliding_window;
  params.scale_log2 = scale * 1.4426950408889634f;
  const CUtensorMap k_map = KvTensorMap(k_cache, dtype, params.box_rows);
  const CUtensorMap v_map = KvTensorMap(v_cache, dtype, params.box_rows);

  DispatchFloat(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if constexpr (!std::is_same_v<T, float>) {
      if (head_dim == 64) {
        LaunchPrefillSm90<T, 64>(k_map, v_map, params, stream);
      } else if (head_dim == 128) {
        LaunchPrefillSm90<T, 128>(k_map, v_map, params, stream);
      } else {
        LaunchPrefillSm90<T, 256>(k_map, v_map, params, stream);
      }
    }
  });
  return true;
}

}  // namespace lattice::cuda
