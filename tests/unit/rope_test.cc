// Rotary frequencies per scaling type: the properties each type promises.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace lattice {
namespace {

RopeScaling Base(const char* type, int64_t dim = 64) {
  RopeScaling r;
  r.type = type;
  r.theta = 10000.0;
  r.rotary_dim = dim;
  r.max_position_embeddings = 128;
  r.original_max_position_embeddings = 128;
  r.factor = 4.0;
  return r;
}

double Default(int64_t j, int64_t dim, double theta = 10000.0) {
  return 1.0 / std::pow(theta, 2.0 * j / dim);
}

TEST(Rope, DefaultIsInverseThetaPowers) {
  for (int64_t dim : {2, 16, 24, 128}) {
    const RopeFrequencies f = ComputeRopeFrequencies(Base("default", dim), 0);
    ASSERT_EQ(f.inv_freq.size(), static_cast<size_t>(dim / 2));
    EXPECT_EQ(f.attention_scale, 1.0f);
    for (int64_t j = 0; j < dim / 2; ++j)
      EXPECT_NEAR(f.inv_freq[j], Default(j, dim), 1e-6 * Default(j, dim));
  }
}

TEST(Rope, LinearDividesByFactor) {
  const RopeFrequencies f = ComputeRopeFrequencies(Base("linear"), 0);
  for (int64_t j = 0; j < 32; ++j)
    EXPECT_NEAR(f.inv_freq[j], Default(j, 64) / 4.0, 1e-6 * Default(j, 64));
}

TEST(Rope, DynamicGrowsTheBaseOnlyPastMaxPositions) {
  const RopeScaling r = Base("dynamic");
  EXPECT_TRUE(RopeDependsOnLength(r));
  const RopeFrequencies short_seq = ComputeRopeFrequencies(r, 100);
  const RopeFrequencies at_max = ComputeRopeFrequencies(r, 128);
  const RopeFrequencies long_seq = ComputeRopeFrequencies(r, 256);
  for (int64_t j = 0; j < 32; ++j) {
    EXPECT_NEAR(short_seq.inv_freq[j], Default(j, 64), 1e-6 * Default(j, 64));
    EXPECT_EQ(short_seq.inv_freq[j], at_max.inv_freq[j]);
  }
  // base' = base * (factor * 256/128 - (factor - 1))^(dim / (dim - 2)) = base * 5^(64/62).
  const double grown = 10000.0 * std::pow(5.0, 64.0 / 62.0);
  for (int64_t j = 0; j < 32; ++j) {
    EXPECT_NEAR(long_seq.inv_freq[j], Default(j, 64, grown), 1e-6 * Default(j, 64, grown));
  }
  EXPECT_EQ(long_seq.inv_freq[0], 1.0f);
}

TEST(Rope, Llama3ScalesOnlyLowFrequencies) {
  RopeScaling r = Base("llama3");
  r.theta = 500000.0;
  r.factor = 8.0;
  r.original_max_position_embeddings = 64;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  const RopeFrequencies f = ComputeRopeFrequencies(r, 0);
  int low = 0, high = 0, medium = 0;
  for (int64_t j = 0; j < 32; ++j) {
    const double base = Default(j, 64, 500000.0);
    const double wavelen = 2 * std::numbers::pi / base;
    if (wavelen < 64.0 / 4.0) {
      EXPECT_NEAR(f.inv_freq[j], base, 1e-6 * base);
      ++high;
    } else if (wavelen > 64.0) {
      EXPECT_NEAR(f.inv_freq[j], base / 8.0, 1e-6 * base);
      ++low;
    } else {
      EXPECT_LE(f.inv_freq[j], base * (1 + 1e-6));
      EXPECT_GE(f.inv_freq[j], base / 8.0 * (1 - 1e-6));
      ++medium;
    }
  }
  EXPECT_GT(low, 0);
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
}

TEST(Rope, YarnBlendsAndScalesAttention) {
  RopeScaling r = Base("yarn");
  r.original_max_position_embeddings = 32;
  const RopeFrequencies f = ComputeRopeFrequencies(r, 0);
  EXPECT_NEAR(f.attention_scale, 0.1 * std::log(4.0) + 1.0, 1e-6);
  // Fast-rotating dimensions keep their frequency, slow ones are interpolated.
  EXPECT_NEAR(f.inv_freq[0], Default(0, 64), 1e-6);
  EXPECT_NEAR(f.inv_freq[31], Default(31, 64) / 4.0, 1e-6 * Default(31, 64));
  for (int64_t j = 1; j < 32; ++j) EXPECT_LT(f.inv_freq[j], f.inv_freq[j - 1]);
  r.attention_factor = 0.5;
  EXPECT_EQ(ComputeRopeFrequencies(r, 0).attention_scale, 0.5f);
  r.attention_factor.reset();
  r.mscale = 1.0;
  r.mscale_all_dim = 1.0;
  EXPECT_NEAR(ComputeRopeFrequencies(r, 0).attention_scale, 1.0, 1e-6);
}

}  // namespace
}  // namespace lattice
