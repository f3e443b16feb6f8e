// SimStepper: what the answering rank of a simulated instance (`--device sim`; the
// last stage's TP rank 0 of each DP rank) does with a StepRequest instead of running
// a model. It applies the step to one SequenceTable per DP rank (so the requests are
// checked as a real worker checks them and every DP rank's batch is known), prices
// each pipeline stage with the CostModel, and advances one clock per stage: stage s
// starts a micro-batch when it has arrived from stage s-1 and stage s has finished
// the previous one, so micro-batches in flight overlap and a single one shows the
// pipeline bubble. The result is due when the last stage finishes. Tokens are drawn
// from (seed, position) as on a real device, uniformly over the vocabulary; logprobs,
// when asked for, are placeholders (the token first, then its neighbours).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "lattice/internal/v1/control.pb.h"
#include "worker/sequence_table.h"
#include "worker/sim/cost_model.h"

namespace lattice::sim {

class SimStepper {
 public:
  using Clock = std::chrono::steady_clock;

  SimStepper(CostModel cost, int32_t dp_rank, int32_t block_size, int32_t num_blocks,
             int64_t vocab_size);

  struct Outcome {
    Clock::time_point due;  // when the last stage finishes this step
    pb::StepResult result;  // this DP rank's tokens
    std::vector<StageCost> stages;
  };
  // INVALID_ARGUMENT when a table rejects the step (as SequenceTable::Apply).
  absl::StatusOr<Outcome> Step(const pb::StepRequest& step, Clock::time_point arrival);

  const CostModel& cost_model() const { return cost_; }

 private:
  CostModel cost_;
  int32_t dp_rank_;
  int64_t vocab_size_;
  std::vector<SequenceTable> tables_;       // one per DP rank
  std::vector<Clock::time_point> free_at_;  // per stage
};

}  // namespace lattice::sim
