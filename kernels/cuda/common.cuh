// What every CUDA source of kernels/cuda shares: error checks, f32 <-> storage type
// conversion, dtype dispatch, grid sizing, a block-wide sum and programmatic dependent
// launch. Device code only includes this from .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include "base/check.h"
#include "kernels/cuda/check.h"
#include "kernels/tensor.h"


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

// Two floats as a bf16/f16 pair in one register, `lo` in the low half (the first column).
template <typename T>
__device__ __forceinline__ uint32_t PackPair(float lo, float hi) {
  uint32_t bits;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&bits, &v, 4);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&bits, &v, 4);
  }
  return bits;
}

// silu(gate) * up in f32, the one formula of SiluAndMul and the GEMM that fuses it (so
// both round the same value). __fdividef: a reciprocal and a multiply instead of
// IEEE division, within 2 ulp; for gate < -87 (divisor past 2^126) it gives 0 where
// the exact value is below 1e-36.
__device__ __forceinline__ float SiluMul(float gate, float up) {
  return __fdividef(gate, 1.0f + __expf(-gate)) * up;
}

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

// Sum over a block of any multiple of 32 threads up to 1024; every thread gets it.
__device__ __forceinline__ float BlockSumDynamic(float value) {
  __shared__ float partial[32];
  value = WarpSum(value);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += partial[w];
  __syncthreads();
  return total;
}

// Programmatic dependent launch (Hopper and later). A kernel launched with
// LaunchKernel(..., kProgrammatic, ...) may start while the previous kernel on the
// stream still runs (once that one's blocks have all called LaunchDependentGrids()
// or exited): the decode chain of small kernels then overlaps each one's launch and
// prologue with the previous one's tail. Such a kernel must call WaitForPriorGrids()
// in every thread before it reads anything an earlier kernel wrote or writes
// anything an earlier kernel reads; before that it may only read constants (weights).
// Both are no-ops in a kernel launched without the attribute and before sm_90.
__device__ __forceinline__ void WaitForPriorGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void LaunchDependentGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Per-device caches hold this many entries.
constexpr int kMaxDevices = 64;

// The current device's index, checked to fit a per-device cache.
inline int CurrentDevice() {
  int device = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&device));
  LATTICE_CHECK(device < kMaxDevices);
  return device;
}

// An attribute of the current device, read once per device.
template <cudaDeviceAttr kAttribute>
inline int CurrentDeviceAttribute() {
  static std::atomic<int> cached[kMaxDevices] = {};  // value + 1; 0: not read yet
  const int device = CurrentDevice();
  int value = cached[device].load(std::memory_order_relaxed) - 1;
  if (value < 0) {
    LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttribute, device));
    cached[device].store(value + 1, std::memory_order_relaxed);
  }
  return value;
}

inline int MultiprocessorCount() { return CurrentDeviceAttribute<cudaDevAttrMultiProcessorCount>(); }

// True when kernels on the current device may be launched programmatically: compute
// capability 9.0 or later, unless LATTICE_CUDA_PDL=0 (a switch for A/B timings).
inline bool ProgrammaticLaunchEnabled() {
  static const bool off = [] {
    const char* env = std::getenv("LATTICE_CUDA_PDL");
    return env != nullptr && std::strcmp(env, "0") == 0;
  }();
  return !off && CurrentDeviceAttribute<cudaDevAttrComputeCapabilityMajor>() >= 9;
}

enum class LaunchMode { kSerial, kProgrammatic };

// kernel<<<grid, block, smem, stream>>>(args...), checked; with kProgrammatic (and
// ProgrammaticLaunchEnabled()) it may overlap the previous kernel on the stream (see
// WaitForPriorGrids). Stream capture records that as a programmatic graph edge. With
// cluster_x > 1, consecutive blocks along x form thread-block clusters of that size.
template <typename... Params, typename... Args>
void LaunchKernelInClusters(LaunchMode mode, unsigned cluster_x, void (*kernel)(Params...), dim3 grid, dim3 block,
                            size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (mode == LaunchMode::kProgrammatic && ProgrammaticLaunchEnabled()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  if (cluster_x > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = cluster_x;
    attributes[count].val.clusterDim.y = 1;
    attributes[count].val.clusterDim.z = 1;
    ++count;
  }
  config.attrs = count > 0 ? attributes : nullptr;
  config.numAttrs = count;
  LATTICE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void LaunchKernel(LaunchMode mode, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                  Args&&... args) {
  LaunchKernelInClusters(mode, 1, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

template <typename T>
const T* Ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw_data());
}
template <typename T>
T* MutablePtr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

// Aborts unless `t` is a defined device tensor of `dtype`, naming it.
inline void CheckDeviceTensor(const Tensor& t, DType dtype, const char* name) {
  LATTICE_CHECK_MSG(t.defined() && t.device() == Device::kCuda, "%s must be a device tensor", name);
  LATTICE_CHECK_MSG(t.dtype() == dtype, "%s has dtype %s", name, std::string(DTypeName(t.dtype())).c_str());
}

}  // namespace lattice::cuda
