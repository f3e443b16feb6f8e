// Rotary position embedding, rotate-half layout, applied in place to the first
// rotary_dim features of every head. Angles and their cos/sin are computed once per
// token and shared by all heads.
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice::cpu {

void ApplyRotary(std::span<const int32_t> positions, std::span<const float> inv_freq, float scale,
                 Tensor& x) {
  LATTICE_CHECK(x.ndim() == 3);
  const int64_t num_tokens = x.dim(0);
  const int64_t num_heads = x.dim(1);
  const int64_t head_dim = x.dim(2);
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  LATTICE_CHECK(static_cast<int64_t>(positions.size()) == num_tokens);
  LATTICE_CHECK(2 * half <= head_dim);

  std::vector<float> cos_t(half);
  std::vector<float> sin_t(half);
  float* data = x.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float position = static_cast<float>(positions[t]);
    for (int64_t j = 0; j < half; ++j) {
      // The angle is rounded to f32 as in Hugging Face; cos and sin of it are exact-ish.
      const double angle = static_cast<double>(position * inv_freq[j]);
      cos_t[j] = static_cast<float>(std::cos(angle)) * scale;
      sin_t[j] = static_cast<float>(std::sin(angle)) * scale;
    }
    for (int64_t h = 0; h < num_heads; ++h) {
      float* head = data + (t * num_heads + h) * head_dim;
      for (int64_t j = 0; j < half; ++j) {
        const float x1 = head[j];
        const float x2 = head[j + half];
        head[j] = x1 * cos_t[j] - x2 * sin_t[j];
        head[j + half] = x2 * cos_t[j] + x1 * sin_t[j];
      }
    }
  }
}

}  // namespace lattice::cpu
