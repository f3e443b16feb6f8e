// Small f32 vector helpers shared by the CPU reference ops (private to kernels/cpu).
// Reductions keep eight partial sums so that the compiler can vectorise them without
// -ffast-math; the summation order depends only on the length, so results are
// reproducible whatever the caller's batching or threading.
#pragma once

#include <cstdint>

namespace lattice::cpu::internal {

inline constexpr int kLanes = 8;

// sum_i a[i] * b[i], in f32.
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  // Pairwise combination of the lanes.
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

// y[i] += alpha * x[i].
inline void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace lattice::cpu::internal
