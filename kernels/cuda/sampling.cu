// Token sampling and top-k log-probabilities on the GPU, with the contracts of
// cpu::Sample and of cpu::LogSoftmax + cpu::TopK (kernels/cpu/sampling.cc). Nothing is
// sorted and no scratch memory is used.
//
// A token's weight exp((logit - max) / T), in double as on the CPU, is monotone in its
// logit, so the CPU's order (descending weight, ties to the lower id) is the order of the
// logits' sortable bit keys (ties to the lower id) except inside runs of distinct logits
// that round to one weight. Each filter is then a radix select on the 32-bit key: top-k by
// count, top-p by reaching a mass, the inverse-CDF draw by exceeding one. Round 1 is a
// 2048-bin histogram (count and mass) of the keys' top 11 bits, built once per row; each
// select scans it and refines the bin holding its target with at most two more passes
// over the row (11 and 10 bits). Which id of an equal-key group (or weight run) the CPU
// would reach is found by a last pass in id order when the smallest id is not the answer.
//
// A row belongs to a thread-block cluster (up to 8 blocks when there are few rows, so
// that small batches use more than one SM): each block streams its slice of the row into
// its own histograms, adds them into the leader's (block rank 0) over distributed shared
// memory, the leader finds the crossing and publishes it, and every block follows the
// same path. Between rounds every block's fine histogram is clear.
#include "kernels/cuda/ops.h"

#include <cooperative_groups.h>

#include <cub/block/block_scan.cuh>

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 512;         // sampling and top-k blocks
constexpr int kArgMaxThreads = 1024;  // all-greedy batches: one pass, nothing else
constexpr int kMaxCluster = 8;        // portable cluster size
constexpr int kTopBins = 2048;        // round 1: key bits [21, 32)
constexpr int kMaxTopK = 64;
constexpr int kTieCapacity = 1024;  // top-k ties gathered at once; more take an ordered pass
constexpr uint32_t kNoId = 0xffffffffu;

// ---- keys, row traversal, block and cluster reductions ----

// A larger key is a better logit in cpu::Better's order: NaN (0) ranks below -inf and
// -0 equals +0.
__device__ __forceinline__ uint32_t OrderedKey(float v) {
  if (isnan(v)) return 0;
  const uint32_t bits = __float_as_uint(v + 0.0f);  // -0 + 0 = +0
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
__device__ __forceinline__ float KeyToFloat(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// (key, id) as one word whose maximum is the argmax with ties to the lower id.
__device__ __forceinline__ uint64_t PackArgMax(float v, int32_t id) {
  return (static_cast<uint64_t>(OrderedKey(v)) << 32) | (kNoId - static_cast<uint32_t>(id));
}
__device__ __forceinline__ int32_t UnpackArgMaxId(uint64_t packed) {
  return static_cast<int32_t>(kNoId - static_cast<uint32_t>(packed));
}

// fn(i, values[i]) once for every i < n: 16-byte loads, four in flight per thread.
template <int kBlock, typename Fn>
__device__ __forceinline__ void ForEachLogit(const float* values, int32_t n, Fn&& fn) {
  const int32_t lead =
      min(n, static_cast<int32_t>(((16 - (reinterpret_cast<uintptr_t>(values) & 15)) & 15) / 4));
  for (int32_t i = threadIdx.x; i < lead; i += kBlock) fn(i, values[i]);
  const int32_t n4 = (n - lead) / 4;
  const float4* values4 = reinterpret_cast<const float4*>(values + lead);
  constexpr int kUnroll = 4;
  int32_t j = threadIdx.x;
  for (; j + (kUnroll - 1) * kBlock < n4; j += kUnroll * kBlock) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldg(values4 + j + u * kBlock);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = lead + 4 * (j + u * kBlock);
      fn(i, v[u].x);
      fn(i + 1, v[u].y);
      fn(i + 2, v[u].z);
      fn(i + 3, v[u].w);
    }
  }
  for (; j < n4; j += kBlock) {
    const float4 v = __ldg(values4 + j);
    const int32_t i = lead + 4 * j;
    fn(i, v.x);
    fn(i + 1, v.y);
    fn(i + 2, v.z);
    fn(i + 3, v.w);
  }
  for (int32_t i = lead + 4 * n4 + threadIdx.x; i < n; i += kBlock) fn(i, values[i]);
}

template <int kBlock, typename T, typename Op>
__device__ __forceinline__ T BlockReduce(T value, Op op, T* scratch /* kBlock / 32 */) {
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  value = scratch[0];
  for (int w = 1; w < kBlock / 32; ++w) value = op(value, scratch[w]);
  __syncthreads();
  return value;
}

__device__ __forceinline__ void ClusterSync() { cg::this_cluster().sync(); }
template <typename T>
__device__ __forceinline__ T* AtRank(T* p, int rank) {
  return cg::this_cluster().map_shared_rank(p, rank);
}

// Combines one value per block (the same in all its threads) over the cluster, in rank
// order; `slot` is this block's shared-memory cell for it.
template <typename T, typename Op>
__device__ __forceinline__ T ClusterCombine(T value, Op op, T* slot) {
  if (threadIdx.x == 0) *slot = value;
  ClusterSync();
  T total = *AtRank(slot, 0);
  for (int c = 1; c < static_cast<int>(cg::this_cluster().num_blocks()); ++c) total = op(total, *AtRank(slot, c));
  ClusterSync();  // the slots may be written again
  return total;
}

