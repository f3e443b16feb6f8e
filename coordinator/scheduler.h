// Scheduler: owns every sequence's state and the KV block ids of one instance, and
// decides each step. Phase-free: a sequence's num_computed_tokens chases its token
// count under one token budget per DP rank per step, so prefill, chunked prefill,
// decode, prefix-cache hits and recompute after preemption are one loop. Each DP
// rank has its own BlockPool (with prefix caching), queues and budget; sequences go
// to DP ranks round-robin. Up to `num_micro_batches` steps may be in flight; a
// sequence is in at most one of them. Steps are StepRequest protos (new sequences in
// full, running ones as diffs); results come back as StepResult protos.
// Tensor-free. One owner thread (the instance's scheduler thread).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "coordinator/block_pool.h"
#include "lattice/internal/v1/control.pb.h"

namespace lattice {

namespace pb = ::lattice::internal::v1;

struct SequenceRequest {
  std::vector<int32_t> prompt_ids;
  int32_t max_tokens = 16;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  int32_t num_logprobs = 0;
  pb::SamplingParams sampling;  // seed resolved by the caller
};

enum class FinishReason { kNone, kLength, kStop, kCancelled };
std::string_view FinishReasonName(FinishReason reason);

using TokenLogprobs = std::vector<std::pair<int32_t, float>>;  // best first

// What a completed step did to one sequence.
struct SequenceUpdate {
  int64_t seq_id = 0;
  std::vector<int32_t> token_ids;  // appended by this step (one, or none when cancelled)
  std::vector<TokenLogprobs> logprobs;
  FinishReason finish_reason = FinishReason::kNone;  // kNone: still running
  int32_t num_cached_tokens = 0;  // prompt tokens that came from the prefix cache
};

struct SchedulerOptions {
  int32_t num_dp = 1;
  int32_t num_blocks = 0;          // per DP rank, including the null block
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  int32_t max_num_batched_tokens = 2048;  // per DP rank per step
  int32_t max_num_seqs = 256;             // sequences per DP rank per step
  int64_t max_model_len = 0;
  int64_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
  int32_t max_stop_token_ids = 64;
};

struct SchedulerStats {
  int64_t num_steps = 0;
  int64_t num_preemptions = 0;
  int64_t max_tokens_in_step = 0;  // on one DP rank
  int64_t num_computed_tokens = 0;  // tokens run through the model, all steps
  int32_t num_waiting = 0;
  int32_t num_running = 0;
  int32_t kv_blocks_total = 0;  // usable, all DP ranks
  int32_t kv_blocks_used = 0;
  int64_t prefix_cache_queries = 0;
  int64_t prefix_cache_hits = 0;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);
  ~Scheduler();

  // INVALID_ARGUMENT naming the field: empty prompt, a token id outside the vocabulary,
  // bad sampling values, max_tokens < 1, too many stop ids, a length over
  // max_model_len; RESOURCE_EXHAUSTED when the request could not fit a DP rank's KV
  // cache even alone.
  absl::Status Validate(const SequenceRequest& request) const;
  // Queues a validated request; returns its sequence id.
  int64_t Add(SequenceRequest request);
  // Stops a sequence: its blocks are freed now, or when its in-flight step completes.
  // The cancellation is reported by that Complete (or the next one) as kCancelled.
  void Cancel(int64_t seq_id);

  bool HasUnfinished() const { return !sequences_.empty(); }
  // The next step over sequences not in flight; nullopt when none can run now.
  std::optional<pb::StepRequest> Schedule();
  // Applies a step's results (one StepResult per DP rank that sampled) and returns
  // what happened to each of its sequences, plus cancellations of idle sequences.
  std::vector<SequenceUpdate> Complete(const pb::StepRequest& step, const std::vector<pb::StepResult>& results);
  // Cancellations of sequences not in flight, reported without a step.
  std::vector<SequenceUpdate> TakeIdleCancellations();

  int32_t num_in_flight() const { return num_in_flight_; }
  SchedulerStats stats() const;
  int32_t num_used_blocks(int dp_rank) const;

 private:
  struct Sequence;
  struct DpRank;
  bool EnsureBlocks(DpRank& dp, Sequence& seq, int64_t num_tokens);
  void FreeSequence(DpRank& dp, Sequence& seq);
  void Preempt(DpRank& dp, Sequence& seq);
  void Admit(DpRank& dp, Sequence& seq);
  void CacheFullBlocks(DpRank& dp, Sequence& seq);
  void ScheduleDp(DpRank& dp, pb::DpBatch& batch, int64_t& tokens);
  void Finish(Sequence& seq, FinishReason reason, SequenceUpdate& update);

  SchedulerOptions options_;
  absl::flat_hash_map<int64_t, std::unique_ptr<Sequence>> sequences_;
  std::vector<std::unique_ptr<DpRank>> dp_;
  std::vector<int64_t> dropped_;  // seq ids the workers may forget, sent with the next step
  std::vector<SequenceUpdate> idle_cancellations_;
  int64_t next_seq_id_ = 0;
  int64_t next_step_ = 0;
  int32_t next_dp_ = 0;
  int32_t num_in_flight_ = 0;
  SchedulerStats stats_;
};

}  // namespace lattice
