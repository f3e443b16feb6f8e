// LogSoftmax, TopK, the counter-based uniform and Sample. Sample is checked token for
// token against a double-precision reference that follows the header's order
// (temperature, min-p, top-k, top-p, inverse CDF in descending order), and
// statistically against the filtered distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "tests/unit/cpu_test_util.h"

namespace lattice {
namespace {

using cpu::SamplingParams;
using testing::RandomNormal;

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(CpuLogSoftmax, MatchesReference) {
  std::mt19937 rng(40);
  for (size_t n : {1, 7, 769, 32000}) {
    std::vector<float> logits = RandomNormal(rng, n, 5.0f);
    if (n > 7) logits[3] = logits[n - 2] = -kInf;
    std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
    cpu::LogSoftmax(logits, out);
    double max_logit = -kInf, sum = 0.0;
    for (float l : logits) max_logit = std::max(max_logit, double{l});
    for (float l : logits) sum += std::exp(l - max_logit);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double want = logits[i] - max_logit - std::log(sum);
      if (std::isinf(want)) {
        EXPECT_EQ(out[i], -kInf) << i;
      } else {
        ASSERT_NEAR(out[i], want, 1e-6 * (1 + std::abs(want))) << "n=" << n << " i=" << i;
      }
      total += std::exp(double{out[i]});
    }
    EXPECT_NEAR(total, 1.0, 1e-5) << "n=" << n;
  }
}

TEST(CpuLogSoftmax, HugeLogitsStayFinite) {
  const std::vector<float> logits = {3e38f, 3e38f, -3e38f, 0.0f};
  std::vector<float> out(4);
  cpu::LogSoftmax(logits, out);
  EXPECT_NEAR(out[0], -std::log(2.0), 1e-7);
  EXPECT_NEAR(out[1], -std::log(2.0), 1e-7);
  EXPECT_EQ(out[2], -kInf);  // -6e38 does not fit in f32
  EXPECT_LT(out[3], -1e38f);
}

TEST(CpuTopK, MatchesStableSort) {
  std::mt19937 rng(41);
  std::uniform_int_distribution<int> small(-5, 5);  // many ties
  for (int n : {1, 7, 33, 769}) {
    std::vector<float> values(n);
    for (float& v : values) v = static_cast<float>(small(rng)) * 0.5f;
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return values[a] > values[b]; });
    for (int k : {0, 1, 5, n, n + 3}) {
      const auto top = cpu::TopK(values, k);
      ASSERT_EQ(top.size(), static_cast<size_t>(std::min(k, n))) << "n=" << n << " k=" << k;
      for (size_t i = 0; i < top.size(); ++i) {
        EXPECT_EQ(top[i].first, order[i]) << "n=" << n << " k=" << k << " i=" << i;
        EXPECT_EQ(top[i].second, values[order[i]]);
      }
    }
  }
}

TEST(CpuSampleUniform, InUnitIntervalAndDeterministic) {
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, ~uint64_t{0}}) {
    for (int64_t position : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1} << 40,
                             std::numeric_limits<int64_t>::max()}) {
      const double u = cpu::SampleUniform(seed, position);
      EXPECT_GE(u, 0.0);
      EXPECT_LT(u, 1.0);
      EXPECT_EQ(u, cpu::SampleUniform(seed, position));
    }
  }
}

TEST(CpuSampleUniform, LooksUniformAndIndependent) {
  constexpr int kN = 20000, kBins = 20;
  for (uint64_t seed : {uint64_t{0}, uint64_t{42}}) {
    std::vector<int> bins(kBins, 0);
    double sum = 0.0, lag_product = 0.0, prev = cpu::SampleUniform(seed, 0) - 0.5;
    std::set<double> distinct;
    for (int64_t p = 0; p < kN; ++p) {
      const double u = cpu::SampleUniform(seed, p);
      ++bins[static_cast<int>(u * kBins)];
      sum += u;
      distinct.insert(u);
      if (p > 0) lag_product += (u - 0.5) * prev;
      prev = u - 0.5;
    }
    EXPECT_EQ(distinct.size(), static_cast<size_t>(kN));
    EXPECT_NEAR(sum / kN, 0.5, 0.01);
    // Lag-1 correlation of a uniform: variance 1/12.
    EXPECT_LT(std::abs(lag_product / (kN - 1) * 12.0), 0.05);
    const double expected = static_cast<double>(kN) / kBins;
    for (int b = 0; b < kBins; ++b) {
      EXPECT_NEAR(bins[b], expected, 5 * std::sqrt(expected)) << "seed " << seed << " bin " << b;
    }
  }
}

TEST(CpuSampleUniform, SeedsDiffer) {
  int same = 0;
  for (int64_t p = 0; p < 1000; ++p) {
    same += cpu::SampleUniform(1, p) == cpu::SampleUniform(2, p);
    // Seed and position are not interchangeable.
    same += cpu::SampleUniform(static_cast<uint64_t>(p), 7) == cpu::SampleUniform(7, p) && p != 7;
  }
  EXPECT_EQ(same, 0);
}

// The header's algorithm in double: the kept tokens in descending probability (ties to
// the lower id) with their probabilities renormalised over the kept set.
std::vector<std::pair<int32_t, double>> ReferenceKept(const std::vector<float>& logits,
                                                      const SamplingParams& params) {
  const int32_t n = static_cast<int32_t>(logits.size());
  double max_scaled = -kInf;
  for (float l : logits) max_scaled = std::max(max_scaled, l / double{params.temperature});
  std::vector<double> probs(n);
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    sum += (probs[i] = std::exp(logits[i] / double{params.temperature} - max_scaled));
  }
  for (double& p : probs) p /= sum;
  const double p_max = *std::max_element(probs.begin(), probs.end());

  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n; ++i) {
    if (probs[i] > 0.0 && probs[i] >= params.min_p * p_max) ids.push_back(i);
  }
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
  if (params.top_k > 0 && ids.size() > static_cast<size_t>(params.top_k)) ids.resize(params.top_k);
  double kept_mass = 0.0;
  for (int32_t id : ids) kept_mass += probs[id];
  size_t count = 0;
  for (double mass = 0.0; count < ids.size() && mass < params.top_p * kept_mass; ++count) {
    mass += probs[ids[count]];
  }
  ids.resize(count);
  kept_mass = 0.0;
  for (int32_t id : ids) kept_mass += probs[id];
  std::vector<std::pair<int32_t, double>> kept;
  for (int32_t id : ids) kept.emplace_back(id, probs[id] / kept_mass);
  return kept;
}

int32_t ReferenceSample(const std::vector<float>& logits, const SamplingParams& params,
                        int64_t position) {
  const auto kept = ReferenceKept(logits, params);
  const double u = cpu::SampleUniform(params.seed, position);
  double cumulative = 0.0;
  for (const auto& [id, p] : kept) {
    if (u < (cumulative += p)) return id;
  }
  return kept.back().first;
}

SamplingParams Params(float temperature, int32_t top_k, float top_p, float min_p,
                      uint64_t seed = 1234) {
  return {temperature, top_k, top_p, min_p, seed};
}

// Filters alone and combined, including degenerate settings.
const SamplingParams kParamGrid[] = {
    Params(1.0f, 0, 1.0f, 0.0f),   Params(0.5f, -1, 1.0f, 0.0f), Params(1.7f, 5, 1.0f, 0.0f),
    Params(1.0f, 0, 0.8f, 0.0f),   Params(1.0f, 0, 1.0f, 0.1f),  Params(0.8f, 10, 0.9f, 0.05f),
    Params(1.3f, 1, 1.0f, 0.0f),   Params(1.0f, 0, 0.01f, 0.0f), Params(1.0f, 1000, 1.0f, 0.0f),
    Params(2.0f, 20, 0.5f, 0.02f), Params(1.0f, 0, 1.0f, 1.0f),
};

std::string Describe(const SamplingParams& p) {
  return "T=" + std::to_string(p.temperature) + " top_k=" + std::to_string(p.top_k) +
         " top_p=" + std::to_string(p.top_p) + " min_p=" + std::to_string(p.min_p);
}

