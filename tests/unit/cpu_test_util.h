// Shared helpers for the CPU op tests: seeded random tensors, NaN-poisoned outputs
// with guard rows that catch stray writes, and a tolerance check against a double
// precision reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/tensor.h"

namespace lattice::testing {

inline std::vector<float> RandomNormal(std::mt19937& rng, int64_t n, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> values(n);
  for (float& v : values) v = dist(rng);
  return values;
}

inline Tensor RandomTensor(std::mt19937& rng, const Shape& shape, float stddev = 1.0f) {
  return Tensor::FromVector(RandomNormal(rng, ShapeNumel(shape), stddev), shape);
}

inline std::vector<double> ToDouble(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<double>(p, p + t.numel());
}

// An output tensor filled with NaN and framed by one NaN guard row on each side of its
// first dimension; `Guards()` checks that the op wrote nothing outside `view`.
class PoisonedOutput {
 public:
  explicit PoisonedOutput(Shape shape) {
    Shape padded = shape;
    padded[0] += 2;
    full_ = Tensor::Empty(DType::kF32, padded);
    for (float& v : full_.span<float>()) v = std::numeric_limits<float>::quiet_NaN();
    view_ = full_.Slice(1, padded[0] - 1);
  }
  Tensor& view() { return view_; }

  // True when both guard rows are still entirely NaN.
  bool GuardsIntact() const {
    const int64_t row = full_.dim(0) == 0 ? 0 : full_.numel() / full_.dim(0);
    const float* p = full_.data<float>();
    for (int64_t i = 0; i < row; ++i) {
      if (!std::isnan(p[i]) || !std::isnan(p[full_.numel() - 1 - i])) return false;
    }
    return true;
  }

 private:
  Tensor full_;
  Tensor view_;
};

// Checks every element: |got - want| <= tol * (1 + |want|). NaN (an unwritten poisoned
// element) always fails. Reports the first few mismatches and the worst error.
inline void ExpectAllClose(const Tensor& got, const std::vector<double>& want, double tol,
                           const std::string& context = "") {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << context;
  const float* p = got.data<float>();
  int failures = 0;
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(static_cast<double>(p[i]) - want[i]) / (1.0 + std::abs(want[i]));
    if (!(err <= tol)) {
      if (++failures <= 5) {
        ADD_FAILURE() << context << ": element " << i << " got " << p[i] << " want " << want[i];
      }
    } else {
      worst = std::max(worst, err);
    }
  }
  EXPECT_EQ(failures, 0) << context << " (worst passing error " << worst << ", tol " << tol << ")";
}

// Tolerance for f32 results of reductions over n terms of unit-scale inputs.
inline double ReductionTolerance(int64_t n) {
  return 1e-5 * std::max(1.0, std::sqrt(static_cast<double>(n)) / 8.0);
}

}  // namespace lattice::testing
