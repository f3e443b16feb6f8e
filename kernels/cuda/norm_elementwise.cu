// RMSNorm, fused residual add + RMSNorm, SiLU-and-mul and embedding on the GPU (see ops.h).
// One block per row for the norms (a block-wide f32 sum of squares): rows of 16-byte
// vectors (hidden % 8 == 0 in 16 bits) sit in registers, one vector or a few per
// thread, so a row is read once with every load in flight at the same time (a decode
// step's single row is latency-bound: a loop of dependent loads cost ~10 us); other
// rows take a strided loop. Grid-stride loops for the elementwise ops. All of them
// launch programmatically (common.cuh): the norm reads its weight before waiting.
#include "kernels/cuda/ops.h"

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

constexpr int kNormThreads = 256;

constexpr int kMaxNormVecs = 4;       // 16-byte vectors per thread, register-resident rows
constexpr int kMaxNormThreads = 512;  // so rows up to 16384 bf16 / 8192 f32 values

// With `residual`: residual = x + residual first, and the norm is of the sum.
template <typename T, bool kAddResidual>
__global__ void RmsNormKernel(const T* x, T* residual, const T* __restrict__ weight,
                              float eps, int64_t hidden, T* out) {  // out may alias x
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t row = blockIdx.x;
  const T* in = x + row * hidden;
  T* res = kAddResidual ? residual + row * hidden : nullptr;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = ToFloat(in[i]);
    if constexpr (kAddResidual) {
      const T stored = FromFloat<T>(v + ToFloat(res[i]));
      res[i] = stored;
      v = ToFloat(stored);
    }
    sum += v * v;
  }
  const float inv_rms = rsqrtf(BlockSum<kNormThreads>(sum) / static_cast<float>(hidden) + eps);
  T* o = out + row * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = kAddResidual ? ToFloat(res[i]) : ToFloat(in[i]);
    o[i] = FromFloat<T>(v * inv_rms * ToFloat(weight[i]));
  }
}

// The same for rows of hidden / (16 / sizeof(T)) vectors, at most kVecs * blockDim.x:
// thread t holds vectors t, t + blockDim.x, ... Each element is read and written by
// one thread, so out may alias x.
template <typename T, bool kAddResidual, int kVecs>
__global__ void __launch_bounds__(kMaxNormThreads)
    RmsNormVecKernel(const T* x, T* residual, const T* __restrict__ weight, float eps, int64_t hidden, T* out) {
  constexpr int kPer = 16 / sizeof(T);
  const int64_t nvec = hidden / kPer;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * nvec;
  uint4 wv[kVecs];
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(v) * blockDim.x;
    if (i < nvec) wv[v] = __ldg(reinterpret_cast<const uint4*>(weight) + i);
  }
  WaitForPriorGrids();
  LaunchDependentGrids();
  uint4 xv[kVecs], rv[kVecs];
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(v) * blockDim.x;
    if (i < nvec) {
      xv[v] = reinterpret_cast<const uint4*>(x)[base + i];
      if constexpr (kAddResidual) rv[v] = reinterpret_cast<const uint4*>(residual)[base + i];
    }
  }
  float vals[kVecs][kPer];
  float sum = 0.0f;
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(v) * blockDim.x;
    if (i >= nvec) continue;
    T* xe = reinterpret_cast<T*>(&xv[v]);
    if constexpr (kAddResidual) {
      T* re = reinterpret_cast<T*>(&rv[v]);
#pragma unroll
      for (int j = 0; j < kPer; ++j) re[j] = FromFloat<T>(ToFloat(xe[j]) + ToFloat(re[j]));
      reinterpret_cast<uint4*>(residual)[base + i] = rv[v];
    }
    const T* in = kAddResidual ? reinterpret_cast<const T*>(&rv[v]) : xe;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      vals[v][j] = ToFloat(in[j]);
      sum += vals[v][j] * vals[v][j];
    }
  }
  const float inv_rms = rsqrtf(BlockSumDynamic(sum) / static_cast<float>(hidden) + eps);
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    const int64_t i = threadIdx.x + static_cast<int64_t>(v) * blockDim.x;
    if (i >= nvec) continue;
    const T* we = reinterpret_cast<const T*>(&wv[v]);
    uint4 ov;
    T* oe = reinterpret_cast<T*>(&ov);
#pragma unroll
    for (int j = 0; j < kPer; ++j) oe[j] = FromFloat<T>(vals[v][j] * inv_rms * ToFloat(we[j]));
    reinterpret_cast<uint4*>(out)[base + i] = ov;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// One block per row; the register-resident kernel where the rows are whole 16-byte
