// ModelRunner: executes one step's chunks on one rank. It builds the rank's
// ForwardBatch from its DP rank's chunks, receives hidden states from the previous
// pipeline stage (or embeds, on the first), runs its layers, sends to the next stage
// (or computes logits, on the last) and, on the last stage's TP rank 0, samples.
// On the CPU it does so itself with a DecoderModel; with a DeviceModel (the GPU) it
// hands the batch and the sampling rows over and the device model does the rest.
// Records a trace event per step for the pipeline tests. One owner thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/cpu/ops.h"
#include "parallel/communicator.h"
#include "worker/device_model.h"
#include "worker/kv_cache.h"
#include "worker/model.h"

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
  // When sampling under penalties, min_tokens or logit_bias: the row's adjustments
  // (cpu::ApplyLogitAdjustments) before Sample. Empty: none (the common case).
  cpu::PenaltyParams penalties;
  std::vector<cpu::LogitAdjustment> adjustments;
};

struct SampledToken {
  int64_t seq_id = 0;
  int32_t token = 0;
  std::vector<std::pair<int32_t, float>> logprobs;  // best first
};

struct RunnerPlacement {
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
  // The device model owns its KV pool; `block_size` must be the pool's.
  ModelRunner(DeviceModel& model, int32_t block_size, int32_t pp_rank);

  // Runs this rank's DP rank's chunks of step `step`. Returns the sampled tokens on
  // the last stage's TP rank 0 (empty elsewhere).
  std::vector<SampledToken> Execute(int64_t step, int32_t micro_batch, const std::vector<ScheduledChunk>& chunks);

  bool samples() const;
  const std::vector<TraceEvent>& trace() const { return trace_; }

 private:
  ForwardBatch BuildBatch(const std::vector<ScheduledChunk>& chunks) const;
  std::vector<SampledToken> ExecuteOnDevice(const ForwardBatch& batch, const std::vector<ScheduledChunk>& chunks);

  const DecoderModel* model_ = nullptr;  // exactly one of model_ and device_
  DeviceModel* device_ = nullptr;
  RunnerPlacement placement_;
  int32_t block_size_;
  int32_t pp_rank_ = 0;
  std::optional<KvCache> kv_cache_;
  std::vector<TraceEvent> trace_;
};

// Tag of the hidden states sent between pipeline stages.
inline constexpr int kTagHiddenStates = 1;

}  // namespace lattice
