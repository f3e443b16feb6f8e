// Tensor views, slices and the exact 16-bit float conversions.
#include "kernels/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace lattice {
namespace {

TEST(DType, Bf16RoundTripsEveryValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(f))));
    } else {
      EXPECT_EQ(FloatToBf16(f), bits);
    }
  }
}

TEST(DType, F16RoundTripsEveryValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = F16ToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(f))));
    } else {
      EXPECT_EQ(FloatToF16(f), bits) << bits;
    }
  }
}

TEST(DType, RoundsToNearestEven) {
  // 1 + 2^-8 lies halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 0x1.8p-8f)), 1.0078125f);
  EXPECT_EQ(F16ToFloat(FloatToF16(1.0f + 0x1p-11f)), 1.0f);
  EXPECT_EQ(F16ToFloat(FloatToF16(65520.0f)), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToFloat(FloatToF16(65519.0f)), 65504.0f);
  EXPECT_EQ(F16ToFloat(FloatToF16(0x1p-25f)), 0.0f);              // tie: to even (0)
  EXPECT_EQ(F16ToFloat(FloatToF16(0x1.8p-25f)), 0x1p-24f);        // above the tie
  EXPECT_EQ(F16ToFloat(FloatToF16(3 * 0x1p-25f)), 2 * 0x1p-24f);  // 1.5 units: to even (2)
}

TEST(Tensor, ViewAndSliceShareTheBuffer) {
  Tensor t = Tensor::FromVector({0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor rows = t.Slice(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2}));
  EXPECT_EQ(rows.data<float>()[0], 2.0f);
  rows.data<float>()[0] = 20.0f;
  EXPECT_EQ(t.data<float>()[2], 20.0f);
  EXPECT_EQ(t.View({-1}).shape(), (Shape{6}));
  EXPECT_EQ(t.View({2, -1}).shape(), (Shape{2, 3}));
}

TEST(Tensor, ConvertsBetweenFloatTypes) {
  Tensor t = Tensor::FromVector({1.0f, -2.5f, 0.1f}, {3});
  Tensor back = t.To(DType::kBF16).To(DType::kF32);
  EXPECT_EQ(back.data<float>()[0], 1.0f);
  EXPECT_EQ(back.data<float>()[1], -2.5f);
  EXPECT_NEAR(back.data<float>()[2], 0.1f, 1e-3f);
}

}  // namespace
}  // namespace lattice
