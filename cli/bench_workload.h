// The workload of `lattice bench`: which requests a benchmark sends (prompt token ids,
// output lengths, shared-prefix groups) and when (the arrival schedule). Everything is
// built deterministically from a seed, so two runs with the same flags send the same
// tokens at the same offsets. There is no tokenizer: prompts are random token ids in
// [0, vocab_size) that avoid the model's eos ids. Shared by `bench serve` (model limits
// from GetModelInfo) and `bench offline` (from the model's config).
//
// Datasets (`--dataset-name`, vLLM's names and meanings):
//   random             input and output lengths uniform in [len * (1 - r), len * (1 + r)],
//                      after an optional prefix shared by every prompt;
//   prefix_repetition  a few long prefixes (system prompts), each request one of them plus
//                      its own random suffix;
//   lengths            (input_len, output_len) pairs read from a file, one pair a line,
//                      sampled with replacement: a length distribution from a real trace.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

struct BenchRequest {
  std::vector<int32_t> prompt_ids;
  int32_t output_len = 0;     // sent as max_tokens
  int32_t prefix_group = -1;  // requests of one group share their first tokens; -1: none
};

// What the workload must respect, from the server (GetModelInfo) or the model config.
struct BenchModelLimits {
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;  // prompt + output may not exceed it
  std::vector<int32_t> eos_token_ids;
};

struct BenchWorkloadOptions {
  int num_prompts = 1000;
  uint64_t seed = 0;
  std::string dataset_name = "random";  // random | prefix_repetition | lengths
  std::string dataset_path;             // lengths: the file of "input_len output_len" lines
  int random_input_len = 1024;
  int random_output_len = 128;
  double random_range_ratio = 0.0;  // in [0, 1)
  int random_prefix_len = 0;
  int prefix_repetition_prefix_len = 256;
  int prefix_repetition_suffix_len = 256;
  int prefix_repetition_num_prefixes = 10;
  int prefix_repetition_output_len = 128;
};

// The largest --num-prompts accepted: a workload lives in memory, one request each.
inline constexpr int kMaxBenchPrompts = 1000000;

// --num-prompts, --seed and the --dataset-* / --random-* / --prefix-repetition-* flags.
void AddBenchWorkloadFlags(CLI::App& app, BenchWorkloadOptions& options);

// The checks that need no model: --num-prompts in [1, kMaxBenchPrompts], a known
// --dataset-name, --dataset-path given for `lengths`. INVALID_ARGUMENT naming the flag.
absl::Status CheckBenchWorkloadOptions(const BenchWorkloadOptions& options);

// CheckBenchWorkloadOptions, then INVALID_ARGUMENT naming the flag (or file and line) when a value
// is out of range, a request could exceed max_model_len (the longest one the flags allow, or any
// pair of a lengths file: filter the file rather than have its distribution silently changed), or
// the vocabulary has no id that is not eos; NOT_FOUND when --dataset-path cannot be read.
absl::StatusOr<std::vector<BenchRequest>> BuildBenchWorkload(const BenchWorkloadOptions& options,
                                                             const BenchModelLimits& limits);

// The settings of the chosen dataset, for the result JSON: num_prompts, seed, dataset_name
// and that dataset's own flags under their names (random_input_len, ...).
nlohmann::json BenchWorkloadJson(const BenchWorkloadOptions& options);

// Send offsets in seconds from the start of the run, one per request, non-decreasing.
// `request_rate` in requests/s (infinity: every offset 0); inter-arrival times are
// gamma-distributed with shape `burstiness` and mean 1 / request_rate (burstiness 1 is a
// Poisson process; smaller is burstier). Seeded independently of the prompts, so changing
// the rate does not change what is sent.
std::vector<double> BenchArrivalTimes(int num_requests, double request_rate, double burstiness,
                                      uint64_t seed);

// The seeded random numbers behind both: std::mt19937_64 is fully specified by the
// standard, and the draws below are our own, so a seed means the same workload with any
// standard library (std::*_distribution are implementation-defined).
class BenchRng {
 public:
  explicit BenchRng(uint64_t seed) : engine_(seed) {}
  // Uniform in [lo, hi], inclusive; lo <= hi.
  int64_t UniformInt(int64_t lo, int64_t hi);
  // Uniform in [0, 1).
  double UniformDouble();
  double Normal();
  // Gamma with the given shape (> 0) and scale 1 (Marsaglia and Tsang).
  double Gamma(double shape);

 private:
  std::mt19937_64 engine_;
};

}  // namespace lattice
