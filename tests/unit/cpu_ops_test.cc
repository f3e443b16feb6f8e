// The dense CPU reference ops (embedding, norms, linear, activations, adds, rotary)
// against naive double-precision versions over odd sizes, with NaN-poisoned outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "tests/unit/cpu_test_util.h"

namespace lattice {
namespace {

using testing::ExpectAllClose;
using testing::PoisonedOutput;
using testing::RandomNormal;
using testing::RandomTensor;
using testing::ReductionTolerance;
using testing::ToDouble;

constexpr int64_t kTokenCounts[] = {1, 7, 33};
constexpr int64_t kWidths[] = {1, 7, 33, 769};

std::string Case(int64_t t, int64_t h) {
  return "T=" + std::to_string(t) + " H=" + std::to_string(h);
}

std::vector<double> RmsNormReference(const std::vector<double>& x, const std::vector<double>& w,
                                     double eps, int64_t hidden) {
  std::vector<double> out(x.size());
  for (size_t r = 0; r < x.size() / hidden; ++r) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < hidden; ++i) sum_sq += x[r * hidden + i] * x[r * hidden + i];
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(hidden) + eps);
    for (int64_t i = 0; i < hidden; ++i) out[r * hidden + i] = x[r * hidden + i] * inv_rms * w[i];
  }
  return out;
}

double SiluReference(double x) { return x / (1.0 + std::exp(-x)); }

TEST(CpuEmbedding, GathersRows) {
  std::mt19937 rng(1);
  constexpr int64_t kVocab = 41;
  for (int64_t t : kTokenCounts) {
    for (int64_t h : kWidths) {
      const Tensor table = RandomTensor(rng, {kVocab, h});
      std::vector<int32_t> ids(t);
      std::uniform_int_distribution<int32_t> pick(0, kVocab - 1);
      for (int32_t& id : ids) id = pick(rng);
      ids.front() = kVocab - 1;  // both ends of the table
      ids.back() = 0;
      PoisonedOutput out({t, h});
      cpu::Embedding(ids, table, out.view());

      std::vector<double> want;
      for (int32_t id : ids) {
        for (int64_t i = 0; i < h; ++i) want.push_back(table.data<float>()[id * h + i]);
      }
      ExpectAllClose(out.view(), want, 0.0, Case(t, h));
      EXPECT_TRUE(out.GuardsIntact()) << Case(t, h);
    }
  }
}

TEST(CpuRmsNorm, MatchesReference) {
  std::mt19937 rng(2);
  for (float eps : {1e-6f, 1e-2f}) {
    for (int64_t t : kTokenCounts) {
      for (int64_t h : kWidths) {
        // Rows of different scales: RMS normalisation must remove the scale.
        const Tensor x = RandomTensor(rng, {t, h}, 3.0f);
        const Tensor w = RandomTensor(rng, {h});
        PoisonedOutput out({t, h});
        cpu::RmsNorm(x, w, eps, out.view());
        ExpectAllClose(out.view(), RmsNormReference(ToDouble(x), ToDouble(w), eps, h),
                       ReductionTolerance(h), Case(t, h));
        EXPECT_TRUE(out.GuardsIntact()) << Case(t, h);
      }
    }
  }
}

TEST(CpuRmsNorm, EpsDominatesTinyRows) {
  // With mean(x^2) << eps the output is x * weight / sqrt(eps).
  const Tensor x = Tensor::FromVector({1e-6f, -2e-6f, 3e-6f}, {1, 3});
  const Tensor w = Tensor::FromVector({1.0f, 2.0f, -1.0f}, {3});
  Tensor out = Tensor::Empty(DType::kF32, {1, 3});
  cpu::RmsNorm(x, w, 1e-2f, out);
  ExpectAllClose(out, {1e-5, -4e-5, -3e-5}, 1e-6);
}

