// The skinny-GEMM path of Gemm::Linear (decode steps of at most kMaxSkinnyRows rows).
#pragma once

#include <cuda_runtime.h>

#include "kernels/tensor.h"

namespace lattice::cuda {

inline constexpr int64_t kMaxSkinnyRows = 8;

// True when SkinnyGemm takes these: x with 1..kMaxSkinnyRows rows, bf16/f16 with
// K % 8 == 0, 16-byte aligned x and w, out in the inputs' dtype or f32.
bool SkinnyGemmApplies(const Tensor& x, const Tensor& w, const Tensor& out);
// out = x @ w^T (+ bias); SkinnyGemmApplies must hold.
void SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream);

}  // namespace lattice::cuda
