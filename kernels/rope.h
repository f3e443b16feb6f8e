// Rotary embedding frequencies for each scaling type, as Hugging Face computes them.
// Pure arithmetic shared by the CPU and CUDA backends; ApplyRotary uses the result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lattice {

struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3 | yarn
  double theta = 10000.0;
  int64_t rotary_dim = 0;                      // features rotated per head (even)
  double factor = 1.0;                         // linear, dynamic, llama3, yarn
  int64_t max_position_embeddings = 0;         // dynamic
  int64_t original_max_position_embeddings = 0;  // llama3, yarn (0: max_position_embeddings)
  double low_freq_factor = 1.0;                // llama3
  double high_freq_factor = 4.0;               // llama3
  double beta_fast = 32.0;                     // yarn
  double beta_slow = 1.0;                      // yarn
  std::optional<double> attention_factor;      // yarn
  std::optional<double> mscale;                // yarn
  std::optional<double> mscale_all_dim;        // yarn
  bool truncate = true;                        // yarn
};

struct RopeFrequencies {
  std::vector<float> inv_freq;  // rotary_dim / 2 entries
  float attention_scale = 1.0f;  // multiplies cos and sin (yarn)
};

// The frequencies for a sequence whose longest position in this step is seq_len - 1.
// Only `dynamic` depends on seq_len (NTK base growth once seq_len passes
// max_position_embeddings, recomputed per step as Hugging Face does).
RopeFrequencies ComputeRopeFrequencies(const RopeScaling& rope, int64_t seq_len);

// True when ComputeRopeFrequencies depends on seq_len.
inline bool RopeDependsOnLength(const RopeScaling& rope) { return rope.type == "dynamic"; }

}  // namespace lattice
