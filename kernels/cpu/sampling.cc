// Log-softmax, top-k selection, the sequence-dependent logit adjustments (penalties,
// min_tokens, logit_bias) and token sampling. Sampling draws its uniform number from a
// counter-based hash of (seed, position), so a request's tokens do not depend on the
// batch it ran in or on any global RNG state. Probabilities are computed in double
// from the f32 logits: the result is a discrete choice, and the reference should be
// the most accurate version of it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice::cpu {
namespace {

// The splitmix64 finaliser: a bijection on 64-bit words with good avalanche.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Orders (value, index) best first: larger values, then lower indices. NaN ranks below
// every number so that the order stays strict and weak.
bool Better(float a, int32_t ia, float b, int32_t ib) {
  const bool a_nan = std::isnan(a);
  const bool b_nan = std::isnan(b);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a != b) return a > b;
  return ia < ib;
}

int32_t ArgMax(std::span<const float> values) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(values.size()); ++i) {
    if (Better(values[i], i, values[best], best)) best = i;
  }
  return best;
}

}  // namespace

void LogSoftmax(std::span<const float> logits, std::span<float> out) {
  LATTICE_CHECK(out.size() == logits.size());
  if (logits.empty()) return;
  double max_logit = -std::numeric_limits<double>::infinity();
  for (float l : logits) max_logit = std::max(max_logit, static_cast<double>(l));
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  // (x - max) first: adding log(sum) to a huge max would round it away.
  const double log_sum = std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) {
    out[i] = static_cast<float>((static_cast<double>(logits[i]) - max_logit) - log_sum);
  }
}

std::vector<std::pair<int32_t, float>> TopK(std::span<const float> values, int k) {
  LATTICE_CHECK(k >= 0);
  const size_t n = values.size();
  const size_t count = std::min(static_cast<size_t>(k), n);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [values](int32_t a, int32_t b) { return Better(values[a], a, values[b], b); });
  std::vector<std::pair<int32_t, float>> result;
  result.reserve(count);
  for (size_t i = 0; i < count; ++i) result.emplace_back(order[i], values[order[i]]);
  return result;
}

double SampleUniform(uint64_t seed, int64_t position) {
  // Two rounds of a bijective mixer: distinct positions of one seed never collide.
  const uint64_t h = Mix64(Mix64(seed + 0x9e3779b97f4a7c15ULL) ^ static_cast<uint64_t>(position));
  return static_cast<double>(h >> 11) * 0x1p-53;
}

void ApplyLogitAdjustments(std::span<float> logits, const PenaltyParams& penalties,
                           std::span<const LogitAdjustment> entries) {
  for (const LogitAdjustment& e : entries) {
    LATTICE_CHECK(e.token >= 0 && static_cast<size_t>(e.token) < logits.size());
    float l = logits[e.token];
    l = e.masked ? -std::numeric_limits<float>::infinity() : l + e.bias;
    if (e.in_prompt || e.output_count > 0) {
      l = l > 0.0f ? l / penalties.repetition_penalty : l * penalties.repetition_penalty;
    }
    if (e.output_count > 0) {
      const float frequency = penalties.frequency_penalty * static_cast<float>(e.output_count);
      l = l - frequency;
      l = l - penalties.presence_penalty;
    }
    logits[e.token] = l;
  }
}

int32_t Sample(std::span<const float> logits, const SamplingParams& params, int64_t position) {
  LATTICE_CHECK(!logits.empty());
  LATTICE_CHECK(params.temperature >= 0.0f);
  LATTICE_CHECK(params.top_p > 0.0f && params.top_p <= 1.0f);
  LATTICE_CHECK(params.min_p >= 0.0f && params.min_p <= 1.0f);
  if (params.temperature == 0.0f) return ArgMax(logits);

  // Unnormalised probabilities exp((l - max) / T): the largest is exactly 1, so min-p
  // compares against min_p directly.
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const double max_logit = logits[ArgMax(logits)];
  const double temperature = params.temperature;
  std::vector<double> weight(vocab);
  std::vector<int32_t> kept;
  kept.reserve(vocab);
  for (int32_t i = 0; i < vocab; ++i) {
    weight[i] = std::exp((static_cast<double>(logits[i]) - max_logit) / temperature);
    if (weight[i] > 0.0 && weight[i] >= params.min_p) kept.push_back(i);
  }
  // Finite logits always keep the argmax (weight 1); anything else is a broken input.
  LATTICE_CHECK_MSG(!kept.empty(), "no samplable token (non-finite logits?)");

  const auto by_weight = [&weight](int32_t a, int32_t b) {
    return weight[a] != weight[b] ? weight[a] > weight[b] : a < b;
  };
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < kept.size()) {
    std::partial_sort(kept.begin(), kept.begin() + params.top_k, kept.end(), by_weight);
    kept.resize(params.top_k);
  } else {
    std::sort(kept.begin(), kept.end(), by_weight);
  }

  // Top-p over the distribution renormalised to the tokens min-p and top-k kept.
  double total = 0.0;
  for (int32_t id : kept) total += weight[id];
  if (params.top_p < 1.0f) {
    const double target = static_cast<double>(params.top_p) * total;
    double mass = 0.0;
    size_t count = 0;
    while (count < kept.size() && mass < target) mass += weight[kept[count++]];
    kept.resize(count);
    total = mass;
  }

  const double u = SampleUniform(params.seed, position) * total;
  double cumulative = 0.0;
  for (int32_t id : kept) {
    cumulative += weight[id];
    if (u < cumulative) return id;
  }
  return kept.back();  // u fell past the last bucket by rounding
}

}  // namespace lattice::cpu