// vectors and fit kMaxNormVecs per thread.
template <typename T, bool kAddResidual>
void LaunchRmsNorm(const T* x, T* residual, const T* weight, float eps, int64_t rows, int64_t hidden, T* out,
                   cudaStream_t stream) {
  constexpr int kPer = 16 / sizeof(T);
  const int64_t nvec = hidden / kPer;
  const bool vectors = hidden % kPer == 0 && nvec <= int64_t{kMaxNormVecs} * kMaxNormThreads && Aligned16(x) &&
                       Aligned16(out) && Aligned16(weight) && (!kAddResidual || Aligned16(residual));
  const unsigned grid = static_cast<unsigned>(rows);
  if (!vectors) {
    LaunchKernel(LaunchMode::kProgrammatic, RmsNormKernel<T, kAddResidual>, grid, kNormThreads, 0, stream, x, residual,
                 weight, eps, hidden, out);
    return;
  }
  // The fewest vectors per thread that fit a block.
  int vecs = 1;
  while (vecs < kMaxNormVecs && nvec > int64_t{kMaxNormThreads} * vecs) vecs *= 2;
  const int64_t per_block = (nvec + vecs - 1) / vecs;
  const unsigned threads = static_cast<unsigned>(std::max<int64_t>(32, (per_block + 31) / 32 * 32));
  auto launch = [&](auto kernel) {
    LaunchKernel(LaunchMode::kProgrammatic, kernel, grid, threads, 0, stream, x, residual, weight, eps, hidden, out);
  };
  switch (vecs) {
    case 1: return launch(RmsNormVecKernel<T, kAddResidual, 1>);
    case 2: return launch(RmsNormVecKernel<T, kAddResidual, 2>);
    default: return launch(RmsNormVecKernel<T, kAddResidual, 4>);
  }
}

template <typename T>
__global__ void SiluAndMulKernel(const T* __restrict__ x, int64_t rows, int64_t width, T* __restrict__ out) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t n = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const float gate = ToFloat(x[r * 2 * width + c]);
    const float up = ToFloat(x[r * 2 * width + width + c]);
    out[i] = FromFloat<T>(SiluMul(gate, up));
  }
}

template <typename T>
__global__ void EmbeddingKernel(const int32_t* __restrict__ ids, const T* __restrict__ table, int64_t tokens,
                                int64_t hidden, T* __restrict__ out) {
  WaitForPriorGrids();
  LaunchDependentGrids();
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = table[static_cast<int64_t>(ids[i / hidden]) * hidden + i % hidden];
  }
}

void CheckRows(const Tensor& x, const Tensor& out) {
  LATTICE_CHECK(x.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(x.ndim() == 2 && out.shape() == x.shape() && out.dtype() == x.dtype());
}

}  // namespace

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out, cudaStream_t stream) {
  CheckRows(x, out);
  LATTICE_CHECK(weight.dtype() == x.dtype() && weight.numel() == x.dim(1));
  if (x.dim(0) == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchRmsNorm<T, false>(Ptr<T>(x), nullptr, Ptr<T>(weight), eps, x.dim(0), x.dim(1), MutablePtr<T>(out), stream);
  });
}

void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, cudaStream_t stream) {
  CheckRows(x, residual);
  LATTICE_CHECK(weight.dtype() == x.dtype() && weight.numel() == x.dim(1));
  if (x.dim(0) == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchRmsNorm<T, true>(Ptr<T>(x), MutablePtr<T>(residual), Ptr<T>(weight), eps, x.dim(0), x.dim(1),
                           MutablePtr<T>(x), stream);
  });
}

void SiluAndMul(const Tensor& x, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(x.device() == Device::kCuda && out.device() == Device::kCuda && x.dtype() == out.dtype());
  LATTICE_CHECK(x.ndim() == 2 && out.ndim() == 2 && x.dim(0) == out.dim(0) && x.dim(1) == 2 * out.dim(1));
  if (out.numel() == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchKernel(LaunchMode::kProgrammatic, SiluAndMulKernel<T>, GridFor(out.numel(), 256), 256, 0, stream, Ptr<T>(x),
                 out.dim(0), out.dim(1), MutablePtr<T>(out));
  });
}

void Embedding(const Tensor& ids, const Tensor& table, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(ids.device() == Device::kCuda && table.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(ids.dtype() == DType::kI32 && table.dtype() == out.dtype() && table.ndim() == 2);
  LATTICE_CHECK(out.ndim() == 2 && out.dim(0) == ids.numel() && out.dim(1) == table.dim(1));
  if (out.numel() == 0) return;
  DispatchFloat(table.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    LaunchKernel(LaunchMode::kProgrammatic, EmbeddingKernel<T>, GridFor(out.numel(), 256), 256, 0, stream,
                 Ptr<int32_t>(ids), Ptr<T>(table), out.dim(0), out.dim(1), MutablePtr<T>(out));
  });
}

}  // namespace lattice::cuda
