// The continuous-batching scheduler with prefix caching (see scheduler.h).
#include "coordinator/scheduler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace lattice {
namespace {

int32_t NumBlocksFor(int64_t num_tokens, int32_t block_size) {
  return static_cast<int32_t>((num_tokens + block_size - 1) / block_size);
}

// The penalties count the sequence's tokens: the workers then need all of them,
// prefix-cache hits included (the worker's SequenceTable makes the same test).
bool UsesPenalties(const pb::SamplingParams& s) {
  return (s.has_repetition_penalty() && s.repetition_penalty() != 1.0f) || s.presence_penalty() != 0.0f ||
         s.frequency_penalty() != 0.0f;
}

absl::Status CheckSamplingControls(const SequenceRequest& r, int64_t vocab_size) {
  const pb::SamplingParams& s = r.sampling;
  if (s.has_repetition_penalty() && !(s.repetition_penalty() > 0.0f && std::isfinite(s.repetition_penalty()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be finite and > 0, got ", s.repetition_penalty()));
  }
  if (!(s.presence_penalty() >= -2.0f && s.presence_penalty() <= 2.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("presence_penalty must be in [-2, 2], got ", s.presence_penalty()));
  }
  if (!(s.frequency_penalty() >= -2.0f && s.frequency_penalty() <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequency_penalty must be in [-2, 2], got ", s.frequency_penalty()));
  }
  if (s.min_tokens() < 0 || s.min_tokens() > r.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_tokens must be in [0, max_tokens = ", r.max_tokens, "], got ", s.min_tokens()));
  }
  for (const auto& [id, bias] : s.logit_bias()) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias token ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias of token ", id, " must be in [-100, 100], got ", bias));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kNone:
      break;
  }
  return "none";
}

struct Scheduler::Sequence {
  int64_t id = 0;
  int32_t dp_rank = 0;
  SequenceRequest request;
  std::vector<int32_t> tokens;      // prompt then outputs
  int32_t num_outputs = 0;
  int64_t num_computed_tokens = 0;  // tokens whose K/V are (or, in flight, will be) cached
  std::vector<int32_t> block_table;
  int32_t num_registered_blocks = 0;    // leading blocks recorded in the prefix cache
  int32_t num_blocks_sent = 0;          // blocks the workers know of
  bool known_to_workers = false;
  bool admitted_once = false;
  int32_t num_cached_tokens = 0;
  bool in_flight = false;
  bool cancelled = false;
};

struct Scheduler::DpRank {
  DpRank(int32_t num_blocks, int32_t block_size, bool prefix_caching)
      : pool(num_blocks, block_size, prefix_caching) {}
  BlockPool pool;
  std::deque<Sequence*> waiting;
  std::vector<Sequence*> running;  // admission order: the newest is preempted first
};

Scheduler::Scheduler(const SchedulerOptions& options) : options_(options) {
  LATTICE_CHECK(options.num_dp >= 1 && options.num_blocks >= 2 && options.block_size >= 1);
  for (int32_t d = 0; d < options.num_dp; ++d) {
    dp_.push_back(std::make_unique<DpRank>(options.num_blocks, options.block_size, options.enable_prefix_caching));
  }
}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::Validate(const SequenceRequest& r) const {
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
  const pb::SamplingParams& s = r.sampling;
  if (!(s.temperature() >= 0.0f) || !std::isfinite(s.temperature())) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be finite and >= 0, got ", s.temperature()));
  }
  if (!(s.top_p() > 0.0f && s.top_p() <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", s.top_p()));
  }
  if (!(s.min_p() >= 0.0f && s.min_p() <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", s.min_p()));
  }
  if (s.top_k() < -1) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be -1, 0 (off) or positive, got ", s.top_k()));
  }
  if (absl::Status status = CheckSamplingControls(r, options_.vocab_size); !status.ok()) return status;
  if (r.num_logprobs < 0 || r.num_logprobs > options_.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs must be in [0, ", options_.vocab_size, "], got ", r.num_logprobs));
  }
  if (static_cast<int32_t>(r.stop_token_ids.size()) > options_.max_stop_token_ids) {
    return absl::InvalidArgumentError(absl::StrCat("stop_token_ids has ", r.stop_token_ids.size(),
                                                   " ids, more than the limit of ", options_.max_stop_token_ids));
  }
  for (size_t i = 0; i < r.stop_token_ids.size(); ++i) {
    if (r.stop_token_ids[i] < 0 || r.stop_token_ids[i] >= options_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids[", i, "] = ", r.stop_token_ids[i],
                                                     " is outside the vocabulary [0, ", options_.vocab_size, ")"));
    }
  }
  const int64_t total = static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens;
  if (total > options_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", r.prompt_ids.size(), " tokens) plus max_tokens (",
                                                   r.max_tokens, ") is ", total,
                                                   ", over the model's maximum length ", options_.max_model_len));
  }
  const int32_t blocks = NumBlocksFor(total, options_.block_size);
  if (blocks > options_.num_blocks - 1) {
    return absl::ResourceExhaustedError(absl::StrCat("request needs ", blocks, " KV blocks but the cache has ",
                                                     options_.num_blocks - 1));
  }
  return absl::OkStatus();
}

int64_t Scheduler::Add(SequenceRequest request) {
  auto seq = std::make_unique<Sequence>();
  seq->id = next_seq_id_++;
  seq->dp_rank = next_dp_;
  next_dp_ = (next_dp_ + 1) % options_.num_dp;
  seq->tokens = request.prompt_ids;
  seq->request = std::move(request);
  pb::SamplingParams& sampling = seq->request.sampling;
  sampling.clear_min_tokens_stop_ids();
  if (sampling.min_tokens() > 0) {
    if (!seq->request.ignore_eos) {
      for (int32_t eos : options_.eos_token_ids) {
        // A config's eos id past the vocabulary can never be sampled: nothing to hold back.
        if (eos >= 0 && eos < options_.vocab_size) sampling.add_min_tokens_stop_ids(eos);
      }
    }
    const std::vector<int32_t>& stop = seq->request.stop_token_ids;
    sampling.mutable_min_tokens_stop_ids()->Add(stop.begin(), stop.end());
  }
  dp_[seq->dp_rank]->waiting.push_back(seq.get());
  const int64_t id = seq->id;
  sequences_.emplace(id, std::move(seq));
  return id;
}

void Scheduler::FreeSequence(DpRank& dp, Sequence& seq) {
  dp.pool.Free(seq.block_table);
  seq.block_table.clear();
  std::erase(dp.running, &seq);
  std::erase(dp.waiting, &seq);
  if (seq.known_to_workers) dropped_.push_back(seq.id);
}

void Scheduler::Cancel(int64_t seq_id) {
  auto it = sequences_.find(seq_id);
  if (it == sequences_.end()) return;
  Sequence& seq = *it->second;
  if (seq.in_flight) {
    seq.cancelled = true;  // finished off when its step completes
    return;
  }
  FreeSequence(*dp_[seq.dp_rank], seq);
  SequenceUpdate update;
  update.seq_id = seq_id;
  update.finish_reason = FinishReason::kCancelled;
  update.num_cached_tokens = seq.num_cached_tokens;
  idle_cancellations_.push_back(std::move(update));
  sequences_.erase(it);
}

std::vector<SequenceUpdate> Scheduler::TakeIdleCancellations() { return std::move(idle_cancellations_); }

bool Scheduler::EnsureBlocks(DpRank& dp, Sequence& seq, int64_t num_tokens) {
  const int32_t needed = NumBlocksFor(num_tokens, options_.block_size) - static_cast<int32_t>(seq.block_table.size());
  if (needed <= 0) return true;
  std::optional<std::vector<int32_t>> blocks = dp.pool.Allocate(needed);
  if (!blocks) return false;
  seq.block_table.insert(seq.block_table.end(), blocks->begin(), blocks->end());
  return true;
}

void Scheduler::Preempt(DpRank& dp, Sequence& seq) {
  FreeSequence(dp, seq);
  seq.num_computed_tokens = 0;
  seq.num_registered_blocks = 0;
  seq.num_blocks_sent = 0;
  seq.known_to_workers = false;
  dp.waiting.push_front(&seq);
  ++stats_.num_preemptions;
}

// Takes a waiting sequence's longest cached prefix (leaving at least one token to
// compute, whose logits it samples from).
void Scheduler::Admit(DpRank& dp, Sequence& seq) {
  const int32_t max_blocks = static_cast<int32_t>((static_cast<int64_t>(seq.tokens.size()) - 1) / options_.block_size);
  // Verified: a hit's whole token prefix equals this sequence's, whatever the hashes do.
  seq.block_table = dp.pool.GetComputedBlocksVerified(seq.tokens, max_blocks);
  seq.num_registered_blocks = static_cast<int32_t>(seq.block_table.size());
  seq.num_computed_tokens = static_cast<int64_t>(seq.block_table.size()) * options_.block_size;
}