TEST(CpuRmsNorm, InPlaceMatchesOutOfPlace) {
  std::mt19937 rng(3);
  for (int64_t h : kWidths) {
    const Tensor x = RandomTensor(rng, {7, h});
    const Tensor w = RandomTensor(rng, {h});
    Tensor separate = Tensor::Empty(DType::kF32, {7, h});
    cpu::RmsNorm(x, w, 1e-6f, separate);
    Tensor in_place = x.Clone();
    cpu::RmsNorm(in_place, w, 1e-6f, in_place);
    EXPECT_EQ(std::memcmp(in_place.raw_data(), separate.raw_data(), separate.nbytes()), 0)
        << "H=" << h;
  }
}

TEST(CpuFusedAddRmsNorm, UpdatesResidualAndNormalises) {
  std::mt19937 rng(4);
  for (int64_t t : kTokenCounts) {
    for (int64_t h : kWidths) {
      const Tensor x0 = RandomTensor(rng, {t, h});
      const Tensor residual0 = RandomTensor(rng, {t, h}, 4.0f);
      const Tensor w = RandomTensor(rng, {h});
      Tensor x = x0.Clone();
      Tensor residual = residual0.Clone();
      cpu::FusedAddRmsNorm(x, residual, w, 1e-5f);

      // The residual is the exact f32 sum.
      std::vector<double> sum(t * h);
      for (int64_t i = 0; i < t * h; ++i) {
        sum[i] = static_cast<double>(x0.data<float>()[i] + residual0.data<float>()[i]);
      }
      ExpectAllClose(residual, sum, 0.0, "residual " + Case(t, h));
      ExpectAllClose(x, RmsNormReference(sum, ToDouble(w), 1e-5, h), ReductionTolerance(h),
                     "x " + Case(t, h));
      // And x is exactly what RmsNorm of the new residual gives.
      Tensor want = Tensor::Empty(DType::kF32, {t, h});
      cpu::RmsNorm(residual, w, 1e-5f, want);
      EXPECT_EQ(std::memcmp(x.raw_data(), want.raw_data(), want.nbytes()), 0) << Case(t, h);
    }
  }
}

std::vector<double> LinearReference(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t t = x.dim(0), in = x.dim(1), out = w.dim(0);
  std::vector<double> y(t * out);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias.defined() ? bias.data<float>()[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) {
        acc += static_cast<double>(x.data<float>()[i * in + k]) * w.data<float>()[o * in + k];
      }
      y[i * out + o] = acc;
    }
  }
  return y;
}

TEST(CpuLinear, MatchesReference) {
  std::mt19937 rng(5);
  for (bool with_bias : {false, true}) {
    for (int64_t t : kTokenCounts) {
      for (int64_t in : kWidths) {
        for (int64_t out_features : {1, 7, 33}) {
          const std::string name =
              Case(t, in) + " out=" + std::to_string(out_features) + (with_bias ? " bias" : "");
          const Tensor x = RandomTensor(rng, {t, in});
          // Weights scaled as in a trained layer, so outputs are O(1).
          const Tensor w =
              RandomTensor(rng, {out_features, in}, 1.0f / std::sqrt(static_cast<float>(in)));
          const Tensor bias = with_bias ? RandomTensor(rng, {out_features}) : Tensor();
          PoisonedOutput out({t, out_features});
          cpu::Linear(x, w, bias, out.view());
          ExpectAllClose(out.view(), LinearReference(x, w, bias), ReductionTolerance(in), name);
          EXPECT_TRUE(out.GuardsIntact()) << name;
        }
      }
    }
  }
}

