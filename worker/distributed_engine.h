// The multi-rank engine. Rank 0 is the driver: it runs the Scheduler, sends each
// step's plan to every other rank, executes its own share (stage 0 of DP rank 0),
// and collects sampled tokens from the last stage of each DP rank. With pipeline
// parallelism it keeps up to `num_micro_batches` steps in flight, so stage 0 works
// on micro-batch m+1 while later stages work on m. Every other rank follows: receive
// a plan, execute it, send samples back if it samples, until the stop plan.
// The communicators are any backend (threads for tests, gloo between processes).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/rank_layout.h"
#include "worker/engine.h"
#include "worker/model.h"
#include "worker/model_runner.h"

namespace lattice {

// The communicators of one rank (owned elsewhere). Size-1 groups may be solo.
struct RankComms {
  Communicator* world = nullptr;
  Communicator* tp = nullptr;
  Communicator* pp = nullptr;
  Communicator* ep = nullptr;
};

struct DistributedOptions {
  EngineOptions engine;
  int32_t num_micro_batches = 0;   // steps in flight; 0: the PP size
  std::vector<int> pp_layers;      // layers per stage; empty: even split
};

// INVALID_ARGUMENT when the layout cannot shard this model (tp larger than the heads
// or not dividing them, widths not divisible, experts not divisible by ep, ep on a
// dense model, pp larger than the layers, a bad --pp-layers), before any weight loads.
absl::Status ValidateLayoutForModel(const ModelConfig& config, const ParallelConfig& parallel,
                                    const std::vector<int>& pp_layers);

// The shard of the model that `rank` holds.
ModelShard ShardFor(const ModelConfig& config, const RankLayout& layout, int rank,
                    const std::vector<int>& pp_layers);

struct DriverResult {
  std::vector<GenerationResult> results;
  EngineStats stats;
};

// Rank 0. Validates every request first (a bad one stops every rank and is returned).
absl::StatusOr<DriverResult> RunDriver(const DecoderModel& model, const RankLayout& layout, const RankComms& comms,
                                       const DistributedOptions& options,
                                       const std::vector<GenerationRequest>& requests,
                                       std::vector<TraceEvent>* trace = nullptr);

// Every rank but 0, until the driver's stop plan.
absl::Status RunFollower(const DecoderModel& model, const RankLayout& layout, int rank, const RankComms& comms,
                         const DistributedOptions& options, std::vector<TraceEvent>* trace = nullptr);

}  // namespace lattice
