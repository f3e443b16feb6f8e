// The continuous-batching scheduler (see scheduler.h).
#include "worker/scheduler.h"

#include <algorithm>
#include <cmath>
#include <optional>

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

struct Scheduler::Sequence {
  int64_t id = 0;
  int32_t dp_rank = 0;
  GenerationRequest request;
  std::vector<int32_t> tokens;      // prompt then outputs
  int64_t num_computed_tokens = 0;  // tokens whose K/V are (or will be, in flight) cached
  std::vector<int32_t> block_table;
  GenerationResult result;
  bool finished = false;
  bool in_flight = false;
};

struct Scheduler::DpRank {
  explicit DpRank(int32_t num_blocks) : allocator(num_blocks) {}
  BlockAllocator allocator;
  std::deque<Sequence*> waiting;
  std::vector<Sequence*> running;  // admission order: the newest is preempted first
};

Scheduler::Scheduler(const SchedulerOptions& options) : options_(options) {
  LATTICE_CHECK(options.num_dp >= 1 && options.max_num_batched_tokens > 0 && options.max_num_seqs > 0);
  for (int32_t d = 0; d < options.num_dp; ++d) dp_.push_back(std::make_unique<DpRank>(options.kv_cache.num_blocks));
}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::Validate(const GenerationRequest& r) const {
  if (r.prompt_ids.empty()) return absl::InvalidArgumentError("prompt_ids is empty");
  for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= options_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_ids[", i, "] = ", r.prompt_ids[i],
                                                     " is outside the vocabulary [0, ", options_.vocab_size, ")"));
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
  if (r.num_logprobs < 0 || r.num_logprobs > options_.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs must be in [0, ", options_.vocab_size, "], got ", r.num_logprobs));
  }
  const int64_t total = static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens;
  if (total > options_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", r.prompt_ids.size(), " tokens) plus max_tokens (",
                                                   r.max_tokens, ") is ", total, ", over the model's maximum length ",
                                                   options_.max_model_len));
  }
  const int32_t blocks = NumBlocksFor(total, options_.kv_cache.block_size);
  if (blocks > options_.kv_cache.num_blocks) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request needs ", blocks, " KV blocks but the cache has ", options_.kv_cache.num_blocks));
  }
  return absl::OkStatus();
}

void Scheduler::Add(const std::vector<GenerationRequest>& requests) {
  for (const GenerationRequest& request : requests) {
    auto seq = std::make_unique<Sequence>();
    seq->id = static_cast<int64_t>(sequences_.size());
    seq->dp_rank = static_cast<int32_t>(seq->id % options_.num_dp);
    seq->request = request;
    seq->tokens = request.prompt_ids;
    seq->result.prompt_ids = request.prompt_ids;
    dp_[seq->dp_rank]->waiting.push_back(seq.get());
    sequences_.push_back(std::move(seq));
    ++num_unfinished_;
  }
}

bool Scheduler::HasUnfinished() const { return num_unfinished_ > 0; }

int32_t Scheduler::num_free_blocks(int dp_rank) const { return dp_[dp_rank]->allocator.num_free(); }

bool Scheduler::EnsureBlocks(DpRank& dp, Sequence& seq, int64_t num_tokens) {
  const int32_t needed = NumBlocksFor(num_tokens, options_.kv_cache.block_size);
  while (static_cast<int32_t>(seq.block_table.size()) < needed) {
    std::optional<int32_t> block = dp.allocator.Allocate();
    if (!block) return false;
    seq.block_table.push_back(*block);
  }
  return true;
}

void Scheduler::Preempt(DpRank& dp, Sequence& seq) {
  dp.allocator.Free(seq.block_table);
  seq.block_table.clear();
  seq.num_computed_tokens = 0;
  std::erase(dp.running, &seq);
  dp.waiting.push_front(&seq);
  ++stats_.num_preemptions;
}

