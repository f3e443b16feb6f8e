// Model plumbing on the GPU (see ops.h): the vocabulary-parallel embedding share,
// assembling gathered logit shards, and deterministic random fills for dummy weights.
// The two that run in every step launch programmatically (common.cuh).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace lattice::cuda {
namespace {

template <typename T>
__global__ void VocabShardEmbeddingKernel(const int32_t* __restrict__ ids, const T* __restrict__ table,
                                          int64_t first_row, int64_t rows, int64_t tokens, int64_t hidden,
                                          T* __restrict__ out) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = static_cast<int64_t>(ids[i / hidden]) - first_row;
    out[i] = (row >= 0 && row < rows) ? table[row * hidden + i % hidden] : FromFloat<T>(0.0f);
  }
}

template <typename T>
__global__ void AssembleLogitsKernel(const T* __restrict__ shards, int64_t rows, int64_t shard_width,
                                     int64_t vocab, float* __restrict__ out) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t n = rows * vocab;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / vocab, v = i % vocab;
    const int64_t rank = v / shard_width, column = v % shard_width;
    out[i] = ToFloat(shards[(rank * rows + r) * shard_width + column]);
  }
}

__global__ void OffsetIdsKernel(int32_t* ids, int64_t n, int32_t offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    ids[i] += offset;
  }
}

__device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void FillUniformKernel(T* __restrict__ out, int64_t n, uint64_t seed, float low, float high) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t bits = Mix64(seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i));
    const float unit = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // 24 bits in [0, 1)
    out[i] = FromFloat<T>(low + (high - low) * unit);
  }
}

}  // namespace

void VocabShardEmbedding(const Tensor& ids, const Tensor& table, int64_t first_row, Tensor& out,
                         cudaStream_t stream) {
  LATTICE_CHECK(ids.device() == Device::kCuda && table.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(ids.dtype() == DType::kI32 && table.dtype() == out.dtype() && table.ndim() == 2);
  LATTICE_CHECK(out.ndim() == 2 && out.dim(0) == ids.numel() && out.dim(1) == table.dim(1));
  if (out.numel() == 0) return;
  DispatchFloat(table.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchKernel(LaunchMode::kProgrammatic, VocabShardEmbeddingKernel<T>, GridFor(out.numel(), 256), 256, 0, stream,
                 Ptr<int32_t>(ids), Ptr<T>(table), first_row, table.dim(0), out.dim(0), out.dim(1),
                 MutablePtr<T>(out));
  });
}

void AssembleLogits(const Tensor& shards, int tp, int64_t vocab, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(shards.device() == Device::kCuda && out.device() == Device::kCuda && out.dtype() == DType::kF32);
  LATTICE_CHECK(shards.ndim() == 2 && shards.dim(0) % tp == 0 && out.ndim() == 2 && out.dim(1) == vocab);
  const int64_t rows = shards.dim(0) / tp, width = shards.dim(1);
  LATTICE_CHECK(out.dim(0) == rows && width * tp >= vocab);
  if (out.numel() == 0) return;
  DispatchFloat(shards.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchKernel(LaunchMode::kProgrammatic, AssembleLogitsKernel<T>, GridFor(out.numel(), 256), 256, 0, stream,
                 Ptr<T>(shards), rows, width, vocab, MutablePtr<float>(out));
  });
}

void OffsetIds(Tensor& ids, int32_t offset, cudaStream_t stream) {
  LATTICE_CHECK(ids.device() == Device::kCuda && ids.dtype() == DType::kI32);
  if (ids.numel() == 0) return;
  OffsetIdsKernel<<<GridFor(ids.numel(), 256), 256, 0, stream>>>(MutablePtr<int32_t>(ids), ids.numel(), offset);
  LATTICE_CUDA_LAUNCH_CHECK();
}

void FillUniform(Tensor& t, uint64_t seed, float low, float high, cudaStream_t stream) {
  LATTICE_CHECK(t.device() == Device::kCuda);
  if (t.numel() == 0) return;
  DispatchFloat(t.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    FillUniformKernel<T><<<GridFor(t.numel(), 256), 256, 0, stream>>>(MutablePtr<T>(t), t.numel(), seed, low, high);
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda
