// In-process continuous-batching engine (see engine.h).
#include "worker/engine.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"

namespace lattice {

std::string_view FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

int64_t DefaultMaxModelLen(const ModelConfig& config) {
  if (config.rope.type == "dynamic" && config.rope.factor > 1.0) {
    return static_cast<int64_t>(static_cast<double>(config.max_position_embeddings) * config.rope.factor);
  }
  return config.max_position_embeddings;
}

struct Engine::Sequence {
  size_t index = 0;                  // position in the caller's request list
  const GenerationRequest* request = nullptr;
  std::vector<int32_t> tokens;       // prompt then outputs
  int64_t num_computed_tokens = 0;   // tokens whose K/V are in the cache
  std::vector<int32_t> block_table;
  GenerationResult result;
  bool finished = false;
};

Engine::Engine(const DecoderModel& model, const EngineOptions& options)
    : model_(model),
      options_(options),
      max_model_len_(options.max_model_len > 0 ? options.max_model_len : DefaultMaxModelLen(model.config())),
      kv_cache_(model.config(), options.kv_cache),
      allocator_(options.kv_cache.num_blocks) {
  LATTICE_CHECK(options.max_num_batched_tokens > 0 && options.max_num_seqs > 0);
}

absl::Status Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& config = model_.config();
  if (r.prompt_ids.empty()) return absl::InvalidArgumentError("prompt_ids is empty");
  for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_ids[", i, "] = ", r.prompt_ids[i],
                                                     " is outside the vocabulary [0, ",
                                                     config.vocab_size, ")"));
    }
  }
  if (r.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be at least 1, got ", r.max_tokens));
  }
  const cpu::SamplingParams& s = r.sampling;
  if (!(s.temperature >= 0.0f) || !std::isfinite(s.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", s.temperature));
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", s.top_p));
  }
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", s.min_p));
  }
  if (s.top_k < -1) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= -1, got ", s.top_k));
  if (r.num_logprobs < 0 || r.num_logprobs > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs must be in [0, ", config.vocab_size,
                                                   "], got ", r.num_logprobs));
  }
  const int64_t total = static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens;
  if (total > max_model_len_) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", r.prompt_ids.size(), " tokens) plus max_tokens (",
                                                   r.max_tokens, ") is ", total,
                                                   ", over the model's maximum length ", max_model_len_));
  }
  const int32_t blocks = NumBlocksFor(total, kv_cache_.block_size());
  if (blocks > kv_cache_.num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("request needs ", blocks, " KV blocks but the cache has ",
                                                     kv_cache_.num_blocks()));
  }
  return absl::OkStatus();
}

bool Engine::EnsureBlocks(Sequence& seq, int64_t num_tokens) {
  const int32_t needed = NumBlocksFor(num_tokens, kv_cache_.block_size());
  while (static_cast<int32_t>(seq.block_table.size()) < needed) {
    std::optional<int32_t> block = allocator_.Allocate();
    if (!block) return false;
    seq.block_table.push_back(*block);
  }
  return true;
}

void Engine::FreeBlocks(Sequence& seq) {
  allocator_.Free(seq.block_table);
  seq.block_table.clear();
}