// The cluster's share of a row: this block streams [begin, end).
struct RowSlice {
  const float* row;
  int32_t vocab;
  int32_t begin;
  int32_t end;
  int rank;
  int size;
};

// Clusters are consecutive blocks: cluster c handles row c.
__device__ __forceinline__ RowSlice SliceOfRow(const float* logits, int32_t vocab) {
  const cg::cluster_group cluster = cg::this_cluster();
  const int size = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int64_t chunk = ((static_cast<int64_t>(vocab) + size - 1) / size + 3) / 4 * 4;  // 16-byte aligned slices
  const int32_t begin = static_cast<int32_t>(min(static_cast<int64_t>(vocab), rank * chunk));
  const int32_t end = static_cast<int32_t>(min(static_cast<int64_t>(vocab), begin + chunk));
  return {logits + static_cast<int64_t>(blockIdx.x / size) * vocab, vocab, begin, end, rank, size};
}

template <int kBlock, typename Fn>
__device__ __forceinline__ void ForEachInSlice(const RowSlice& slice, Fn&& fn) {
  ForEachLogit<kBlock>(slice.row + slice.begin, slice.end - slice.begin,
                       [&](int32_t i, float l) { fn(slice.begin + i, l); });
}

// The row's argmax (cpu::Sample's greedy token) over the cluster.
template <int kBlock>
__device__ __forceinline__ int32_t ClusterArgMax(const RowSlice& slice, uint64_t* scratch, uint64_t* slot) {
  uint64_t best = 0;  // below every element's word
  ForEachInSlice<kBlock>(slice, [&](int32_t i, float l) { best = max(best, PackArgMax(l, i)); });
  const auto larger = [](uint64_t a, uint64_t b) { return max(a, b); };
  return UnpackArgMaxId(ClusterCombine(BlockReduce<kBlock>(best, larger, scratch), larger, slot));
}

// cpu::SampleUniform, bit for bit.
__device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
__device__ __forceinline__ double SampleUniform(uint64_t seed, int64_t position) {
  const uint64_t h = Mix64(Mix64(seed + 0x9e3779b97f4a7c15ULL) ^ static_cast<uint64_t>(position));
  return static_cast<double>(h >> 11) * 0x1p-53;
}

// ---- radix select over (count, mass) histograms ----

struct BinSum {
  uint32_t count;
  double mass;
};
struct BinSumAdd {
  __device__ __forceinline__ BinSum operator()(const BinSum& a, const BinSum& b) const {
    return {a.count + b.count, a.mass + b.mass};
  }
};
using BinScan = cub::BlockScan<BinSum, kThreads>;

// Counts and weight sums of key bins. A sum is kept as 96-bit fixed point in units of
// 2^-65 (three words, carried by hand): shared-memory f64 atomics are compare-and-swap
// loops that serialise on the few bins holding most tokens, 32-bit integer atomics are
// native; the sums are also exact whatever the order of the adds. Weights are <= 1 and
// rows are < 2^31 long, so the top word (units of 1/2) never overflows.
struct Histogram {
  uint32_t count[kTopBins];
  uint32_t mass_hi[kTopBins];
  uint32_t mass_mid[kTopBins];
  uint32_t mass_lo[kTopBins];

  __device__ __forceinline__ void Clear(int num_bins) {
    for (int b = threadIdx.x; b < num_bins; b += kThreads) count[b] = mass_hi[b] = mass_mid[b] = mass_lo[b] = 0;
  }
  __device__ __forceinline__ void AddWords(int b, uint32_t hi, uint32_t mid, uint32_t lo) {
    uint64_t carry_mid = mid;
    if (lo != 0) {
      const uint32_t old = atomicAdd(&mass_lo[b], lo);
      carry_mid += (old + lo < old) ? 1u : 0u;
    }
    uint32_t carry_hi = hi + static_cast<uint32_t>(carry_mid >> 32);
    const uint32_t mid32 = static_cast<uint32_t>(carry_mid);
    if (mid32 != 0) {
      const uint32_t old = atomicAdd(&mass_mid[b], mid32);
      carry_hi += (old + mid32 < old) ? 1u : 0u;
    }
    if (carry_hi != 0) atomicAdd(&mass_hi[b], carry_hi);
  }
  // Adds w >= 0 (truncated to 2^-65) to bin b.
  __device__ __forceinline__ void AddMass(int b, double w) {
    const double a = w * 2.0;  // a = hi + (mid + lo 2^-32) 2^-32: exact splits
    const double hi = floor(a);
    const double rest = (a - hi) * 0x1p32;
    const double mid = floor(rest);
    AddWords(b, static_cast<uint32_t>(hi), static_cast<uint32_t>(mid),
             static_cast<uint32_t>(floor((rest - mid) * 0x1p32)));
  }
};

// What the leader found, for every block of the cluster to read.
struct Published {
  bool found;
  uint32_t bin;
  uint32_t count;    // candidates in the bin
  uint32_t min_id;   // the lowest id in the bin (refining rounds), kNoId if none
  uint32_t max_key;  // the largest key in the bin (refining rounds)
  BinSum above;      // candidates in the bins above it, not counting the base
};

