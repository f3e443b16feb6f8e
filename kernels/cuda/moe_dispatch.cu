// Expert parallelism's all-to-all dispatch on the GPU (see ops.h): which (token, expert)
// pairs a rank sends to which expert owner, the gather of their rows into the send
// buffer, and the combine of the returned rows at their source.
//
// The plan is one block: a counting pass (pairs per destination), then tiles of 1024
// pairs placed in (token, slot) order within each destination (warp match + a scan of
// per-warp counts), so the send buffer's order is deterministic and is the CPU's
// (worker/layers/moe.cc). The combine sums each token's rows in ascending expert order,
// as the CPU does, in f32.
#include "kernels/cuda/ops.h"

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

constexpr int kPlanThreads = 1024;
constexpr int kPlanWarps = kPlanThreads / 32;
constexpr int kMaxEpRanks = 64;       // per-warp counts of every destination in shared memory
constexpr int kMaxCombineTopK = 32;

__global__ void __launch_bounds__(kPlanThreads)
    MoeDispatchPlanKernel(const int32_t* __restrict__ topk_ids, int64_t num_pairs, int top_k, int tp_rank,
                          int tp_size, int experts_per_rank, int ep, int32_t* __restrict__ send_counts,
                          int32_t* __restrict__ pair_row, int32_t* __restrict__ send_token,
                          int32_t* __restrict__ send_expert) {
  __shared__ int counts[kMaxEpRanks];
  __shared__ int cursor[kMaxEpRanks];  // next free row of each destination's segment
  __shared__ int warp_counts[kPlanWarps * kMaxEpRanks];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  auto destination = [&](int64_t pair) -> int {
    const int64_t token = pair / top_k;
    if (token % tp_size != tp_rank) return -1;  // another TP rank of this DP group sends it
    const int32_t e = topk_ids[pair];
    const int d = e / experts_per_rank;
    return e >= 0 && d < ep ? d : -1;
  };
  for (int d = threadIdx.x; d < ep; d += kPlanThreads) counts[d] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < num_pairs; i += kPlanThreads) {
    const int d = destination(i);
    if (d >= 0) atomicAdd(&counts[d], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int start = 0;
    for (int d = 0; d < ep; ++d) {
      cursor[d] = start;
      send_counts[d] = counts[d];
      start += counts[d];
    }
  }
  __syncthreads();

  for (int64_t base = 0; base < num_pairs; base += kPlanThreads) {
    for (int j = threadIdx.x; j < kPlanWarps * ep; j += kPlanThreads) warp_counts[j] = 0;
    __syncthreads();
    const int64_t i = base + threadIdx.x;
    const int d = i < num_pairs ? destination(i) : -1;
    const unsigned same = __match_any_sync(0xffffffffu, d);
    const int rank_in_warp = __popc(same & ((1u << lane) - 1u));
    if (d >= 0 && rank_in_warp == 0) warp_counts[warp * ep + d] = __popc(same);
    __syncthreads();
    if (threadIdx.x < ep) {  // exclusive scan over warps, continuing the destination's cursor
      int running = cursor[threadIdx.x];
      for (int w = 0; w < kPlanWarps; ++w) {
        const int n = warp_counts[w * ep + threadIdx.x];
        warp_counts[w * ep + threadIdx.x] = running;
        running += n;
      }
      cursor[threadIdx.x] = running;
    }
    __syncthreads();
    if (i < num_pairs) {
      if (d >= 0) {
        const int row = warp_counts[warp * ep + d] + rank_in_warp;
        pair_row[i] = row;
        send_token[row] = static_cast<int32_t>(i / top_k);
        send_expert[row] = topk_ids[i] - d * experts_per_rank;
      } else {
        pair_row[i] = -1;
      }
    }
    __syncthreads();  // warp_counts is cleared for the next tile
  }
}

// One block per row: out[r] = x[rows[r]].
template <typename W>
__global__ void GatherRowsKernel(const W* __restrict__ x, const int32_t* __restrict__ rows, int64_t row_words,
                                 W* __restrict__ out) {
  const W* src = x + static_cast<int64_t>(rows[blockIdx.x]) * row_words;
  W* dst = out + static_cast<int64_t>(blockIdx.x) * row_words;
  for (int64_t i = threadIdx.x; i < row_words; i += blockDim.x) dst[i] = src[i];
}

// One block per token: its dispatched slots sorted by expert, then out[t, h] = sum of
// weight * back[row, h] in that order (0 for a token another TP rank dispatched).
template <typename T>
__global__ void CombineDispatchedKernel(const T* __restrict__ back, const int32_t* __restrict__ pair_row,
                                        const int32_t* __restrict__ topk_ids, const float* __restrict__ topk_weights,
                                        int top_k, int64_t hidden, T* __restrict__ out) {
  __shared__ int32_t rows[kMaxCombineTopK];
  __shared__ float weights[kMaxCombineTopK];
  __shared__ int num_slots;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    int32_t experts[kMaxCombineTopK];
    int n = 0;
    for (int s = 0; s < top_k; ++s) {
      const int64_t pair = t * top_k + s;
      if (pair_row[pair] < 0) continue;
      // Insertion by expert id (top_k is small); ids of one token are distinct.
      int j = n++;
      while (j > 0 && experts[j - 1] > topk_ids[pair]) {
        experts[j] = experts[j - 1], rows[j] = rows[j - 1], weights[j] = weights[j - 1];
        --j;
      }
      experts[j] = topk_ids[pair], rows[j] = pair_row[pair], weights[j] = topk_weights[pair];
    }
    num_slots = n;
  }
  __syncthreads();
  for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < num_slots; ++s) sum += weights[s] * ToFloat(back[static_cast<int64_t>(rows[s]) * hidden + h]);
    out[t * hidden + h] = FromFloat<T>(sum);
  }
}

}  // namespace