absl::StatusOr<std::vector<GenerationResult>> Engine::Generate(
    const std::vector<GenerationRequest>& requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status status = Validate(requests[i]); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("request ", i, ": ", status.message()));
    }
  }
  const ModelConfig& config = model_.config();
  std::vector<std::unique_ptr<Sequence>> sequences;
  std::deque<Sequence*> waiting;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto seq = std::make_unique<Sequence>();
    seq->index = i;
    seq->request = &requests[i];
    seq->tokens = requests[i].prompt_ids;
    seq->result.prompt_ids = requests[i].prompt_ids;
    waiting.push_back(seq.get());
    sequences.push_back(std::move(seq));
  }

  std::vector<Sequence*> running;  // admission order: the last is preempted first
  std::vector<float> logprobs_row(config.vocab_size);
  while (!waiting.empty() || !running.empty()) {
    int64_t budget = options_.max_num_batched_tokens;
    std::vector<std::pair<Sequence*, int64_t>> scheduled;  // sequence, chunk length

    // Running sequences first, oldest first; preempt the newest when blocks run out.
    for (size_t i = 0; i < running.size() && budget > 0;) {
      Sequence* seq = running[i];
      const int64_t chunk = std::min<int64_t>(seq->tokens.size() - seq->num_computed_tokens, budget);
      if (EnsureBlocks(*seq, seq->num_computed_tokens + chunk)) {
        scheduled.emplace_back(seq, chunk);
        budget -= chunk;
        ++i;
        continue;
      }
      Sequence* victim = running.back();
      running.pop_back();
      FreeBlocks(*victim);
      victim->num_computed_tokens = 0;
      waiting.push_front(victim);
      ++stats_.num_preemptions;
      // The victim sits at or after i, so it was not scheduled in this step.
      if (victim == seq) break;
    }
    // Then admit waiting sequences while the budget and the pool allow.
    while (!waiting.empty() && budget > 0 &&
           static_cast<int32_t>(running.size()) < options_.max_num_seqs) {
      Sequence* seq = waiting.front();
      const int64_t chunk = std::min<int64_t>(seq->tokens.size() - seq->num_computed_tokens, budget);
      if (!EnsureBlocks(*seq, seq->num_computed_tokens + chunk)) {
        FreeBlocks(*seq);
        break;
      }
      waiting.pop_front();
      running.push_back(seq);
      scheduled.emplace_back(seq, chunk);
      budget -= chunk;
    }
    // Validate() guarantees the oldest sequence fits the cache alone.
    LATTICE_CHECK_MSG(!scheduled.empty(), "no progress possible: KV cache too small");

    ForwardBatch batch;
    size_t max_blocks = 0;
    for (const auto& [seq, chunk] : scheduled) max_blocks = std::max(max_blocks, seq->block_table.size());
    batch.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
    batch.query_start_loc.push_back(0);
    std::vector<Sequence*> sampling;
    for (const auto& [seq, chunk] : scheduled) {
      for (int64_t p = seq->num_computed_tokens; p < seq->num_computed_tokens + chunk; ++p) {
        batch.token_ids.push_back(seq->tokens[p]);
        batch.positions.push_back(static_cast<int32_t>(p));
        batch.slot_mapping.push_back(SlotFor(seq->block_table, kv_cache_.block_size(), p));
      }
      batch.query_start_loc.push_back(batch.num_tokens());
      batch.seq_lens.push_back(static_cast<int32_t>(seq->num_computed_tokens + chunk));
      batch.block_tables.insert(batch.block_tables.end(), seq->block_table.begin(), seq->block_table.end());
      batch.block_tables.resize(batch.block_tables.size() + max_blocks - seq->block_table.size(), -1);
      if (seq->num_computed_tokens + chunk == static_cast<int64_t>(seq->tokens.size())) {
        batch.logits_indices.push_back(batch.num_tokens() - 1);
        sampling.push_back(seq);
      }
    }
    stats_.max_tokens_in_step = std::max<int64_t>(stats_.max_tokens_in_step, batch.num_tokens());
    ++stats_.num_steps;

    const Tensor logits = model_.Forward(batch, kv_cache_);
    for (const auto& [seq, chunk] : scheduled) seq->num_computed_tokens += chunk;

    for (size_t r = 0; r < sampling.size(); ++r) {
      Sequence* seq = sampling[r];
      const GenerationRequest& request = *seq->request;
      const std::span<const float> row(logits.data<float>() + r * config.vocab_size, config.vocab_size);
      const int64_t position = static_cast<int64_t>(seq->tokens.size());
      const int32_t token = cpu::Sample(row, request.sampling, position);
      if (request.num_logprobs > 0) {
        cpu::LogSoftmax(row, logprobs_row);
        seq->result.logprobs.push_back(cpu::TopK(logprobs_row, request.num_logprobs));
      }
      seq->tokens.push_back(token);
      seq->result.output_ids.push_back(token);
      const bool eos = !request.ignore_eos &&
                       std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), token) !=
                           config.eos_token_ids.end();
      if (eos || static_cast<int32_t>(seq->result.output_ids.size()) >= request.max_tokens) {
        seq->result.finish_reason = eos ? FinishReason::kStop : FinishReason::kLength;
        seq->finished = true;
        FreeBlocks(*seq);
      }
    }
    std::erase_if(running, [](const Sequence* s) { return s->finished; });
  }

  std::vector<GenerationResult> results(sequences.size());
  for (auto& seq : sequences) results[seq->index] = std::move(seq->result);
  return results;
}

}  // namespace lattice
