// The skinny-GEMM path of Gemm::Linear (decode steps of at most kMaxSkinnyRows rows).
#pragma once

#include <cuda_runtime.h>

#include "kernels/tensor.h"

namespace lattice::cuda {

inline constexpr int64_t kMaxSkinnyRows = 8;

// out = x @ w^T (+ bias) when x has 1..kMaxSkinnyRows rows, bf16/f16 with K % 8 == 0 and
// 16-byte aligned x and w; out in the inputs' dtype or f32. False (nothing launched)
// otherwise.
bool SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream);

}  // namespace lattice::cuda
