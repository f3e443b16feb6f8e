// Engine: in-process generation on one rank: the Scheduler decides each step and a
// ModelRunner executes it, until every request has finished. Used by `lattice run`
// without parallelism and by tests; the multi-rank driver is distributed_engine.h.
// One thread.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model.h"
#include "worker/model_runner.h"
#include "worker/scheduler.h"

namespace lattice {

struct EngineOptions {
  KvCacheOptions kv_cache;
  int32_t max_num_batched_tokens = 2048;  // tokens per step
  int32_t max_num_seqs = 256;             // sequences per step
  int64_t max_model_len = 0;              // prompt + output; 0: from the config
};

using EngineStats = SchedulerStats;

// The scheduler options for `model` under `options` with `num_dp` DP ranks.
SchedulerOptions MakeSchedulerOptions(const ModelConfig& config, const EngineOptions& options, int32_t num_dp);

class Engine {
 public:
  Engine(const DecoderModel& model, const EngineOptions& options);
  ~Engine();

  absl::Status Validate(const GenerationRequest& request) const { return scheduler_.Validate(request); }
  // Generates for every request (validated first, all or nothing); results in input order.
  absl::StatusOr<std::vector<GenerationResult>> Generate(const std::vector<GenerationRequest>& requests);

  const EngineStats& stats() const { return scheduler_.stats(); }
  int32_t num_free_blocks() const { return scheduler_.num_free_blocks(0); }

 private:
  std::unique_ptr<Communicator> solo_;
  Scheduler scheduler_;
  ModelRunner runner_;
};

// Checks every request, naming the first bad one ("request 3: ...").
absl::Status ValidateAll(const Scheduler& scheduler, const std::vector<GenerationRequest>& requests);

}  // namespace lattice
