// CUDA device memory and dtype conversion (see device.h).
#include "kernels/cuda/device.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

template <typename T>
__device__ float LoadFloat(const T* p, int64_t i);
template <>
__device__ float LoadFloat<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ float LoadFloat<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
template <>
__device__ float LoadFloat<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }

template <typename T>
__device__ void StoreFloat(T* p, int64_t i, float v);
template <>
__device__ void StoreFloat<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
__device__ void StoreFloat<__nv_bfloat16>(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
template <>
__device__ void StoreFloat<__half>(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <typename In, typename Out>
__global__ void ConvertKernel(const In* in, Out* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    StoreFloat(out, i, LoadFloat(in, i));
  }
}

template <typename In>
void LaunchConvert(const In* in, const Tensor& out, int64_t n) {
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  if (n == 0) return;
  switch (out.dtype()) {
    case DType::kF32:
      ConvertKernel<<<blocks, threads>>>(in, static_cast<float*>(out.raw_data()), n);
      break;
    case DType::kBF16:
      ConvertKernel<<<blocks, threads>>>(in, static_cast<__nv_bfloat16*>(out.raw_data()), n);
      break;
    case DType::kF16:
      ConvertKernel<<<blocks, threads>>>(in, static_cast<__half*>(out.raw_data()), n);
      break;
    default:
      LATTICE_CHECK_MSG(false, "Convert: not a float dtype");
  }
  LATTICE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

std::shared_ptr<Buffer> AllocateDevice(size_t bytes) {
  void* data = nullptr;
  LATTICE_CUDA_CHECK(cudaMalloc(&data, bytes == 0 ? 1 : bytes));
  return std::make_shared<Buffer>(data, bytes, Device::kCuda, [](void* p) { cudaFree(p); });
}

Tensor EmptyDevice(DType dtype, Shape shape) {
  const size_t bytes = static_cast<size_t>(ShapeNumel(shape)) * DTypeSize(dtype);
  return Tensor::FromBuffer(AllocateDevice(bytes), 0, dtype, std::move(shape));
}

Tensor ToDevice(const Tensor& host) {
  LATTICE_CHECK(host.device() == Device::kCpu);
  Tensor out = EmptyDevice(host.dtype(), host.shape());
  LATTICE_CUDA_CHECK(cudaMemcpy(out.raw_data(), host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice));
  return out;
}

Tensor ToHost(const Tensor& device) {
  LATTICE_CHECK(device.device() == Device::kCuda);
  Tensor out = Tensor::Empty(device.dtype(), device.shape());
  LATTICE_CUDA_CHECK(cudaMemcpy(out.raw_data(), device.raw_data(), device.nbytes(), cudaMemcpyDeviceToHost));
  return out;
}

void Convert(const Tensor& in, Tensor& out) {
  LATTICE_CHECK(in.device() == Device::kCuda && out.device() == Device::kCuda);
  LATTICE_CHECK(in.numel() == out.numel());
  switch (in.dtype()) {
    case DType::kF32:
      LaunchConvert(static_cast<const float*>(in.raw_data()), out, in.numel());
      break;
    case DType::kBF16:
      LaunchConvert(static_cast<const __nv_bfloat16*>(in.raw_data()), out, in.numel());
      break;
    case DType::kF16:
      LaunchConvert(static_cast<const __half*>(in.raw_data()), out, in.numel());
      break;
    default:
      LATTICE_CHECK_MSG(false, "Convert: not a float dtype");
  }
}

}  // namespace lattice::cuda
