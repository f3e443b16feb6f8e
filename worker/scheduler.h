// Scheduler: owns every sequence's state and the KV block ids, and decides each
// step. Phase-free: a sequence's num_computed_tokens chases its token count under one
// token budget per step, so prefill, chunked prefill, decode and recompute after
// preemption are one loop. Each DP rank has its own block pool, queues and budget;
// requests are spread over DP ranks round-robin. Up to `num_micro_batches` steps may
// be in flight at once (pipeline parallel); a sequence is never in two of them.
// Tensor-free: it holds block ids, never KV memory. One owner thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "worker/kv_cache.h"
#include "worker/step_plan.h"

namespace lattice {

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  cpu::SamplingParams sampling;
  int32_t max_tokens = 16;
  bool ignore_eos = false;
  int32_t num_logprobs = 0;  // top-k logprobs per output token
};

enum class FinishReason { kLength, kStop };
std::string_view FinishReasonName(FinishReason reason);

using TokenLogprobs = std::vector<std::pair<int32_t, float>>;  // best first

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  std::vector<TokenLogprobs> logprobs;  // one per output token when requested
  FinishReason finish_reason = FinishReason::kLength;
};

struct SchedulerOptions {
  int32_t num_dp = 1;                     // DP ranks, each with its own KV pool
  KvCacheOptions kv_cache;                // per DP rank
  int32_t max_num_batched_tokens = 2048;  // per DP rank per step
  int32_t max_num_seqs = 256;             // sequences per DP rank per step
  int64_t max_model_len = 0;
  int64_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
};

struct SchedulerStats {
  int64_t num_steps = 0;
  int64_t num_preemptions = 0;
  int64_t max_tokens_in_step = 0;  // on one DP rank
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);
  ~Scheduler();

  // INVALID_ARGUMENT for an empty prompt, a token id outside the vocabulary, bad
  // sampling values or a length over max_model_len; RESOURCE_EXHAUSTED when the
  // request could not fit a DP rank's KV cache even alone.
  absl::Status Validate(const GenerationRequest& request) const;
  // Queues validated requests; their results come back in this order.
  void Add(const std::vector<GenerationRequest>& requests);

  bool HasUnfinished() const;
  // The next step over sequences not in flight; empty when none can run now.
  StepPlan Schedule();
  // Applies the tokens sampled by `plan` (which must be in flight).
  void Complete(const StepPlan& plan, const std::vector<SampledToken>& tokens);

  std::vector<GenerationResult> TakeResults();
  const SchedulerStats& stats() const { return stats_; }
  int32_t num_free_blocks(int dp_rank) const;
  int32_t num_in_flight() const { return num_in_flight_; }

 private:
  struct Sequence;
  struct DpRank;
  bool EnsureBlocks(DpRank& dp, Sequence& seq, int64_t num_tokens);
  void Preempt(DpRank& dp, Sequence& seq);
  std::vector<ScheduledChunk> ScheduleDp(DpRank& dp);

  SchedulerOptions options_;
  std::vector<std::unique_ptr<Sequence>> sequences_;  // index = seq id
  std::vector<std::unique_ptr<DpRank>> dp_;
  int64_t next_step_ = 0;
  int32_t num_in_flight_ = 0;
  int64_t num_unfinished_ = 0;
  SchedulerStats stats_;
};

// Default max_model_len for a config: max_position_embeddings, times the factor for
// rope types that extend the context at run time (dynamic).
int64_t DefaultMaxModelLen(const ModelConfig& config);

}  // namespace lattice
