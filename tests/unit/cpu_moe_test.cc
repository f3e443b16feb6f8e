// MoE routing (softmax top-k, ties, renormalisation) and the fused expert MLPs against
// double-precision references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
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

TEST(CpuMoeTopKRouting, MatchesReference) {
  std::mt19937 rng(30);
  for (bool renormalize : {false, true}) {
    for (int64_t t : {1, 7, 33}) {
      for (int64_t experts : {1, 8, 60}) {
        for (int top_k : {1, 2, 4, 8}) {
          if (top_k > experts) continue;
          const std::string name = "T=" + std::to_string(t) + " E=" + std::to_string(experts) +
                                   " k=" + std::to_string(top_k) + (renormalize ? " renorm" : "");
          const Tensor logits = RandomTensor(rng, {t, experts}, 2.0f);
          std::vector<int32_t> ids = {-7};  // stale contents must be replaced
          std::vector<float> weights = {-7.0f};
          cpu::MoeTopKRouting(logits, top_k, renormalize, ids, weights);
          ASSERT_EQ(ids.size(), static_cast<size_t>(t * top_k)) << name;
          ASSERT_EQ(weights.size(), static_cast<size_t>(t * top_k)) << name;

          for (int64_t r = 0; r < t; ++r) {
            const float* row = logits.data<float>() + r * experts;
            std::vector<double> probs(experts);
            const double max_logit = *std::max_element(row, row + experts);
            double sum = 0.0;
            for (int64_t e = 0; e < experts; ++e) sum += (probs[e] = std::exp(row[e] - max_logit));
            for (double& p : probs) p /= sum;
            std::vector<int32_t> order(experts);
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(),
                             [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
            double kept = 0.0;
            for (int k = 0; k < top_k; ++k) kept += probs[order[k]];
            for (int k = 0; k < top_k; ++k) {
              EXPECT_EQ(ids[r * top_k + k], order[k]) << name << " token " << r << " slot " << k;
              const double want = renormalize ? probs[order[k]] / kept : probs[order[k]];
              EXPECT_NEAR(weights[r * top_k + k], want, 1e-6 * (1 + want)) << name;
            }
          }
        }
      }
    }
  }
}

TEST(CpuMoeTopKRouting, TiesGoToLowerExpertId) {
  // Experts 1, 3 and 4 tie for best, 0 and 2 tie below them.
  const Tensor logits = Tensor::FromVector({0.5f, 2.0f, 0.5f, 2.0f, 2.0f, -1.0f}, {1, 6});
  std::vector<int32_t> ids;
  std::vector<float> weights;
  cpu::MoeTopKRouting(logits, 4, /*renormalize=*/false, ids, weights);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 4, 0}));
  EXPECT_EQ(weights[0], weights[1]);
  EXPECT_EQ(weights[1], weights[2]);
  EXPECT_GT(weights[2], weights[3]);

  // All equal: the first top_k experts, each 1/E (or 1/top_k renormalised).
  const Tensor flat = Tensor::FromVector(std::vector<float>(8, 0.25f), {1, 8});
  cpu::MoeTopKRouting(flat, 2, false, ids, weights);
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1}));
  EXPECT_FLOAT_EQ(weights[0], 0.125f);
  cpu::MoeTopKRouting(flat, 2, true, ids, weights);
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1}));
  EXPECT_FLOAT_EQ(weights[0], 0.5f);
  EXPECT_FLOAT_EQ(weights[1], 0.5f);
}

TEST(CpuMoeTopKRouting, RenormalizedWeightsSumToOneAndKeepRatios) {
  std::mt19937 rng(31);
  const Tensor logits = RandomTensor(rng, {9, 16}, 3.0f);
  std::vector<int32_t> ids_raw, ids_norm;
  std::vector<float> raw, norm;
  cpu::MoeTopKRouting(logits, 3, false, ids_raw, raw);
  cpu::MoeTopKRouting(logits, 3, true, ids_norm, norm);
  EXPECT_EQ(ids_raw, ids_norm);
  for (int t = 0; t < 9; ++t) {
    EXPECT_NEAR(norm[t * 3] + norm[t * 3 + 1] + norm[t * 3 + 2], 1.0f, 1e-6);
    EXPECT_GE(raw[t * 3], raw[t * 3 + 1]);  // best first
    EXPECT_GE(raw[t * 3 + 1], raw[t * 3 + 2]);
    EXPECT_NEAR(norm[t * 3 + 1] / norm[t * 3], raw[t * 3 + 1] / raw[t * 3], 1e-5);
  }
}

