// RMS normalisation, alone and fused with the residual add that precedes it between
// decoder layers. Follows Hugging Face's f32 path: x * rsqrt(mean(x^2) + eps) * weight.
#include <cmath>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace lattice::cpu {
namespace {

// One row; `out` may alias `x` because each element is read before it is written.
void RmsNormRow(const float* x, const float* weight, float eps, int64_t hidden, float* out) {
  const float mean_sq = internal::Dot(x, x, hidden) / static_cast<float>(hidden);
  const float inv_rms = 1.0f / std::sqrt(mean_sq + eps);
  for (int64_t i = 0; i < hidden; ++i) out[i] = x[i] * inv_rms * weight[i];
}

void CheckShapes(const Tensor& x, const Tensor& weight) {
  LATTICE_CHECK(x.ndim() == 2);
  LATTICE_CHECK(weight.ndim() == 1 && weight.dim(0) == x.dim(1));
}

}  // namespace

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  CheckShapes(x, weight);
  LATTICE_CHECK(out.shape() == x.shape());
  const int64_t hidden = x.dim(1);
  const float* src = x.data<float>();
  const float* w = weight.data<float>();
  float* dst = out.data<float>();
  for (int64_t t = 0; t < x.dim(0); ++t) {
    RmsNormRow(src + t * hidden, w, eps, hidden, dst + t * hidden);
  }
}

void FusedAddRmsNorm(Tensor& x, Tensor& residual, const Tensor& weight, float eps) {
  CheckShapes(x, weight);
  LATTICE_CHECK(residual.shape() == x.shape());
  const int64_t hidden = x.dim(1);
  float* hs = x.data<float>();
  float* res = residual.data<float>();
  const float* w = weight.data<float>();
  for (int64_t t = 0; t < x.dim(0); ++t) {
    float* h_row = hs + t * hidden;
    float* r_row = res + t * hidden;
    for (int64_t i = 0; i < hidden; ++i) r_row[i] += h_row[i];
    RmsNormRow(r_row, w, eps, hidden, h_row);
  }
}

}  // namespace lattice::cpu
