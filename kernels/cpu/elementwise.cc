// Row gathers and elementwise ops of the CPU reference backend: embedding lookup,
// the SwiGLU activation, residual adds and the sigmoid-gated add of Qwen-MoE.
#include <cmath>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace lattice::cpu {
namespace {

// Matches PyTorch's f32 silu, x / (1 + exp(-x)); for very negative x exp overflows to
// inf and the result is a correctly signed zero rather than NaN.
float Silu(float x) { return x / (1.0f + std::exp(-x)); }

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

void Embedding(std::span<const int32_t> ids, const Tensor& table, Tensor& out) {
  LATTICE_CHECK(table.ndim() == 2 && out.ndim() == 2);
  const int64_t vocab = table.dim(0);
  const int64_t hidden = table.dim(1);
  const int64_t num_tokens = static_cast<int64_t>(ids.size());
  LATTICE_CHECK(out.dim(0) == num_tokens && out.dim(1) == hidden);
  const float* src = table.data<float>();
  float* dst = out.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t id = ids[t];
    LATTICE_CHECK_MSG(0 <= id && id < vocab, "token id %lld outside [0, %lld)",
                      static_cast<long long>(id), static_cast<long long>(vocab));
    std::memcpy(dst + t * hidden, src + id * hidden, sizeof(float) * hidden);
  }
}

void SiluAndMul(const Tensor& x, Tensor& out) {
  LATTICE_CHECK(x.ndim() == 2 && out.ndim() == 2);
  const int64_t num_tokens = x.dim(0);
  const int64_t inter = out.dim(1);
  LATTICE_CHECK(out.dim(0) == num_tokens && x.dim(1) == 2 * inter);
  const float* in = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* gate = in + t * 2 * inter;
    const float* up = gate + inter;
    float* row = dst + t * inter;
    for (int64_t i = 0; i < inter; ++i) row[i] = Silu(gate[i]) * up[i];
  }
}

void AddSigmoidGated(const Tensor& gate_logit, const Tensor& y, Tensor& out) {
  LATTICE_CHECK(y.ndim() == 2 && out.shape() == y.shape());
  const int64_t num_tokens = y.dim(0);
  const int64_t hidden = y.dim(1);
  LATTICE_CHECK(gate_logit.ndim() == 2 && gate_logit.dim(0) == num_tokens &&
                gate_logit.dim(1) == 1);
  const float* gate = gate_logit.data<float>();
  const float* src = y.data<float>();
  float* dst = out.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float g = Sigmoid(gate[t]);
    for (int64_t i = 0; i < hidden; ++i) dst[t * hidden + i] += g * src[t * hidden + i];
  }
}

void Add(const Tensor& x, Tensor& out) {
  LATTICE_CHECK_MSG(x.shape() == out.shape(), "%s vs %s", ShapeToString(x.shape()).c_str(),
                    ShapeToString(out.shape()).c_str());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace lattice::cpu
