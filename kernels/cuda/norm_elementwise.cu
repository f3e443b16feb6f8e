// RMSNorm, fused residual add + RMSNorm, SiLU-and-mul and embedding on the GPU (see ops.h).
// One block per row for the norms (a block-wide f32 sum of squares), grid-stride
// loops for the elementwise ops.
#include "kernels/cuda/ops.h"

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

constexpr int kNormThreads = 256;

// With `residual`: residual = x + residual first, and the norm is of the sum.
template <typename T, bool kAddResidual>
__global__ void RmsNormKernel(const T* x, T* residual, const T* __restrict__ weight,
                              float eps, int64_t hidden, T* out) {  // out may alias x
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

template <typename T>
__global__ void SiluAndMulKernel(const T* __restrict__ x, int64_t rows, int64_t width, T* __restrict__ out) {
  const int64_t n = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const float gate = ToFloat(x[r * 2 * width + c]);
    const float up = ToFloat(x[r * 2 * width + width + c]);
    out[i] = FromFloat<T>(gate / (1.0f + __expf(-gate)) * up);
  }
}

template <typename T>
__global__ void EmbeddingKernel(const int32_t* __restrict__ ids, const T* __restrict__ table, int64_t tokens,
                                int64_t hidden, T* __restrict__ out) {
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
    RmsNormKernel<T, false><<<static_cast<unsigned>(x.dim(0)), kNormThreads, 0, stream>>>(
        static_cast<const T*>(x.raw_data()), nullptr, static_cast<const T*>(weight.raw_data()), eps, x.dim(1),
        static_cast<T*>(out.raw_data()));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, cudaStream_t stream) {
  CheckRows(x, residual);
  LATTICE_CHECK(weight.dtype() == x.dtype() && weight.numel() == x.dim(1));
  if (x.dim(0) == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    RmsNormKernel<T, true><<<static_cast<unsigned>(x.dim(0)), kNormThreads, 0, stream>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(residual.raw_data()),
        static_cast<const T*>(weight.raw_data()), eps, x.dim(1), static_cast<T*>(x.raw_data()));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

void SiluAndMul(const Tensor& x, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(x.device() == Device::kCuda && out.device() == Device::kCuda && x.dtype() == out.dtype());
  LATTICE_CHECK(x.ndim() == 2 && out.ndim() == 2 && x.dim(0) == out.dim(0) && x.dim(1) == 2 * out.dim(1));
  if (out.numel() == 0) return;
  DispatchFloat(x.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    SiluAndMulKernel<T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(
        static_cast<const T*>(x.raw_data()), out.dim(0), out.dim(1), static_cast<T*>(out.raw_data()));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

void Embedding(const Tensor& ids, const Tensor& table, Tensor& out, cudaStream_t stream) {
  LATTICE_CHECK(ids.device() == Device::kCuda && table.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(ids.dtype() == DType::kI32 && table.dtype() == out.dtype() && table.ndim() == 2);
  LATTICE_CHECK(out.ndim() == 2 && out.dim(0) == ids.numel() && out.dim(1) == table.dim(1));
  if (out.numel() == 0) return;
  DispatchFloat(table.dtype(), [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    EmbeddingKernel<T><<<GridFor(out.numel(), 256), 256, 0, stream>>>(
        static_cast<const int32_t*>(ids.raw_data()), static_cast<const T*>(table.raw_data()), out.dim(0),
        out.dim(1), static_cast<T*>(out.raw_data()));
  });
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda
