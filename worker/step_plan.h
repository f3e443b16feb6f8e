// StepPlan: what one micro-batch step runs, decided by the scheduler and executed by
// every rank of the instance; StepOutput: the tokens it sampled. Both travel between
// processes as flat int32 arrays (floats bit-cast), so they need no schema library.
// (The serving issue replaces this encoding with the typed StepRequest/StepResult protos.)
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/ops.h"

namespace lattice {

// One sequence's part of a step: tokens [start_position, start_position + size) of it.
struct ScheduledChunk {
  int64_t seq_id = 0;
  int32_t start_position = 0;
  std::vector<int32_t> token_ids;
  std::vector<int32_t> block_table;  // every block the sequence holds after this step
  bool sample = false;               // the chunk ends at the sequence's last token
  cpu::SamplingParams sampling;      // when sampling
  int32_t num_logprobs = 0;
};

struct StepPlan {
  int64_t step = 0;
  int32_t micro_batch = 0;
  bool stop = false;  // no more steps: ranks leave their loop
  std::vector<std::vector<ScheduledChunk>> per_dp;  // [dp rank] -> its chunks

  bool empty() const;
};

struct SampledToken {
  int64_t seq_id = 0;
  int32_t token = 0;
  std::vector<std::pair<int32_t, float>> logprobs;  // best first
};

struct StepOutput {
  int64_t step = 0;
  std::vector<SampledToken> tokens;
};

std::vector<int32_t> EncodeStepPlan(const StepPlan& plan);
absl::StatusOr<StepPlan> DecodeStepPlan(const std::vector<int32_t>& words);
std::vector<int32_t> EncodeStepOutput(const StepOutput& output);
absl::StatusOr<StepOutput> DecodeStepOutput(const std::vector<int32_t>& words);

}  // namespace lattice