struct SelectSmem {
  Histogram top;   // round 1 over the current candidates, kept across selects
  Histogram fine;  // rounds 2 and 3; tile counts of NthId
  uint32_t min_id[kTopBins];
  uint32_t max_key[kTopBins];
  typename BinScan::TempStorage scan;
  uint64_t scratch64[kThreads / 32];
  double scratch_f64[kThreads / 32];
  BinSum best_above;
  int best_order;
  Published published;
  uint64_t slot64;
  double slot_f64;
  BinSum slot_sum;
  uint32_t slot32;
  uint32_t word[2];
};

enum class Target {
  kCount,       // the target_count-th candidate (top-k)
  kReachMass,   // the first candidate whose prefix mass reaches target_mass (top-p)
  kExceedMass,  // the first candidate whose prefix mass exceeds target_mass (the draw)
};

__device__ __forceinline__ BinSum LoadBin(const Histogram& h, int b, bool with_mass) {
  return {h.count[b], with_mass ? h.mass_hi[b] * 0.5 + h.mass_mid[b] * 0x1p-33 + h.mass_lo[b] * 0x1p-65 : 0.0};
}

// Clears a histogram and its id and key bounds.
__device__ __forceinline__ void ClearFine(SelectSmem& s) {
  s.fine.Clear(kTopBins);
  for (int b = threadIdx.x; b < kTopBins; b += kThreads) {
    s.min_id[b] = kNoId;
    s.max_key[b] = 0;
  }
}

// Not the leader: adds this block's nonzero bins into the leader's, clearing the fine
// ones (the leader's own bins are the sums).
__device__ void MergeIntoLeader(SelectSmem& s, bool fine, bool with_mass, int num_bins) {
  SelectSmem& leader = *AtRank(&s, 0);
  Histogram& own = fine ? s.fine : s.top;
  Histogram& sum = fine ? leader.fine : leader.top;
  __syncthreads();  // this block's histogram is complete
  for (int b = threadIdx.x; b < num_bins; b += kThreads) {
    const uint32_t count = own.count[b];
    if (count == 0) continue;
    atomicAdd(&sum.count[b], count);
    if (with_mass) sum.AddWords(b, own.mass_hi[b], own.mass_mid[b], own.mass_lo[b]);
    if (fine) {
      atomicMin(&leader.min_id[b], s.min_id[b]);
      atomicMax(&leader.max_key[b], s.max_key[b]);
      own.count[b] = own.mass_hi[b] = own.mass_mid[b] = own.mass_lo[b] = 0;
      s.min_id[b] = kNoId;
      s.max_key[b] = 0;
    }
  }
}

// Leader only, over its (the cluster's) histogram: the bin, scanning from the highest,
// that holds the target: the last nonempty one whose candidates above it (plus `base`,
// the candidates above all these bins) fall short of it.
template <int kNumBins>
__device__ Published FindCrossing(SelectSmem& s, bool fine, bool with_mass, BinSum base, Target target,
                                  uint32_t target_count, double target_mass) {
  constexpr int kPerThread = kNumBins / kThreads;
  BinSum local[kPerThread];
  BinSum sum{0u, 0.0};
#pragma unroll
  for (int p = 0; p < kPerThread; ++p) {
    local[p] = LoadBin(fine ? s.fine : s.top, kNumBins - 1 - (threadIdx.x * kPerThread + p), with_mass);
    sum = BinSumAdd()(sum, local[p]);
  }
  BinSum above;
  BinScan(s.scan).ExclusiveScan(sum, above, BinSum{0u, 0.0}, BinSumAdd());
  if (threadIdx.x == 0) s.best_order = -1;
  __syncthreads();
  int best = -1;
  BinSum best_above{0u, 0.0};
#pragma unroll
  for (int p = 0; p < kPerThread; ++p) {
    if (local[p].count > 0) {
      const BinSum total = BinSumAdd()(base, above);
      const bool short_of = target == Target::kCount       ? total.count < target_count
                            : target == Target::kReachMass ? total.mass < target_mass
                                                           : total.mass <= target_mass;
      if (short_of) {
        best = threadIdx.x * kPerThread + p;
        best_above = above;
      }
    }
    above = BinSumAdd()(above, local[p]);
  }
  if (best >= 0) atomicMax(&s.best_order, best);
  __syncthreads();
  const int order = s.best_order;
  if (best >= 0 && best == order) s.best_above = best_above;
  __syncthreads();
  Published result{order >= 0, 0u, 0u, kNoId, 0u, BinSum{0u, 0.0}};
  if (result.found) {
    result.bin = kNumBins - 1 - order;
    result.count = (fine ? s.fine : s.top).count[result.bin];
    result.above = s.best_above;
    if (fine) {
      result.min_id = s.min_id[result.bin];
      result.max_key = s.max_key[result.bin];
    }
  }
  __syncthreads();
  return result;
}