void Scheduler::CacheFullBlocks(DpRank& dp, Sequence& seq) {
  const int32_t bs = options_.block_size;
  const int32_t full = static_cast<int32_t>(
      std::min<int64_t>(seq.num_computed_tokens / bs, static_cast<int64_t>(seq.block_table.size())));
  for (int32_t b = seq.num_registered_blocks; b < full; ++b) {
    dp.pool.CacheFullBlockVerified(seq.block_table[b], b == 0 ? BlockPool::kNoParent : seq.block_table[b - 1],
                                   std::span<const int32_t>(seq.tokens.data() + b * bs, bs));
  }
  seq.num_registered_blocks = std::max(seq.num_registered_blocks, full);
}

void Scheduler::ScheduleDp(DpRank& dp, pb::DpBatch& batch, int64_t& tokens) {
  int64_t budget = options_.max_num_batched_tokens;
  std::vector<std::pair<Sequence*, int64_t>> scheduled;
  auto room = [&] { return budget > 0 && static_cast<int32_t>(scheduled.size()) < options_.max_num_seqs; };

  // Running sequences first, oldest first; when blocks run out, preempt the newest
  // sequence that is not in flight (possibly this one).
  for (size_t i = 0; i < dp.running.size() && room();) {
    Sequence* seq = dp.running[i];
    if (seq->in_flight) {
      ++i;
      continue;
    }
    const int64_t chunk =
        std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->num_computed_tokens, budget);
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
    Preempt(dp, *victim);
  }
  // Then admit waiting sequences while the budget and the pool allow.
  while (!dp.waiting.empty() && room()) {
    Sequence* seq = dp.waiting.front();
    Admit(dp, *seq);
    const int64_t chunk =
        std::min<int64_t>(static_cast<int64_t>(seq->tokens.size()) - seq->num_computed_tokens, budget);
    if (!EnsureBlocks(dp, *seq, seq->num_computed_tokens + chunk)) {
      dp.pool.Free(seq->block_table);
      seq->block_table.clear();
      seq->num_computed_tokens = 0;
      seq->num_registered_blocks = 0;
      break;
    }
    // Only an admission that succeeds counts: a failed one's hits may be evicted before the next.
    if (!seq->admitted_once) {
      seq->num_cached_tokens = static_cast<int32_t>(
          std::min<int64_t>(seq->num_computed_tokens, static_cast<int64_t>(seq->request.prompt_ids.size())));
      seq->admitted_once = true;
    }
    dp.waiting.pop_front();
    dp.running.push_back(seq);
    scheduled.emplace_back(seq, chunk);
    seq->in_flight = true;
    budget -= chunk;
  }

  for (const auto& [seq, chunk] : scheduled) {
    pb::ScheduledSequence* s = batch.add_sequences();
    s->set_seq_id(seq->id);
    s->set_is_new(!seq->known_to_workers);
    s->set_start_position(static_cast<int32_t>(seq->num_computed_tokens));
    s->mutable_token_ids()->Add(seq->tokens.begin() + seq->num_computed_tokens,
                                seq->tokens.begin() + seq->num_computed_tokens + chunk);
    const int32_t first_new_block = seq->known_to_workers ? seq->num_blocks_sent : 0;
    s->mutable_block_ids()->Add(seq->block_table.begin() + first_new_block, seq->block_table.end());
    seq->num_computed_tokens += chunk;
    s->set_sample(seq->num_computed_tokens == static_cast<int64_t>(seq->tokens.size()));
    if (!seq->known_to_workers) {
      *s->mutable_sampling() = seq->request.sampling;
      s->set_num_logprobs(seq->request.num_logprobs);
      s->set_num_prompt_tokens(static_cast<int32_t>(seq->request.prompt_ids.size()));
      if (UsesPenalties(seq->request.sampling)) {
        s->mutable_prefix_token_ids()->Add(seq->tokens.begin(), seq->tokens.begin() + s->start_position());
      }
    }
    seq->known_to_workers = true;
    seq->num_blocks_sent = static_cast<int32_t>(seq->block_table.size());
    tokens += chunk;
  }
}