void MoeDispatchPlan(const Tensor& topk_ids, int tp_rank, int tp_size, int64_t experts_per_rank, int ep,
                     MoeDispatch& plan, cudaStream_t stream) {
  CheckDeviceTensor(topk_ids, DType::kI32, "topk_ids");
  LATTICE_CHECK(topk_ids.ndim() == 2);
  LATTICE_CHECK_MSG(1 <= ep && ep <= kMaxEpRanks, "expert parallelism over %d ranks (at most %d)", ep, kMaxEpRanks);
  LATTICE_CHECK(0 <= tp_rank && tp_rank < tp_size && experts_per_rank >= 1);
  const int64_t pairs = topk_ids.numel();
  LATTICE_CHECK(pairs < INT32_MAX);
  CheckDeviceTensor(plan.send_counts, DType::kI32, "send_counts");
  CheckDeviceTensor(plan.pair_row, DType::kI32, "pair_row");
  CheckDeviceTensor(plan.send_token, DType::kI32, "send_token");
  CheckDeviceTensor(plan.send_expert, DType::kI32, "send_expert");
  LATTICE_CHECK(plan.send_counts.numel() == ep && plan.pair_row.numel() == pairs &&
                plan.send_token.numel() >= pairs && plan.send_expert.numel() >= pairs);
  if (pairs == 0) {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(plan.send_counts.raw_data(), 0, plan.send_counts.nbytes(), stream));
    return;
  }
  MoeDispatchPlanKernel<<<1, kPlanThreads, 0, stream>>>(
      Ptr<int32_t>(topk_ids), pairs, static_cast<int>(topk_ids.dim(1)), tp_rank, tp_size,
      static_cast<int>(experts_per_rank), ep, MutablePtr<int32_t>(plan.send_counts), MutablePtr<int32_t>(plan.pair_row),
      MutablePtr<int32_t>(plan.send_token), MutablePtr<int32_t>(plan.send_expert));
  LATTICE_CUDA_LAUNCH_CHECK();
}

void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(x.device() == Device::kCuda && out.device() == Device::kCuda && x.ndim() == 2 && out.ndim() == 2);
  CheckDeviceTensor(rows, DType::kI32, "rows");
  LATTICE_CHECK(out.dim(1) == x.dim(1) && out.dtype() == x.dtype() && rows.numel() >= out.dim(0));
  const int64_t n = out.dim(0);
  if (n == 0) return;
  const size_t row_bytes = static_cast<size_t>(x.dim(1)) * DTypeSize(x.dtype());
  const bool vec = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out.raw_data()) % 16 == 0;
  if (vec) {
    GatherRowsKernel<uint4><<<static_cast<unsigned>(n), 128, 0, stream>>>(
        static_cast<const uint4*>(x.raw_data()), Ptr<int32_t>(rows), static_cast<int64_t>(row_bytes / 16),
        static_cast<uint4*>(out.raw_data()));
  } else {
    DispatchFloat(x.dtype(), [&](auto* type) {
      using T = std::remove_pointer_t<decltype(type)>;
      GatherRowsKernel<T><<<static_cast<unsigned>(n), 128, 0, stream>>>(Ptr<T>(x), Ptr<int32_t>(rows), x.dim(1),
                                                                        MutablePtr<T>(out));
    });
  }
  LATTICE_CUDA_LAUNCH_CHECK();
}

void MoeCombineDispatched(const Tensor& back, const Tensor& pair_row, const Tensor& topk_ids,
                          const Tensor& topk_weights, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(back.device() == Device::kCuda && out.device() == Device::kCuda);
  CheckDeviceTensor(pair_row, DType::kI32, "pair_row");
  CheckDeviceTensor(topk_ids, DType::kI32, "topk_ids");
  CheckDeviceTensor(topk_weights, DType::kF32, "topk_weights");
  LATTICE_CHECK(out.ndim() == 2 && back.ndim() == 2 && back.dim(1) == out.dim(1) && back.dtype() == out.dtype());
  LATTICE_CHECK(topk_ids.ndim() == 2 && topk_ids.dim(0) == out.dim(0) && topk_weights.shape() == topk_ids.shape() &&
                pair_row.numel() == topk_ids.numel());
  LATTICE_CHECK_MSG(topk_ids.dim(1) <= kMaxCombineTopK, "top_k %lld (at most %d)",
                    static_cast<long long>(topk_ids.dim(1)), kMaxCombineTopK);
  if (out.numel() == 0) return;
  DispatchFloat(out.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    CombineDispatchedKernel<T><<<static_cast<unsigned>(out.dim(0)), 256, 0, stream>>>(
        Ptr<T>(back), Ptr<int32_t>(pair_row), Ptr<int32_t>(topk_ids), Ptr<float>(topk_weights),
        static_cast<int>(topk_ids.dim(1)), out.dim(1), MutablePtr<T>(out));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda
