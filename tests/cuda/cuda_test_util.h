// What the CUDA op tests share: random host inputs, their rounding to a dtype, copies
// to and from the device, NaN-poisoned outputs and device i32 tensors.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/tensor.h"

namespace lattice::testing {

inline constexpr DType kFloatDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

// Host f32, normal(0, scale), reproducible from `seed`.
inline Tensor Random(Shape shape, int seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor t = Tensor::Empty(DType::kF32, std::move(shape));
  for (float& v : t.span<float>()) v = dist(rng);
  return t;
}

// `host` rounded to `dtype` and back: what the GPU op sees as input.
inline Tensor Rounded(const Tensor& host, DType dtype) { return host.To(dtype).To(DType::kF32); }
inline Tensor OnDevice(const Tensor& host, DType dtype) { return cuda::ToDevice(host.To(dtype)); }
inline Tensor NanHost(Shape shape) {
  Tensor nan = Tensor::Empty(DType::kF32, std::move(shape));
  for (float& v : nan.span<float>()) v = std::nanf("");
  return nan;
}
// A device tensor of NaNs: an element the op does not write fails the comparison.
inline Tensor Poisoned(DType dtype, Shape shape) { return OnDevice(NanHost(std::move(shape)), dtype); }
inline Tensor Back(const Tensor& device) { return cuda::ToHost(device).To(DType::kF32); }
inline Tensor IdsOnDevice(const std::vector<int32_t>& ids, Shape shape) {
  Tensor host = Tensor::Empty(DType::kI32, std::move(shape));
  LATTICE_CHECK(static_cast<size_t>(host.numel()) == ids.size());
  std::copy(ids.begin(), ids.end(), host.data<int32_t>());
  return cuda::ToDevice(host);
}

}  // namespace lattice::testing