// All blocks: the leader's crossing over the cluster's round-1 histogram or (fine) over
// the blocks' fine histograms, which are clear again afterwards.
template <int kNumBins>
__device__ Published ClusterFindCrossing(SelectSmem& s, const RowSlice& slice, bool fine, bool with_mass,
                                         BinSum base, Target target, uint32_t target_count, double target_mass) {
  if (fine && slice.rank != 0) MergeIntoLeader(s, true, with_mass, kNumBins);
  ClusterSync();  // the leader's histogram is the cluster's; everyone has read the last publication
  if (slice.rank == 0) {
    const Published result = FindCrossing<kNumBins>(s, fine, with_mass, base, target, target_count, target_mass);
    if (fine) ClearFine(s);
    if (threadIdx.x == 0) s.published = result;
  }
  ClusterSync();
  return *AtRank(&s.published, 0);
}

// The candidates of a select: every element with key > lo, and of those with key == lo
// all of them, or (partial) only the lo_count with the lowest ids, each of weight lo_weight.
struct Candidates {
  uint32_t lo;
  uint32_t lo_count;
  bool partial;
  double lo_weight;
};

struct Pick {
  bool found;
  uint32_t key;
  uint32_t rank;    // the element is the rank-th (from 1) of the candidates with this key, by id
  uint32_t group;   // candidates with this key
  uint32_t min_id;  // the lowest id with this key when known, else kNoId
  double weight;
  BinSum above;       // candidates with larger keys
  BinSum in_top_bin;  // of those, the ones in the key's round-1 bin
};

struct RowView {
  RowSlice slice;
  double max_logit;
  double temperature;
};

// The CPU's weight, expression for expression.
__device__ __forceinline__ double Weight(float logit, const RowView& view) {
  return exp((static_cast<double>(logit) - view.max_logit) / view.temperature);
}

// One refining round: the histogram of the key bits below `prefix_shift` and from `shift`
// over the candidates whose key starts with `prefix`; the bin holding the target.
template <int kNumBins, bool kMass>
__device__ Published RefineRound(SelectSmem& s, const RowView& view, const Candidates& cand, uint32_t prefix,
                                 int prefix_shift, int shift, BinSum base, Target target, uint32_t target_count,
                                 double target_mass, bool& holds_lo) {
  constexpr uint32_t kMask = kNumBins - 1;
  // A partial lowest group is skipped below: it enters (in the leader) as its kept count.
  const bool lo_here = cand.partial && (cand.lo >> prefix_shift) == prefix;
  const uint32_t lo_bin = (cand.lo >> shift) & kMask;
  if (lo_here && view.slice.rank == 0 && threadIdx.x == 0) {  // atomics: the pass below shares the bin
    atomicAdd(&s.fine.count[lo_bin], cand.lo_count);
    s.fine.AddMass(lo_bin, cand.lo_count * cand.lo_weight);
  }
  ForEachInSlice<kThreads>(view.slice, [&](int32_t i, float l) {
    const uint32_t key = OrderedKey(l);
    if ((key >> prefix_shift) != prefix || key < cand.lo || (key == cand.lo && cand.partial)) return;
    const uint32_t bin = (key >> shift) & kMask;
    atomicAdd(&s.fine.count[bin], 1u);
    if constexpr (kMass) s.fine.AddMass(bin, Weight(l, view));
    atomicMin(&s.min_id[bin], static_cast<uint32_t>(i));
    atomicMax(&s.max_key[bin], key);
  });
  const Published crossing =
      ClusterFindCrossing<kNumBins>(s, view.slice, true, kMass, base, target, target_count, target_mass);
  holds_lo = lo_here && crossing.bin == lo_bin;
  return crossing;
}

// The candidate at which the target is met, in the CPU's order up to ties of weight.
template <bool kMass>
__device__ Pick Select(SelectSmem& s, const RowView& view, const Candidates& cand, Target target,
                       uint32_t target_count, double target_mass) {
  Pick pick{};
  pick.found = false;
  const Published top = ClusterFindCrossing<kTopBins>(s, view.slice, false, kMass, BinSum{0u, 0.0}, target,
                                                      target_count, target_mass);
  if (!top.found) return pick;
  bool holds_lo = false;
  const Published mid = RefineRound<kTopBins, kMass>(s, view, cand, top.bin, 21, 10, top.above, target,
                                                     target_count, target_mass, holds_lo);
  if (!mid.found) return pick;
  BinSum in_bin = mid.above;
  Published last = mid;
  if (mid.count == 1 && !holds_lo) {  // a lone candidate: its key and id are known
    pick.key = mid.max_key;
    pick.min_id = mid.min_id;
  } else {
    const uint32_t prefix = (top.bin << 11) | mid.bin;
    last = RefineRound<kTopBins / 2, kMass>(s, view, cand, prefix, 10, 0, BinSumAdd()(top.above, in_bin), target,
                                           target_count, target_mass, holds_lo);
    if (!last.found) return pick;
    in_bin = BinSumAdd()(in_bin, last.above);
    pick.key = (prefix << 10) | last.bin;
    pick.min_id = holds_lo ? kNoId : last.min_id;
  }
  pick.found = true;
  pick.group = last.count;
  pick.above = BinSumAdd()(top.above, in_bin);
  pick.in_top_bin = in_bin;
  pick.weight = kMass ? Weight(KeyToFloat(pick.key), view) : 0.0;
  uint32_t rank = 1;
  if (target == Target::kCount) {
    rank = target_count - pick.above.count;
  } else {
    const double d = (target_mass - pick.above.mass) / pick.weight;  // candidates of the group it takes
    if (target == Target::kReachMass) {
      rank = !(d > 1.0) ? 1u : d >= pick.group ? pick.group : static_cast<uint32_t>(ceil(d));
    } else {
      rank = !(d >= 0.0) ? 1u : d >= pick.group ? pick.group : static_cast<uint32_t>(floor(d)) + 1u;
    }
  }
  pick.rank = max(1u, min(rank, pick.group));
  return pick;
}

