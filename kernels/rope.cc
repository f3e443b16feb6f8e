// Rotary frequencies per scaling type (see rope.h).
#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "base/check.h"

namespace lattice {
namespace {

// inv_freq[j] = 1 / base^(2j / dim), rounded like the f32 reference.
std::vector<double> DefaultInvFreq(double base, int64_t dim) {
  std::vector<double> inv(dim / 2);
  for (int64_t j = 0; j < dim / 2; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(dim);
    inv[j] = 1.0 / std::pow(base, static_cast<double>(exponent));
  }
  return inv;
}

double YarnMscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// The dimension index at which a wavelength completes `num_rotations` turns in `max_pos`.
double YarnCorrectionDim(double num_rotations, int64_t dim, double base, double max_pos) {
  return (static_cast<double>(dim) * std::log(max_pos / (num_rotations * 2.0 * std::numbers::pi))) /
         (2.0 * std::log(base));
}

}  // namespace

RopeFrequencies ComputeRopeFrequencies(const RopeScaling& rope, int64_t seq_len) {
  const int64_t dim = rope.rotary_dim;
  LATTICE_CHECK(dim > 0 && dim % 2 == 0);
  RopeFrequencies out;
  std::vector<double> inv;
  if (rope.type == "default") {
    inv = DefaultInvFreq(rope.theta, dim);
  } else if (rope.type == "linear") {
    inv = DefaultInvFreq(rope.theta, dim);
    for (double& f : inv) f /= rope.factor;
  } else if (rope.type == "dynamic") {
    const double max_pos = static_cast<double>(rope.max_position_embeddings);
    const double len = std::max(static_cast<double>(seq_len), max_pos);
    const double base =
        rope.theta * std::pow(rope.factor * len / max_pos - (rope.factor - 1.0),
                              static_cast<double>(dim) / static_cast<double>(dim - 2));
    inv = DefaultInvFreq(base, dim);
  } else if (rope.type == "llama3") {
    inv = DefaultInvFreq(rope.theta, dim);
    const double old_len = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / rope.low_freq_factor;
    const double high_freq_wavelen = old_len / rope.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= rope.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
        f = (1.0 - smooth) * f / rope.factor + smooth * f;
      }
    }
  } else if (rope.type == "yarn") {
    const double factor = rope.factor;
    if (rope.attention_factor) {
      out.attention_scale = static_cast<float>(*rope.attention_factor);
    } else if (rope.mscale && rope.mscale_all_dim && *rope.mscale != 0 && *rope.mscale_all_dim != 0) {
      out.attention_scale =
          static_cast<float>(YarnMscale(factor, *rope.mscale) / YarnMscale(factor, *rope.mscale_all_dim));
    } else {
      out.attention_scale = static_cast<float>(YarnMscale(factor, 1.0));
    }
    const double original = static_cast<double>(rope.original_max_position_embeddings);
    double low = YarnCorrectionDim(rope.beta_fast, dim, rope.theta, original);
    double high = YarnCorrectionDim(rope.beta_slow, dim, rope.theta, original);
    if (rope.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    const std::vector<double> extrapolation = DefaultInvFreq(rope.theta, dim);
    inv.resize(dim / 2);
    for (int64_t j = 0; j < dim / 2; ++j) {
      const double ramp = std::clamp((static_cast<double>(j) - low) / (high - low), 0.0, 1.0);
      const double extrapolation_factor = 1.0 - ramp;
      const double interpolation = extrapolation[j] / factor;
      inv[j] = interpolation * (1.0 - extrapolation_factor) + extrapolation[j] * extrapolation_factor;
    }
  } else {
    LATTICE_CHECK_MSG(false, "unknown rope type %s", rope.type.c_str());
  }
  out.inv_freq.assign(inv.begin(), inv.end());
  return out;
}

}  // namespace lattice
