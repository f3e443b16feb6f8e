// Engine: in-process generation over a DecoderModel with continuous batching.
// Each step packs decode tokens of running sequences and chunks of prompts under
// one token budget (chunked prefill), allocating KV blocks as sequences grow and
// preempting the most recently admitted sequence (recompute) when blocks run out.
// Sampling is seeded per request and position, so preemption, batch composition
// and chunking never change a request's tokens. Used by `lattice run`; one thread.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/ops.h"
#include "worker/kv_cache.h"
#include "worker/model.h"

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

struct EngineOptions {
  KvCacheOptions kv_cache;
  int32_t max_num_batched_tokens = 2048;  // tokens per step
  int32_t max_num_seqs = 256;             // sequences per step
  int64_t max_model_len = 0;              // prompt + output; 0: from the config
};

struct EngineStats {
  int64_t num_steps = 0;
  int64_t num_preemptions = 0;
  int64_t max_tokens_in_step = 0;
};

class Engine {
 public:
  Engine(const DecoderModel& model, const EngineOptions& options);

  // INVALID_ARGUMENT for an empty prompt, a token id outside the vocabulary, bad
  // sampling values or a length over max_model_len; RESOURCE_EXHAUSTED when the
  // request could not fit the KV cache even alone.
  absl::Status Validate(const GenerationRequest& request) const;

  // Generates for every request (validated first, all or nothing); results in input order.
  absl::StatusOr<std::vector<GenerationResult>> Generate(const std::vector<GenerationRequest>& requests);

  const EngineStats& stats() const { return stats_; }
  int64_t max_model_len() const { return max_model_len_; }
  int32_t num_free_blocks() const { return allocator_.num_free(); }

 private:
  struct Sequence;
  // Blocks for the first `num_tokens` tokens of `seq`; false when the pool ran dry.
  bool EnsureBlocks(Sequence& seq, int64_t num_tokens);
  void FreeBlocks(Sequence& seq);

  const DecoderModel& model_;
  EngineOptions options_;
  int64_t max_model_len_ = 0;
  KvCache kv_cache_;
  BlockAllocator allocator_;
  EngineStats stats_;
};

// Default max_model_len for a config: max_position_embeddings, times the factor for
// rope types that extend the context at run time (dynamic).
int64_t DefaultMaxModelLen(const ModelConfig& config);

}  // namespace lattice
