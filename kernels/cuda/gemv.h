// The skinny-GEMM path of Gemm::Linear (decode steps of at most kMaxSkinnyRows rows).
#pragma once

#include <cuda_runtime.h>

#include "kernels/tensor.h"

namespace lattice::cuda {

inline constexpr int64_t kMaxSkinnyRows = 8;

// What the kernel multiplies w by. kSiluAndMul (M = 1 only): x is [1, 2K] (gate | up)
// and the input is silu(gate) * up rounded to the dtype, what SiluAndMul writes (ops.h).
enum class SkinnyInput { kPlain, kSiluAndMul };

// True when SkinnyGemm takes these: x with 1..kMaxSkinnyRows rows, bf16/f16 with
// K % 8 == 0, 16-byte aligned x and w, out in the inputs' dtype or f32.
bool SkinnyGemmApplies(const Tensor& x, const Tensor& w, const Tensor& out,
                       SkinnyInput input = SkinnyInput::kPlain);
// out = input(x) @ w^T (+ bias); SkinnyGemmApplies must hold. Launched
// programmatically: w is read before the previous kernel on `stream` has finished, so
// that kernel must not write it.
void SkinnyGemm(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& out, cudaStream_t stream,
                SkinnyInput input = SkinnyInput::kPlain);

}  // namespace lattice::cuda