TEST(CpuSample, GreedyIsArgmaxWithTiesToLowerId) {
  std::mt19937 rng(42);
  for (size_t n : {1, 7, 769, 32000}) {
    std::vector<float> logits = RandomNormal(rng, n, 3.0f);
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    // Greedy ignores every other knob.
    for (const SamplingParams& p : {Params(0.0f, 0, 1.0f, 0.0f), Params(0.0f, 3, 0.2f, 0.5f, 99)}) {
      for (int64_t position : {0, 17}) EXPECT_EQ(cpu::Sample(logits, p, position), argmax);
    }
  }
  const std::vector<float> tied = {1.0f, 4.0f, -2.0f, 4.0f, 4.0f};
  EXPECT_EQ(cpu::Sample(tied, Params(0.0f, 0, 1.0f, 0.0f), 0), 1);
}

TEST(CpuSample, MatchesReferenceInverseCdf) {
  std::mt19937 rng(43);
  for (size_t n : {1, 7, 50, 769}) {
    const std::vector<float> logits = RandomNormal(rng, n, 2.0f);
    for (const SamplingParams& params : kParamGrid) {
      for (int64_t position = 0; position < 300; ++position) {
        ASSERT_EQ(cpu::Sample(logits, params, position), ReferenceSample(logits, params, position))
            << Describe(params) << " V=" << n << " position " << position;
      }
    }
  }
}

TEST(CpuSample, TiesKeepAndOrderTheLowerId) {
  // Three tokens tie for best. top_k = 2 keeps ids 1 and 2; the inverse CDF walks tied
  // tokens in id order, so u < 1/3 picks token 1 when nothing is filtered.
  std::uniform_int_distribution<int> small(-2, 2);
  std::mt19937 rng(46);
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 3.0f, 0.0f};
  std::set<int32_t> seen;
  for (int64_t position = 0; position < 500; ++position) {
    seen.insert(cpu::Sample(logits, Params(1.0f, 2, 1.0f, 0.0f), position));
    const int32_t token = cpu::Sample(logits, Params(1.0f, 0, 1.0f, 0.0f), position);
    EXPECT_EQ(token, ReferenceSample(logits, Params(1.0f, 0, 1.0f, 0.0f), position));
    // Many-way ties from a small integer range, under every filter.
    std::vector<float> tied(40);
    for (float& v : tied) v = static_cast<float>(small(rng));
    for (const SamplingParams& params : kParamGrid) {
      ASSERT_EQ(cpu::Sample(tied, params, position), ReferenceSample(tied, params, position))
          << Describe(params) << " position " << position;
    }
  }
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2}));
}

TEST(CpuSample, NeverSamplesFilteredTokens) {
  std::mt19937 rng(44);
  const std::vector<float> logits = RandomNormal(rng, 100, 2.0f);
  for (const SamplingParams& params : kParamGrid) {
    std::set<int32_t> allowed;
    for (const auto& [id, p] : ReferenceKept(logits, params)) allowed.insert(id);
    std::set<int32_t> seen;
    for (int64_t position = 0; position < 2000; ++position) {
      const int32_t token = cpu::Sample(logits, params, position);
      ASSERT_TRUE(allowed.count(token)) << Describe(params) << " sampled " << token;
      seen.insert(token);
    }
    // With a handful of allowed tokens, 2000 draws reach every one.
    if (allowed.size() <= 5) {
      EXPECT_EQ(seen, allowed) << Describe(params);
    }
  }
}

TEST(CpuSample, FrequenciesMatchFilteredDistribution) {
  const std::vector<float> logits = {1.0f, 2.5f, 0.3f, -1.0f, 2.4f, 0.0f, 1.7f, -3.0f};
  constexpr int kDraws = 20000;
  for (const SamplingParams& params : {Params(1.0f, 0, 1.0f, 0.0f), Params(0.7f, 5, 1.0f, 0.0f),
                                       Params(1.5f, 0, 0.85f, 0.0f), Params(1.0f, 6, 0.9f, 0.1f)}) {
    std::vector<int> counts(logits.size(), 0);
    for (int64_t position = 0; position < kDraws; ++position) {
      ++counts[cpu::Sample(logits, params, position)];
    }
    std::vector<double> want(logits.size(), 0.0);
    for (const auto& [id, p] : ReferenceKept(logits, params)) want[id] = p;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double freq = static_cast<double>(counts[i]) / kDraws;
      const double sigma = std::sqrt(want[i] * (1 - want[i]) / kDraws);
      EXPECT_NEAR(freq, want[i], 5 * sigma + 1e-3) << Describe(params) << " token " << i;
    }
  }
}