// Keeps only the candidates up to and including `pick` (the top-k or top-p cut).
__device__ void Restrict(SelectSmem& s, const RowView& view, const Pick& pick, Candidates& cand) {
  cand = Candidates{pick.key, pick.rank, true, pick.weight};
  if (view.slice.rank != 0) return;  // only the leader's round-1 histogram is read
  const uint32_t top_bin = pick.key >> 21;
  for (int b = threadIdx.x; b <= static_cast<int>(top_bin); b += kThreads) {
    s.top.count[b] = s.top.mass_hi[b] = s.top.mass_mid[b] = s.top.mass_lo[b] = 0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    s.top.count[top_bin] = pick.in_top_bin.count + pick.rank;
    s.top.AddMass(top_bin, pick.in_top_bin.mass + pick.rank * pick.weight);
  }
  __syncthreads();
}

// The n-th (from 1) id, in increasing order, whose logit satisfies pred; kNoId if none.
// Counts matches per tile of consecutive ids, then every block walks the one tile
// holding it.
template <typename Pred>
__device__ uint32_t NthId(SelectSmem& s, const RowSlice& slice, Pred pred, uint32_t n) {
  const int32_t tile = (slice.vocab + kThreads - 1) / kThreads;
  if (threadIdx.x == 0) s.word[0] = kNoId;
  ForEachInSlice<kThreads>(slice, [&](int32_t i, float l) {
    if (pred(l)) atomicAdd(&s.fine.count[i / tile], 1u);
  });
  if (slice.rank != 0) MergeIntoLeader(s, true, false, kThreads);
  ClusterSync();
  if (slice.rank == 0) {
    if (threadIdx.x == 0) s.published.found = false;
    __syncthreads();
    const uint32_t in_tile = s.fine.count[threadIdx.x];
    s.fine.count[threadIdx.x] = 0;
    BinSum before;
    BinScan(s.scan).ExclusiveScan(BinSum{in_tile, 0.0}, before, BinSum{0u, 0.0}, BinSumAdd());
    if (before.count < n && n <= before.count + in_tile) {
      s.published.found = true;
      s.published.bin = threadIdx.x;
      s.published.count = n - before.count;
    }
  }
  ClusterSync();
  const Published where = *AtRank(&s.published, 0);
  if (!where.found) return kNoId;
  const int32_t begin = where.bin * tile;
  const int32_t end = min(slice.vocab, begin + tile);
  uint32_t seen = 0;
  for (int32_t chunk = begin; chunk < end && seen < where.count; chunk += kThreads) {
    const int32_t i = chunk + threadIdx.x;
    const bool hit = i < end && pred(slice.row[i]);
    BinSum hits_before, hits;
    BinScan(s.scan).ExclusiveScan(BinSum{hit ? 1u : 0u, 0.0}, hits_before, BinSum{0u, 0.0}, BinSumAdd(), hits);
    if (hit && seen + hits_before.count + 1 == where.count) s.word[0] = i;
    seen += hits.count;
    __syncthreads();
  }
  return s.word[0];
}

// The CPU's id for the draw `pick`: the rank-th by id of its key group, unless distinct
// logits share its weight. Equal weights need |x_i - x_j| within a few ulps of 1 for
// x = (l - max) / T (exp is within 1 ulp; x's rounding adds 2^-52 |x| <= 2^-42.5 while
// the weight is normal), so |l_i - l_j| <= T * 2^-41.4; the band below has a margin of 10.
__device__ uint32_t DrawnId(SelectSmem& s, const RowView& view, const Pick& pick) {
  const float l = KeyToFloat(pick.key);
  const double band = view.temperature * 0x1p-38;
  const bool any_weight = pick.weight < 0x1p-1000;  // subnormal weights: compare them all
  const bool run_possible = any_weight || static_cast<double>(nextafterf(l, INFINITY)) - l <= band ||
                            l - static_cast<double>(nextafterf(l, -INFINITY)) <= band;
  if (!run_possible) {
    if (pick.rank == 1 && pick.min_id != kNoId) return pick.min_id;
    return NthId(s, view.slice, [&](float x) { return OrderedKey(x) == pick.key; }, pick.rank);
  }
  const auto in_run = [&](float x) {
    if (isnan(x) || (!any_weight && fabs(static_cast<double>(x) - l) > band)) return false;
    return Weight(x, view) == pick.weight;
  };
  // The run's members with larger keys come first in the CPU's order only by their id.
  if (threadIdx.x == 0) s.word[1] = 0;
  __syncthreads();
  uint32_t larger = 0;
  ForEachInSlice<kThreads>(view.slice, [&](int32_t, float x) {
    larger += (OrderedKey(x) > pick.key && in_run(x)) ? 1u : 0u;
  });
  atomicAdd(&s.word[1], larger);
  __syncthreads();
  const uint32_t offset = ClusterCombine(s.word[1], [](uint32_t a, uint32_t b) { return a + b; }, &s.slot32);
  return NthId(s, view.slice, in_run, pick.rank + offset);
}

