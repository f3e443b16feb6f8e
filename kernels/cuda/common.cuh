// What every CUDA source of kernels/cuda shares: error checks, f32 <-> storage type
// conversion, dtype dispatch, grid sizing and a block-wide sum. Device code only
// includes this from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "base/check.h"
#include "kernels/tensor.h"

// Aborts with file:line on a failed CUDA runtime call (hot-path invariant, not input).
#define LATTICE_CUDA_CHECK(expr)                                                                 \
  do {                                                                                           \
    const cudaError_t err_ = (expr);                                                             \
    LATTICE_CHECK_MSG(err_ == cudaSuccess, "CUDA error %s: %s", #expr, cudaGetErrorString(err_)); \
  } while (0)

#define LATTICE_CUDA_LAUNCH_CHECK() LATTICE_CUDA_CHECK(cudaGetLastError())

namespace lattice::cuda {

template <typename T>
__device__ __forceinline__ float ToFloat(T v);
template <>
__device__ __forceinline__ float ToFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float ToFloat<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }

// Calls fn with a null pointer of the float dtype's element type (float, __nv_bfloat16, __half).
template <typename Fn>
void DispatchFloat(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32:
      fn(static_cast<float*>(nullptr));
      return;
    case DType::kBF16:
      fn(static_cast<__nv_bfloat16*>(nullptr));
      return;
    case DType::kF16:
      fn(static_cast<__half*>(nullptr));
      return;
    case DType::kI32:
      break;
  }
  LATTICE_CHECK_MSG(false, "not a float dtype");
}

// Blocks for a grid-stride loop over n elements.
inline int GridFor(int64_t n, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 65535)));
}

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}
__device__ __forceinline__ float WarpMax(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Sum over a block of kThreads (a multiple of 32); every thread gets the result.
template <int kThreads>
__device__ __forceinline__ float BlockSum(float value) {
  __shared__ float partial[kThreads / 32];
  value = WarpSum(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  __syncthreads();
  return total;
}

template <typename T>
const T* Ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw_data());
}
template <typename T>
T* MutablePtr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

}  // namespace lattice::cuda