TEST(CpuSample, TopPIsOverTheDistributionLeftByTopK) {
  // probs 0.5, 0.2, 0.15, 0.1, 0.05. top_k = 3 leaves 0.5/0.85, 0.2/0.85, 0.15/0.85;
  // top_p = 0.8 is reached by the first two (0.82). Over the unfiltered distribution the
  // first two would hold only 0.7, and token 2 would be kept.
  std::vector<float> logits;
  for (double p : {0.5, 0.2, 0.15, 0.1, 0.05}) logits.push_back(static_cast<float>(std::log(p)));
  std::vector<int> counts(5, 0);
  for (int64_t position = 0; position < 3000; ++position) {
    ++counts[cpu::Sample(logits, Params(1.0f, 3, 0.8f, 0.0f), position)];
  }
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2] + counts[3] + counts[4], 0);
  EXPECT_NEAR(counts[0] / 3000.0, 0.5 / 0.7, 0.04);
}

TEST(CpuSample, MinPAppliesAfterTemperature) {
  // probs 0.6, 0.3, 0.1: token 2 is below min_p = 0.25 of the best at T = 1, but at
  // T = 3 its ratio is (1/6)^(1/3) = 0.55 and it stays.
  std::vector<float> logits;
  for (double p : {0.6, 0.3, 0.1}) logits.push_back(static_cast<float>(std::log(p)));
  int cold = 0, hot = 0;
  for (int64_t position = 0; position < 2000; ++position) {
    cold += cpu::Sample(logits, Params(1.0f, 0, 1.0f, 0.25f), position) == 2;
    hot += cpu::Sample(logits, Params(3.0f, 0, 1.0f, 0.25f), position) == 2;
  }
  EXPECT_EQ(cold, 0);
  EXPECT_GT(hot, 300);  // about 0.24 of 2000
}

TEST(CpuSample, NegativeInfinityIsNeverSampled) {
  std::vector<float> logits(64, -kInf);
  logits[5] = 0.0f;
  logits[40] = -0.5f;
  std::set<int32_t> seen;
  for (int64_t position = 0; position < 500; ++position) {
    seen.insert(cpu::Sample(logits, Params(2.0f, 0, 1.0f, 0.0f), position));
  }
  EXPECT_EQ(seen, (std::set<int32_t>{5, 40}));
}

TEST(CpuSample, DependsOnlyOnSeedAndPosition) {
  std::mt19937 rng(45);
  const std::vector<float> logits = RandomNormal(rng, 300, 1.0f);
  const SamplingParams params = Params(1.0f, 0, 0.95f, 0.0f, 7);
  std::vector<int32_t> first;
  for (int64_t position = 0; position < 100; ++position) {
    first.push_back(cpu::Sample(logits, params, position));
  }
  // Interleave other requests (other logits, seeds, filters) and go backwards.
  for (int64_t position = 99; position >= 0; --position) {
    const std::vector<float> other = RandomNormal(rng, 50, 3.0f);
    cpu::Sample(other, Params(0.9f, 4, 0.7f, 0.0f, position * 31 + 5), position + 1);
    EXPECT_EQ(cpu::Sample(logits, params, position), first[position]) << position;
  }
}

TEST(CpuSample, DifferentSeedsGiveDifferentStreams) {
  const std::vector<float> flat(1000, 0.0f);
  int differ = 0;
  for (int64_t position = 0; position < 100; ++position) {
    differ += cpu::Sample(flat, Params(1.0f, 0, 1.0f, 0.0f, 1), position) !=
              cpu::Sample(flat, Params(1.0f, 0, 1.0f, 0.0f, 2), position);
  }
  EXPECT_GE(differ, 95);  // a collision has probability 1/1000 per position
}

}  // namespace
}  // namespace lattice