struct SamplingPointers {
  const float* temperature;
  const int32_t* top_k;
  const float* top_p;
  const float* min_p;
  const int32_t* seed;
  const int32_t* position;
};

// cpu::Sample for the cluster's row.
__device__ int32_t SampleRow(SelectSmem& s, const RowSlice& slice, const SamplingPointers& params, int32_t r) {
  s.top.Clear(kTopBins);
  ClearFine(s);
  const int32_t argmax = ClusterArgMax<kThreads>(slice, s.scratch64, &s.slot64);
  const float temperature = params.temperature[r];
  if (!(temperature > 0.0f)) return argmax;
  const RowView view{slice, static_cast<double>(slice.row[argmax]), static_cast<double>(temperature)};

  // Round 1 over the kept tokens (weight > 0 and >= min_p), and the lowest kept key. Below
  // skip_below a weight is certainly 0 or under min_p: no exp needed.
  const double min_p = params.min_p[r];
  const double skip_below = min_p > 0.0 ? fmax(log(min_p) - 1e-6, -746.0) : -746.0;
  uint32_t lowest = 0xffffffffu;
  ForEachInSlice<kThreads>(slice, [&](int32_t, float l) {
    const double x = (static_cast<double>(l) - view.max_logit) / view.temperature;
    if (!(x >= skip_below)) return;
    const double w = exp(x);
    if (!(w > 0.0 && w >= min_p)) return;
    const uint32_t key = OrderedKey(l);
    atomicAdd(&s.top.count[key >> 21], 1u);
    s.top.AddMass(key >> 21, w);
    lowest = min(lowest, key);
  });
  const auto smaller = [](uint32_t a, uint32_t b) { return min(a, b); };
  lowest = BlockReduce<kThreads>(lowest, smaller, reinterpret_cast<uint32_t*>(s.scratch64));
  BinSum local{0u, 0.0};
  for (int b = threadIdx.x; b < kTopBins; b += kThreads) local = BinSumAdd()(local, LoadBin(s.top, b, true));
  BinSum unused, block_kept;
  BinScan(s.scan).ExclusiveScan(local, unused, BinSum{0u, 0.0}, BinSumAdd(), block_kept);
  lowest = ClusterCombine(lowest, smaller, &s.slot32);  // also: every block has summed its own bins
  if (slice.rank != 0) MergeIntoLeader(s, false, true, kTopBins);
  const BinSum kept = ClusterCombine(block_kept, BinSumAdd(), &s.slot_sum);
  if (kept.count == 0) return argmax;  // no finite weight (NaN or infinite logits): the CPU rejects the row

  Candidates cand{lowest, 0u, false, 0.0};
  double total = kept.mass;
  const int32_t top_k = params.top_k[r];
  if (top_k > 0 && static_cast<uint32_t>(top_k) < kept.count) {
    const Pick cut = Select<true>(s, view, cand, Target::kCount, static_cast<uint32_t>(top_k), 0.0);
    if (cut.found) {
      Restrict(s, view, cut, cand);
      total = cut.above.mass + cut.rank * cut.weight;
    }
  }
  const float top_p = params.top_p[r];
  if (top_p < 1.0f) {
    const Pick cut = Select<true>(s, view, cand, Target::kReachMass, 0u, static_cast<double>(top_p) * total);
    if (cut.found) {
      Restrict(s, view, cut, cand);
      total = cut.above.mass + cut.rank * cut.weight;
    }
  }
  const uint64_t seed = static_cast<uint64_t>(static_cast<uint32_t>(params.seed[2 * r])) |
                        (static_cast<uint64_t>(static_cast<uint32_t>(params.seed[2 * r + 1])) << 32);
  const double u = SampleUniform(seed, static_cast<int64_t>(params.position[r]));
  const Pick draw = Select<true>(s, view, cand, Target::kExceedMass, 0u, u * total);
  const uint32_t id = draw.found ? DrawnId(s, view, draw) : kNoId;
  return id < static_cast<uint32_t>(slice.vocab) ? static_cast<int32_t>(id) : argmax;
}

__global__ void __launch_bounds__(kArgMaxThreads) ArgMaxKernel(const float* logits, int32_t vocab, int32_t* tokens) {
  __shared__ uint64_t scratch[kArgMaxThreads / 32];
  __shared__ uint64_t slot;
  const RowSlice slice = SliceOfRow(logits, vocab);
  const int32_t id = ClusterArgMax<kArgMaxThreads>(slice, scratch, &slot);
  if (slice.rank == 0 && threadIdx.x == 0) tokens[blockIdx.x / slice.size] = id;
}

__global__ void __launch_bounds__(kThreads) SampleKernel(const float* logits, int32_t vocab, SamplingPointers params,
                                                         int32_t* tokens) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SelectSmem& s = *reinterpret_cast<SelectSmem*>(smem_raw);
  const RowSlice slice = SliceOfRow(logits, vocab);
  const int32_t r = blockIdx.x / slice.size;
  const int32_t token = SampleRow(s, slice, params, r);
  ClusterSync();  // no block leaves while another may read its shared memory
  if (slice.rank == 0 && threadIdx.x == 0) tokens[r] = token;
}