TEST(CpuLinear, LargeThreadedProductMatchesAndIsBatchIndependent) {
  // Large enough to be split across threads; each token computed alone (no threads)
  // must give bit-identical rows.
  std::mt19937 rng(6);
  const int64_t t = 37, in = 515, out_features = 301;
  const Tensor x = RandomTensor(rng, {t, in});
  const Tensor w = RandomTensor(rng, {out_features, in}, 1.0f / std::sqrt(float{in}));
  const Tensor bias = RandomTensor(rng, {out_features});
  PoisonedOutput out({t, out_features});
  cpu::Linear(x, w, bias, out.view());
  ExpectAllClose(out.view(), LinearReference(x, w, bias), ReductionTolerance(in));
  EXPECT_TRUE(out.GuardsIntact());
  for (int64_t i = 0; i < t; ++i) {
    Tensor row = Tensor::Empty(DType::kF32, {1, out_features});
    cpu::Linear(x.Slice(i, i + 1), w, bias, row);
    EXPECT_EQ(std::memcmp(row.raw_data(), out.view().Slice(i, i + 1).raw_data(), row.nbytes()), 0)
        << "token " << i;
  }
}

TEST(CpuSiluAndMul, MatchesReference) {
  std::mt19937 rng(7);
  for (int64_t t : kTokenCounts) {
    for (int64_t inter : kWidths) {
      Tensor x = RandomTensor(rng, {t, 2 * inter}, 3.0f);
      // Extreme gates: silu must saturate to 0 and x, never NaN.
      x.data<float>()[0] = -200.0f;
      if (inter > 1) x.data<float>()[1] = 200.0f;
      PoisonedOutput out({t, inter});
      cpu::SiluAndMul(x, out.view());
      std::vector<double> want(t * inter);
      const std::vector<double> xd = ToDouble(x);
      for (int64_t r = 0; r < t; ++r) {
        for (int64_t i = 0; i < inter; ++i) {
          want[r * inter + i] =
              SiluReference(xd[r * 2 * inter + i]) * xd[r * 2 * inter + inter + i];
        }
      }
      ExpectAllClose(out.view(), want, 1e-6, Case(t, inter));
      EXPECT_TRUE(out.GuardsIntact()) << Case(t, inter);
    }
  }
}

TEST(CpuAdd, AddsElementwise) {
  std::mt19937 rng(8);
  for (int64_t t : kTokenCounts) {
    for (int64_t h : kWidths) {
      const Tensor x = RandomTensor(rng, {t, h});
      Tensor out = RandomTensor(rng, {t, h});
      std::vector<double> want(t * h);
      for (int64_t i = 0; i < t * h; ++i) {
        want[i] = static_cast<double>(out.data<float>()[i] + x.data<float>()[i]);
      }
      cpu::Add(x, out);
      ExpectAllClose(out, want, 0.0, Case(t, h));
    }
  }
}

TEST(CpuAddSigmoidGated, MatchesReference) {
  std::mt19937 rng(9);
  for (int64_t t : kTokenCounts) {
    for (int64_t h : kWidths) {
      Tensor gate = RandomTensor(rng, {t, 1}, 3.0f);
      gate.data<float>()[0] = -120.0f;  // sigmoid underflows to 0: out unchanged
      const Tensor y = RandomTensor(rng, {t, h});
      Tensor out = RandomTensor(rng, {t, h});
      std::vector<double> want = ToDouble(out);
      for (int64_t r = 0; r < t; ++r) {
        const double g = 1.0 / (1.0 + std::exp(-static_cast<double>(gate.data<float>()[r])));
        for (int64_t i = 0; i < h; ++i) want[r * h + i] += g * y.data<float>()[r * h + i];
      }
      cpu::AddSigmoidGated(gate, y, out);
      ExpectAllClose(out, want, 1e-6, Case(t, h));
    }
  }
}

