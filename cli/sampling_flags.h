// The sampling-control flags `lattice run` and `lattice generate` share (vLLM's
// penalties, min_tokens and logit_bias), so that both accept the same text and fill
// their requests alike. Range checks are the scheduler's (one place, naming the field).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

struct SamplingControlFlags {
  std::optional<float> repetition_penalty;  // unset: 1 (off)
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int min_tokens = 0;
  std::string logit_bias;  // ID:BIAS[,ID:BIAS...]; empty: none
};

void AddSamplingControlFlags(CLI::App& app, SamplingControlFlags& flags);

// Comma-separated ID:BIAS pairs (spaces around a part allowed). A malformed part or a
// repeated id is INVALID_ARGUMENT naming `flag` and the part.
absl::StatusOr<std::vector<std::pair<int32_t, float>>> ParseLogitBias(const std::string& text, const char* flag);

// Sets the controls on a request's sampling parameters: lattice.v1.SamplingParams or
// the internal one (the fields are named alike).
template <typename Params>
absl::Status SetSamplingControls(const SamplingControlFlags& flags, Params& params) {
  std::vector<std::pair<int32_t, float>> bias;
  if (!flags.logit_bias.empty()) {
    absl::StatusOr<std::vector<std::pair<int32_t, float>>> parsed = ParseLogitBias(flags.logit_bias, "--logit-bias");
    if (!parsed.ok()) return parsed.status();
    bias = *std::move(parsed);
  }
  if (flags.repetition_penalty.has_value()) params.set_repetition_penalty(*flags.repetition_penalty);
  params.set_presence_penalty(flags.presence_penalty);
  params.set_frequency_penalty(flags.frequency_penalty);
  params.set_min_tokens(flags.min_tokens);
  for (const auto& [id, value] : bias) (*params.mutable_logit_bias())[id] = value;
  return absl::OkStatus();
}

}  // namespace lattice