std::optional<pb::StepRequest> Scheduler::Schedule() {
  pb::StepRequest step;
  int64_t total = 0;
  for (auto& dp : dp_) {
    int64_t tokens = 0;
    ScheduleDp(*dp, *step.add_dp(), tokens);
    stats_.max_tokens_in_step = std::max(stats_.max_tokens_in_step, tokens);
    total += tokens;
  }
  if (total == 0) return std::nullopt;
  step.set_step(next_step_++);
  step.mutable_finished_seq_ids()->Add(dropped_.begin(), dropped_.end());
  dropped_.clear();
  ++num_in_flight_;
  ++stats_.num_steps;
  stats_.num_computed_tokens += total;
  return step;
}

void Scheduler::Finish(Sequence& seq, FinishReason reason, SequenceUpdate& update) {
  update.finish_reason = reason;
  FreeSequence(*dp_[seq.dp_rank], seq);
}

std::vector<SequenceUpdate> Scheduler::Complete(const pb::StepRequest& step,
                                                const std::vector<pb::StepResult>& results) {
  --num_in_flight_;
  absl::flat_hash_map<int64_t, const pb::SampledToken*> sampled;
  for (const pb::StepResult& result : results) {
    for (const pb::SampledToken& token : result.tokens()) sampled[token.seq_id()] = &token;
  }
  std::vector<SequenceUpdate> updates = TakeIdleCancellations();
  for (const pb::DpBatch& batch : step.dp()) {
    for (const pb::ScheduledSequence& s : batch.sequences()) {
      auto it = sequences_.find(s.seq_id());
      if (it == sequences_.end()) continue;
      Sequence& seq = *it->second;
      seq.in_flight = false;
      SequenceUpdate update;
      update.seq_id = seq.id;
      update.num_cached_tokens = seq.num_cached_tokens;
      DpRank& dp = *dp_[seq.dp_rank];
      CacheFullBlocks(dp, seq);  // this step's K/V is written now
      if (seq.cancelled) {
        Finish(seq, FinishReason::kCancelled, update);
        updates.push_back(std::move(update));
        sequences_.erase(it);
        continue;
      }
      const auto token = sampled.find(seq.id);
      if (token == sampled.end()) {
        LATTICE_CHECK(!s.sample());
        continue;  // a prompt chunk that does not end the prompt
      }
      const int32_t id = token->second->token_id();
      seq.tokens.push_back(id);
      ++seq.num_outputs;
      update.token_ids.push_back(id);
      if (seq.request.num_logprobs > 0) {
        TokenLogprobs logprobs;
        for (const pb::TokenLogprob& lp : token->second->top_logprobs()) {
          logprobs.emplace_back(lp.token_id(), lp.logprob());
        }
        update.logprobs.push_back(std::move(logprobs));
      }
      const auto& eos = options_.eos_token_ids;
      const auto& stop = seq.request.stop_token_ids;
      // Before min_tokens nothing but the length stops a sequence (vLLM's check_stop).
      const bool stopped = seq.num_outputs >= seq.request.sampling.min_tokens() &&
                           ((!seq.request.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) ||
                            std::find(stop.begin(), stop.end(), id) != stop.end());
      if (stopped || seq.num_outputs >= seq.request.max_tokens) {
        Finish(seq, stopped ? FinishReason::kStop : FinishReason::kLength, update);
        updates.push_back(std::move(update));
        sequences_.erase(it);
        continue;
      }
      updates.push_back(std::move(update));
    }
  }
  return updates;
}

int32_t Scheduler::num_used_blocks(int dp_rank) const { return dp_[dp_rank]->pool.num_used_blocks(); }

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = stats_;
  s.num_waiting = 0;
  s.num_running = 0;
  for (const auto& dp : dp_) {
    s.num_waiting += static_cast<int32_t>(dp->waiting.size());
    s.num_running += static_cast<int32_t>(dp->running.size());
    s.kv_blocks_total += options_.num_blocks - 1;
    s.kv_blocks_used += dp->pool.num_used_blocks();
    const BlockPoolStats pool = dp->pool.stats();
    s.prefix_cache_queries += pool.prefix_queries;
    s.prefix_cache_hits += pool.prefix_hits;
  }
  return s;
}

}  // namespace lattice