TEST(CpuMoeTopKRouting, LargeLogitsStayFinite) {
  const Tensor logits = Tensor::FromVector({1000.0f, 999.0f, -1000.0f, 0.0f}, {1, 4});
  std::vector<int32_t> ids;
  std::vector<float> weights;
  cpu::MoeTopKRouting(logits, 2, false, ids, weights);
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(weights[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(weights[1], std::exp(-1.0) / (1.0 + std::exp(-1.0)), 1e-6);
}

// out[t] = sum_k w[t,k] * W2_e (silu(G_e x) * (U_e x)), all in double.
std::vector<double> MoeReference(const Tensor& x, const Tensor& w13, const Tensor& w2,
                                 const std::vector<int32_t>& ids, const std::vector<float>& weights,
                                 int top_k) {
  const int64_t t = x.dim(0), h = x.dim(1), inter = w2.dim(2);
  std::vector<double> out(t * h, 0.0);
  std::vector<double> act(inter);
  for (int64_t r = 0; r < t; ++r) {
    const float* xr = x.data<float>() + r * h;
    for (int k = 0; k < top_k; ++k) {
      const int64_t e = ids[r * top_k + k];
      const float* g = w13.data<float>() + e * 2 * inter * h;
      const float* u = g + inter * h;
      const float* down = w2.data<float>() + e * h * inter;
      for (int64_t i = 0; i < inter; ++i) {
        double gate = 0.0, up = 0.0;
        for (int64_t j = 0; j < h; ++j) {
          gate += double{g[i * h + j]} * xr[j];
          up += double{u[i * h + j]} * xr[j];
        }
        act[i] = gate / (1.0 + std::exp(-gate)) * up;
      }
      for (int64_t j = 0; j < h; ++j) {
        double y = 0.0;
        for (int64_t i = 0; i < inter; ++i) y += down[j * inter + i] * act[i];
        out[r * h + j] += weights[r * top_k + k] * y;
      }
    }
  }
  return out;
}

TEST(CpuFusedMoe, MatchesReference) {
  std::mt19937 rng(32);
  for (int64_t t : {1, 7, 33}) {
    for (int64_t h : {7, 33}) {
      for (int64_t inter : {1, 5, 33}) {
        for (int64_t experts : {4, 8}) {
          for (int top_k : {1, 2}) {
            const std::string name = "T=" + std::to_string(t) + " H=" + std::to_string(h) +
                                     " I=" + std::to_string(inter) +
                                     " E=" + std::to_string(experts) +
                                     " k=" + std::to_string(top_k);
            const Tensor x = RandomTensor(rng, {t, h});
            const Tensor w13 =
                RandomTensor(rng, {experts, 2 * inter, h}, 1.0f / std::sqrt(static_cast<float>(h)));
            const Tensor w2 =
                RandomTensor(rng, {experts, h, inter}, 1.0f / std::sqrt(static_cast<float>(inter)));
            std::vector<int32_t> ids;
            std::vector<float> weights;
            cpu::MoeTopKRouting(RandomTensor(rng, {t, experts}), top_k, true, ids, weights);
            PoisonedOutput out({t, h});
            cpu::FusedMoe(x, w13, w2, ids, weights, top_k, out.view());
            ExpectAllClose(out.view(), MoeReference(x, w13, w2, ids, weights, top_k),
                           ReductionTolerance(std::max(h, inter)), name);
            EXPECT_TRUE(out.GuardsIntact()) << name;
          }
        }
      }
    }
  }
}

TEST(CpuFusedMoe, ReadsOnlyRoutedExperts) {
  // Experts 1 and 3 get no token; NaN weights there must not reach the output.
  std::mt19937 rng(33);
  const int64_t t = 5, h = 6, inter = 4, experts = 4;
  const Tensor x = RandomTensor(rng, {t, h});
  Tensor w13 = RandomTensor(rng, {experts, 2 * inter, h}, 0.4f);
  Tensor w2 = RandomTensor(rng, {experts, h, inter}, 0.5f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t e : {1, 3}) {
    std::fill_n(w13.data<float>() + e * 2 * inter * h, 2 * inter * h, nan);
    std::fill_n(w2.data<float>() + e * h * inter, h * inter, nan);
  }
  const std::vector<int32_t> ids = {0, 2, 2, 0, 0, 2, 2, 0, 0, 2};
  const std::vector<float> weights = {0.7f, 0.3f, 0.5f, 0.5f, 1.0f, 0.0f, 0.9f, 0.1f, 0.2f, 0.8f};
  PoisonedOutput out({t, h});
  cpu::FusedMoe(x, w13, w2, ids, weights, 2, out.view());
  ExpectAllClose(out.view(), MoeReference(x, w13, w2, ids, weights, 2), 1e-5);
}

TEST(CpuFusedMoe, SingleExpertEqualsDenseMlp) {
  // With top_k = 1 and weight 1 every token runs expert 0 as a plain gated MLP.
  std::mt19937 rng(34);
  const int64_t t = 7, h = 33, inter = 17;
  const Tensor x = RandomTensor(rng, {t, h});
  const Tensor w13 = RandomTensor(rng, {1, 2 * inter, h}, 0.2f);
  const Tensor w2 = RandomTensor(rng, {1, h, inter}, 0.2f);
  Tensor gate_up = Tensor::Empty(DType::kF32, {t, 2 * inter});
  cpu::Linear(x, w13.View({2 * inter, h}), Tensor(), gate_up);
  Tensor act = Tensor::Empty(DType::kF32, {t, inter});
  cpu::SiluAndMul(gate_up, act);
  Tensor dense = Tensor::Empty(DType::kF32, {t, h});
  cpu::Linear(act, w2.View({h, inter}), Tensor(), dense);

  Tensor out = Tensor::Empty(DType::kF32, {t, h});
  cpu::FusedMoe(x, w13, w2, std::vector<int32_t>(t, 0), std::vector<float>(t, 1.0f), 1, out);
  ExpectAllClose(out, testing::ToDouble(dense), 0.0);
}

}  // namespace
}  // namespace lattice
