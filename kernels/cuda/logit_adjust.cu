// The sequence-dependent logit adjustments (repetition, frequency and presence
// penalties, min_tokens masking, logit_bias) on the device, with the exact float
// operations of cpu::ApplyLogitAdjustments: every step is an explicitly rounded
// intrinsic, so nvcc cannot contract a multiply and a subtract into one FMA.
#include "kernels/cuda/ops.h"

#include <cstring>

#include "kernels/cuda/common.cuh"

namespace lattice::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    ApplyLogitAdjustmentsKernel(float* logits, int64_t vocab, const int32_t* entries, int32_t num_entries,
                                const float* penalties) {
  for (int32_t i = blockIdx.x * kThreads + threadIdx.x; i < num_entries; i += gridDim.x * kThreads) {
    const int32_t* e = entries + static_cast<int64_t>(i) * kLogitAdjustmentWords;
    const int32_t token = e[0], output_count = e[1];
    const uint32_t flags = static_cast<uint32_t>(e[2]);
    const int64_t row = flags >> 2;
    const bool in_prompt = (flags & 1u) != 0, masked = (flags & 2u) != 0;
    float* logit = logits + row * vocab + token;
    float l = *logit;
    l = masked ? -INFINITY : __fadd_rn(l, __int_as_float(e[3]));
    if (in_prompt || output_count > 0) {
      const float repetition = penalties[3 * row];
      l = l > 0.0f ? __fdiv_rn(l, repetition) : __fmul_rn(l, repetition);
    }
    if (output_count > 0) {
      l = __fsub_rn(l, __fmul_rn(penalties[3 * row + 2], __int2float_rn(output_count)));
      l = __fsub_rn(l, penalties[3 * row + 1]);
    }
    *logit = l;
  }
}

}  // namespace

void PackLogitAdjustments(std::span<const cpu::LogitAdjustment> entries, int32_t row, int32_t* out) {
  LATTICE_CHECK(row >= 0 && row < (1 << 29));
  for (const cpu::LogitAdjustment& e : entries) {
    out[0] = e.token;
    out[1] = e.output_count;
    out[2] = static_cast<int32_t>((static_cast<uint32_t>(row) << 2) | (e.masked ? 2u : 0u) | (e.in_prompt ? 1u : 0u));
    std::memcpy(&out[3], &e.bias, 4);
    out += kLogitAdjustmentWords;
  }
}

void ApplyLogitAdjustments(Tensor& logits, const Tensor& entries, const Tensor& penalties, cudaStream_t stream) {
  CheckDeviceTensor(logits, DType::kF32, "logits");
  CheckDeviceTensor(entries, DType::kI32, "entries");
  CheckDeviceTensor(penalties, DType::kF32, "penalties");
  LATTICE_CHECK(logits.ndim() == 2 && entries.ndim() == 2 && entries.dim(1) == kLogitAdjustmentWords);
  LATTICE_CHECK(penalties.numel() == 3 * logits.dim(0) && entries.dim(0) <= 0x7fffffff);
  const int32_t n = static_cast<int32_t>(entries.dim(0));
  if (n == 0) return;
  LaunchKernel(LaunchMode::kSerial, ApplyLogitAdjustmentsKernel, dim3(GridFor(n, kThreads)), dim3(kThreads), 0, stream,
               MutablePtr<float>(logits), logits.dim(1), Ptr<int32_t>(entries), n, Ptr<float>(penalties));
}

}  // namespace lattice::cuda