// Rotary in double, from the same f32 angle the header prescribes.
std::vector<double> RotaryReference(const Tensor& x, const std::vector<int32_t>& positions,
                                    const std::vector<float>& inv_freq, double scale) {
  const int64_t t = x.dim(0), heads = x.dim(1), d = x.dim(2);
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  std::vector<double> out = ToDouble(x);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      double* head = out.data() + (i * heads + h) * d;
      for (int64_t j = 0; j < half; ++j) {
        const double angle = static_cast<float>(positions[i]) * inv_freq[j];
        const double c = std::cos(angle) * scale, s = std::sin(angle) * scale;
        const double x1 = head[j], x2 = head[j + half];
        head[j] = x1 * c - x2 * s;
        head[j + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

TEST(CpuApplyRotary, MatchesReference) {
  std::mt19937 rng(10);
  struct Dims {
    int64_t head_dim, rotary_dim;
  };
  // Full rotation, partial rotation (including odd head_dim) and a 2-wide head.
  const Dims dims[] = {{2, 2}, {7, 4}, {64, 64}, {64, 32}, {80, 80}, {128, 64}};
  for (float scale : {1.0f, 0.7f}) {
    for (int64_t t : kTokenCounts) {
      for (int64_t heads : {1, 3}) {
        for (const Dims& dim : dims) {
          const std::string name = Case(t, heads) + " D=" + std::to_string(dim.head_dim) +
                                   " r=" + std::to_string(dim.rotary_dim);
          std::vector<float> inv_freq(dim.rotary_dim / 2);
          for (size_t j = 0; j < inv_freq.size(); ++j) {
            inv_freq[j] = static_cast<float>(std::pow(
                10000.0, -2.0 * static_cast<double>(j) / static_cast<double>(dim.rotary_dim)));
          }
          std::vector<int32_t> positions(t);
          std::uniform_int_distribution<int32_t> pick(0, 200000);
          for (int32_t& p : positions) p = pick(rng);
          positions[0] = 0;  // the identity rotation
          const Tensor x0 = RandomTensor(rng, {t, heads, dim.head_dim});
          Tensor x = x0.Clone();
          cpu::ApplyRotary(positions, inv_freq, scale, x);
          ExpectAllClose(x, RotaryReference(x0, positions, inv_freq, scale), 2e-6, name);
          // Features past rotary_dim are untouched, bit for bit.
          for (int64_t r = 0; r < t * heads; ++r) {
            for (int64_t k = dim.rotary_dim; k < dim.head_dim; ++k) {
              const int64_t i = r * dim.head_dim + k;
              ASSERT_EQ(x.data<float>()[i], x0.data<float>()[i]) << name;
            }
          }
        }
      }
    }
  }
}

TEST(CpuApplyRotary, PositionZeroWithUnitScaleIsIdentity) {
  std::mt19937 rng(11);
  const Tensor x0 = RandomTensor(rng, {2, 2, 8});
  Tensor x = x0.Clone();
  const std::vector<int32_t> positions = {0, 0};
  const std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  cpu::ApplyRotary(positions, inv_freq, 1.0f, x);
  EXPECT_EQ(std::memcmp(x.raw_data(), x0.raw_data(), x.nbytes()), 0);
}

TEST(CpuApplyRotary, RelativePositionPreservesDotProducts) {
  // The point of RoPE: <R(m) q, R(n) k> depends only on m - n.
  std::mt19937 rng(12);
  const Tensor q0 = RandomTensor(rng, {1, 1, 64});
  const Tensor k0 = RandomTensor(rng, {1, 1, 64});
  std::vector<float> inv_freq(32);
  for (int j = 0; j < 32; ++j) inv_freq[j] = std::pow(10000.0f, static_cast<float>(-j) / 32.0f);
  auto rotated_dot = [&](int32_t m, int32_t n) {
    Tensor q = q0.Clone(), k = k0.Clone();
    cpu::ApplyRotary(std::vector<int32_t>{m}, inv_freq, 1.0f, q);
    cpu::ApplyRotary(std::vector<int32_t>{n}, inv_freq, 1.0f, k);
    double dot = 0.0;
    for (int i = 0; i < 64; ++i) dot += double{q.data<float>()[i]} * k.data<float>()[i];
    return dot;
  };
  EXPECT_NEAR(rotated_dot(10, 3), rotated_dot(107, 100), 1e-3);
  EXPECT_NEAR(rotated_dot(5, 5), rotated_dot(0, 0), 1e-3);
}

}  // namespace
}  // namespace lattice
