// ModelRunner: executes one StepPlan on one rank. It builds the rank's ForwardBatch
// from the plan (its DP rank's chunks), receives hidden states from the previous
// pipeline stage (or embeds, on the first), runs its layers, sends to the next stage
// (or computes logits, on the last) and, on the last stage's TP rank 0, samples.
// Records a trace event per step for the pipeline tests. One owner thread.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"
#include "worker/kv_cache.h"
#include "worker/model.h"
#include "worker/step_plan.h"

namespace lattice {

struct RunnerPlacement {
  int dp_rank = 0;
  Communicator* tp = nullptr;  // the stage's TP group
  Communicator* ep = nullptr;  // the stage's EP group (solo when off)
  Communicator* pp = nullptr;  // this pipeline's stages (rank = stage); null when pp == 1
};

struct TraceEvent {
  int64_t step = 0;
  int32_t micro_batch = 0;
  int32_t stage = 0;
  int64_t begin_ns = 0;  // CLOCK_REALTIME, comparable across processes of one machine
  int64_t end_ns = 0;
  int32_t num_tokens = 0;
};

class ModelRunner {
 public:
  ModelRunner(const DecoderModel& model, const KvCacheOptions& kv_cache, const RunnerPlacement& placement);

  // Runs `plan` on this rank. Returns the sampled tokens on the last stage's TP rank 0
  // (empty elsewhere).
  StepOutput Execute(const StepPlan& plan);

  bool samples() const;
  const std::vector<TraceEvent>& trace() const { return trace_; }

 private:
  ForwardBatch BuildBatch(const std::vector<ScheduledChunk>& chunks) const;

  const DecoderModel& model_;
  RunnerPlacement placement_;
  KvCache kv_cache_;
  std::vector<TraceEvent> trace_;
};

// Tags of the point-to-point messages between ranks.
inline constexpr int kTagHiddenStates = 1;
inline constexpr int kTagPlanSize = 2;
inline constexpr int kTagPlan = 3;
inline constexpr int kTagOutputSize = 4;
inline constexpr int kTagOutput = 5;

}  // namespace lattice