std::vector<ScheduledChunk> Scheduler::ScheduleDp(DpRank& dp) {
  int64_t budget = options_.max_num_batched_tokens;
  std::vector<std::pair<Sequence*, int64_t>> scheduled;  // sequence, chunk length

  // Running sequences first, oldest first. When blocks run out, preempt the newest
  // sequence that is not in flight (possibly this one).
  for (size_t i = 0; i < dp.running.size() && budget > 0 &&
                     static_cast<int32_t>(scheduled.size()) < options_.max_num_seqs;) {
    Sequence* seq = dp.running[i];
    if (seq->in_flight) {
      ++i;
      continue;
    }
    const int64_t chunk = std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->num_computed_tokens, budget);
    if (EnsureBlocks(dp, *seq, seq->num_computed_tokens + chunk)) {
      scheduled.emplace_back(seq, chunk);
      seq->in_flight = true;
      budget -= chunk;
      ++i;
      continue;
    }
    Sequence* victim = nullptr;
    for (auto it = dp.running.rbegin(); it != dp.running.rend(); ++it) {
      if (!(*it)->in_flight || *it == seq) {
        victim = *it;
        break;
      }
    }
    LATTICE_CHECK(victim != nullptr);
    Preempt(dp, *victim);
    if (victim == seq) continue;  // dp.running[i] is now the next sequence
  }
  // Then admit waiting sequences while the budget and the pool allow.
  while (!dp.waiting.empty() && budget > 0 && static_cast<int32_t>(scheduled.size()) < options_.max_num_seqs) {
    Sequence* seq = dp.waiting.front();
    const int64_t chunk = std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->num_computed_tokens, budget);
    if (!EnsureBlocks(dp, *seq, seq->num_computed_tokens + chunk)) {
      dp.allocator.Free(seq->block_table);
      seq->block_table.clear();
      break;
    }
    dp.waiting.pop_front();
    dp.running.push_back(seq);
    scheduled.emplace_back(seq, chunk);
    seq->in_flight = true;
    budget -= chunk;
  }

  std::vector<ScheduledChunk> chunks;
  int64_t tokens = 0;
  for (const auto& [seq, chunk] : scheduled) {
    ScheduledChunk c;
    c.seq_id = seq->id;
    c.start_position = static_cast<int32_t>(seq->num_computed_tokens);
    c.token_ids.assign(seq->tokens.begin() + seq->num_computed_tokens,
                       seq->tokens.begin() + seq->num_computed_tokens + chunk);
    c.block_table = seq->block_table;
    seq->num_computed_tokens += chunk;
    c.sample = seq->num_computed_tokens == static_cast<int64_t>(seq->tokens.size());
    c.sampling = seq->request.sampling;
    c.num_logprobs = seq->request.num_logprobs;
    tokens += chunk;
    chunks.push_back(std::move(c));
  }
  stats_.max_tokens_in_step = std::max(stats_.max_tokens_in_step, tokens);
  return chunks;
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  plan.per_dp.resize(options_.num_dp);
  for (int32_t d = 0; d < options_.num_dp; ++d) plan.per_dp[d] = ScheduleDp(*dp_[d]);
  if (plan.empty()) return plan;
  plan.step = next_step_++;
  ++num_in_flight_;
  ++stats_.num_steps;
  return plan;
}

void Scheduler::Complete(const StepPlan& plan, const std::vector<SampledToken>& tokens) {
  --num_in_flight_;
  for (const auto& chunks : plan.per_dp) {
    for (const ScheduledChunk& c : chunks) sequences_[c.seq_id]->in_flight = false;
  }
  for (const SampledToken& t : tokens) {
    Sequence& seq = *sequences_[t.seq_id];
    LATTICE_CHECK(!seq.finished);
    const GenerationRequest& request = seq.request;
    if (request.num_logprobs > 0) seq.result.logprobs.push_back(t.logprobs);
    seq.tokens.push_back(t.token);
    seq.result.output_ids.push_back(t.token);
    const auto& eos = options_.eos_token_ids;
    const bool stop = !request.ignore_eos && std::find(eos.begin(), eos.end(), t.token) != eos.end();
    if (stop || static_cast<int32_t>(seq.result.output_ids.size()) >= request.max_tokens) {
      seq.result.finish_reason = stop ? FinishReason::kStop : FinishReason::kLength;
      seq.finished = true;
      DpRank& dp = *dp_[seq.dp_rank];
      dp.allocator.Free(seq.block_table);
      seq.block_table.clear();
      std::erase(dp.running, &seq);
      --num_unfinished_;
    }
  }
}

std::vector<GenerationResult> Scheduler::TakeResults() {
  std::vector<GenerationResult> results;
  results.reserve(sequences_.size());
  for (auto& seq : sequences_) results.push_back(std::move(seq->result));
  sequences_.clear();
  return results;
}

}  // namespace lattice