// ---- top-k log-probabilities ----

struct TopKSmem {
  SelectSmem select;
  uint32_t above_key[kMaxTopK];
  int32_t above_id[kMaxTopK];
  int32_t tie_id[kTieCapacity];
  uint32_t num_above;
  uint32_t num_ties;
};

// cpu::LogSoftmax's value for one logit.
__device__ __forceinline__ float LogProb(float logit, double max_logit, double log_sum) {
  return static_cast<float>((static_cast<double>(logit) - max_logit) - log_sum);
}

// The k best log-probabilities of the cluster's row: the k-th best logit by a count
// select, then every element whose log-probability ranks above it or equals its
// (distinct logits can round to one f32 log-probability, and those tie by id), gathered
// in the leader and ranked pairwise there.
__device__ void TopKRow(TopKSmem& t, const RowSlice& slice, int k, int32_t* row_ids, float* row_logprobs) {
  SelectSmem& s = t.select;
  TopKSmem& leader = *AtRank(&t, 0);
  const int count = min(k, slice.vocab);
  s.top.Clear(kTopBins);
  ClearFine(s);
  if (threadIdx.x == 0) t.num_above = t.num_ties = 0;
  ClusterSync();  // the leader's bins and counters are clear before anyone adds to them

  // The row's max as cpu::LogSoftmax takes it (std::max skips NaN; a row of NaN gives NaN
  // here and -inf there, and NaN log-probabilities either way) and round 1 of all keys.
  uint32_t max_key = 0;
  ForEachInSlice<kThreads>(slice, [&](int32_t, float l) {
    const uint32_t key = OrderedKey(l);
    max_key = max(max_key, key);
    atomicAdd(&s.top.count[key >> 21], 1u);
  });
  const auto larger = [](uint32_t a, uint32_t b) { return max(a, b); };
  max_key = BlockReduce<kThreads>(max_key, larger, reinterpret_cast<uint32_t*>(s.scratch64));
  if (slice.rank != 0) MergeIntoLeader(s, false, false, kTopBins);
  max_key = ClusterCombine(max_key, larger, &s.slot32);
  const double max_logit = KeyToFloat(max_key);
  double sum = 0.0;
  ForEachInSlice<kThreads>(slice, [&](int32_t, float l) { sum += exp(static_cast<double>(l) - max_logit); });
  const auto add = [](double a, double b) { return a + b; };
  sum = ClusterCombine(BlockReduce<kThreads>(sum, add, s.scratch_f64), add, &s.slot_f64);
  const double log_sum = log(sum);

  const RowView view{slice, max_logit, 1.0};
  const Pick kth =
      Select<false>(s, view, Candidates{0u, 0u, false, 0.0}, Target::kCount, static_cast<uint32_t>(count), 0.0);
  const float kth_logprob = LogProb(KeyToFloat(kth.key), max_logit, log_sum);
  const uint32_t kth_key = OrderedKey(kth_logprob);
  const auto key_of = [&](float l) { return OrderedKey(LogProb(l, max_logit, log_sum)); };

  // Better than the k-th: fewer than k of them (only larger logits). Equal: the lowest ids.
  ForEachInSlice<kThreads>(slice, [&](int32_t i, float l) {
    const uint32_t key = key_of(l);
    if (key > kth_key) {
      const uint32_t slot = atomicAdd(&leader.num_above, 1u);
      if (slot < kMaxTopK) {
        leader.above_key[slot] = key;
        leader.above_id[slot] = i;
      }
    } else if (key == kth_key) {
      const uint32_t slot = atomicAdd(&leader.num_ties, 1u);
      if (slot < kTieCapacity) leader.tie_id[slot] = i;
    }
  });
  ClusterSync();
  const uint32_t num_above = min(leader.num_above, static_cast<uint32_t>(kMaxTopK));
  if (leader.num_ties > static_cast<uint32_t>(kTieCapacity)) {
    // Too many ties to rank at once: keep those up to the one the top-k needs last.
    const uint32_t last = NthId(s, slice, [&](float l) { return key_of(l) == kth_key; },
                                static_cast<uint32_t>(count) - num_above);
    if (slice.rank == 0 && threadIdx.x == 0) t.num_ties = 0;
    ClusterSync();
    ForEachInSlice<kThreads>(slice, [&](int32_t i, float l) {
      if (static_cast<uint32_t>(i) <= last && key_of(l) == kth_key) {
        const uint32_t slot = atomicAdd(&leader.num_ties, 1u);
        if (slot < kTieCapacity) leader.tie_id[slot] = i;
      }
    });
    ClusterSync();
  }
  if (slice.rank != 0) return;
  const uint32_t num_ties = min(t.num_ties, static_cast<uint32_t>(kTieCapacity));
  for (int j = count + threadIdx.x; j < k; j += kThreads) {  // k > V: padding
    row_ids[j] = -1;
    row_logprobs[j] = -INFINITY;
  }
  for (uint32_t a = threadIdx.x; a < num_above; a += kThreads) {
    const uint32_t key = t.above_key[a];
    const int32_t id = t.above_id[a];
    uint32_t rank = 0;
    for (uint32_t b = 0; b < num_above; ++b) {
      rank += (t.above_key[b] > key || (t.above_key[b] == key && t.above_id[b] < id)) ? 1u : 0u;
    }
    row_ids[rank] = id;
    row_logprobs[rank] = KeyToFloat(key);
  }
  for (uint32_t a = threadIdx.x; a < num_ties; a += kThreads) {
    const int32_t id = t.tie_id[a];
    uint32_t rank = num_above;
    for (uint32_t b = 0; b < num_ties; ++b) rank += t.tie_id[b] < id ? 1u : 0u;
    if (rank < static_cast<uint32_t>(count)) {
      row_ids[rank] = id;
      row_logprobs[rank] = kth_logprob;
    }
  }
}

