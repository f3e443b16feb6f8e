// The CUDA ops, checked op by op against the CPU reference (kernels/cpu/ops.h) with
// the same contracts. Tensors live on the device; activations are bf16, f16 or f32
// (all of one op's float tensors share a dtype), math is in f32. Every launch is on
// `stream` and checked; nothing allocates. (The rest of the ops arrive with the GPU
// backend issue.)
#pragma once

#include <cuda_runtime.h>

#include "kernels/tensor.h"

namespace lattice::cuda {

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight. out may alias x.
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out, cudaStream_t stream = nullptr);

// residual += x (rounded to the dtype); x = RmsNorm(residual).
void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, cudaStream_t stream = nullptr);

// out[t, i] = silu(x[t, i]) * x[t, I + i]. x [T, 2I], out [T, I].
void SiluAndMul(const Tensor& x, Tensor& out, cudaStream_t stream = nullptr);

// out[t, :] = table[ids[t], :]. ids: device i32 [T]; ids must be in range (checked upstream).
void Embedding(const Tensor& ids, const Tensor& table, Tensor& out, cudaStream_t stream = nullptr);

}  // namespace lattice::cuda