__global__ void __launch_bounds__(kThreads) TopKLogprobsKernel(const float* logits, int32_t vocab, int k,
                                                               int32_t* ids, float* logprobs) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  TopKSmem& t = *reinterpret_cast<TopKSmem*>(smem_raw);
  const RowSlice slice = SliceOfRow(logits, vocab);
  const int64_t r = blockIdx.x / slice.size;
  TopKRow(t, slice, k, ids + r * k, logprobs + r * k);
  ClusterSync();  // no block leaves while another may read its shared memory
}

// ---- host side ----

void CheckLogits(const Tensor& logits) {
  LATTICE_CHECK(logits.device() == Device::kCuda && logits.dtype() == DType::kF32 && logits.ndim() == 2);
  LATTICE_CHECK(logits.dim(0) <= 0x7fffffff && logits.dim(1) >= 1 && logits.dim(1) <= 0x7fffffff);
}

void CheckRowTensor(const Tensor& t, DType dtype, int64_t numel) {
  LATTICE_CHECK(t.defined() && t.device() == Device::kCuda && t.dtype() == dtype && t.numel() == numel);
}

// Blocks per row: as many (up to kMaxCluster) as keep the grid within one wave.
int ClusterSize(int64_t rows) {
  int device = 0, sms = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&device));
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  int size = kMaxCluster;
  while (size > 1 && rows * size > sms) size /= 2;
  return size;
}

template <typename... KernelArgs, typename... Args>
void LaunchClusters(void (*kernel)(KernelArgs...), int64_t rows, int threads, size_t smem, cudaStream_t stream,
                    Args... args) {
  if (smem > 48 * 1024) {
    LATTICE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  }
  const int cluster = ClusterSize(rows);
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(rows * cluster));
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = cluster;
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  LATTICE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, args...));
}

}  // namespace

void Sample(const Tensor& logits, const SamplingMetadata& sampling, Tensor& tokens, Workspace& /*workspace*/,
            cudaStream_t stream) {
  CheckLogits(logits);
  const int64_t rows = logits.dim(0);
  const int32_t vocab = static_cast<int32_t>(logits.dim(1));
  CheckRowTensor(tokens, DType::kI32, rows);
  if (rows == 0) return;
  if (sampling.all_greedy) {
    LaunchClusters(ArgMaxKernel, rows, kArgMaxThreads, 0, stream, Ptr<float>(logits), vocab,
                   MutablePtr<int32_t>(tokens));
    return;
  }
  CheckRowTensor(sampling.temperature, DType::kF32, rows);
  CheckRowTensor(sampling.top_k, DType::kI32, rows);
  CheckRowTensor(sampling.top_p, DType::kF32, rows);
  CheckRowTensor(sampling.min_p, DType::kF32, rows);
  CheckRowTensor(sampling.seed, DType::kI32, 2 * rows);
  CheckRowTensor(sampling.position, DType::kI32, rows);
  const SamplingPointers params{Ptr<float>(sampling.temperature), Ptr<int32_t>(sampling.top_k),
                                Ptr<float>(sampling.top_p),       Ptr<float>(sampling.min_p),
                                Ptr<int32_t>(sampling.seed),      Ptr<int32_t>(sampling.position)};
  LaunchClusters(SampleKernel, rows, kThreads, sizeof(SelectSmem), stream, Ptr<float>(logits), vocab, params,
                 MutablePtr<int32_t>(tokens));
}

size_t SampleWorkspaceBytes(int64_t /*rows*/, int64_t /*vocab*/) { return 0; }

void TopKLogprobs(const Tensor& logits, int k, Tensor& ids, Tensor& logprobs, Workspace& /*workspace*/,
                  cudaStream_t stream) {
  CheckLogits(logits);
  LATTICE_CHECK(k >= 0 && k <= kMaxTopK);
  const int64_t rows = logits.dim(0);
  LATTICE_CHECK(ids.device() == Device::kCuda && ids.dtype() == DType::kI32 && ids.numel() == rows * k);
  LATTICE_CHECK(logprobs.device() == Device::kCuda && logprobs.dtype() == DType::kF32 &&
                logprobs.numel() == rows * k);
  if (rows == 0 || k == 0) return;
  LaunchClusters(TopKLogprobsKernel, rows, kThreads, sizeof(TopKSmem), stream, Ptr<float>(logits),
                 static_cast<int32_t>(logits.dim(1)), k, MutablePtr<int32_t>(ids), MutablePtr<float>(logprobs));
}

}  // namespace lattice::cuda
