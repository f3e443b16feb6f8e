// Worker-side sequence state (see sequence_table.h).
#include "worker/sequence_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lattice {

cpu::LogitAdjustment& SequenceTable::Controls::Entry(int32_t token) {
  const auto [it, inserted] = entry_of.try_emplace(token, static_cast<int32_t>(entries.size()));
  if (inserted) entries.push_back({.token = token});
  return entries[it->second];
}

void SequenceTable::Controls::Count(int64_t position, int32_t token) {
  cpu::LogitAdjustment& e = Entry(token);
  if (position < num_prompt_tokens) {
    e.in_prompt = true;
  } else {
    ++e.output_count;
  }
}

std::unique_ptr<SequenceTable::Controls> SequenceTable::MakeControls(const pb::ScheduledSequence& s) {
  const pb::SamplingParams& p = s.sampling();
  auto c = std::make_unique<Controls>();
  c->penalties = {p.has_repetition_penalty() ? p.repetition_penalty() : 1.0f, p.presence_penalty(),
                  p.frequency_penalty()};
  // The scheduler's test for sending prefix tokens (UsesPenalties) is the same.
  c->counts_tokens = c->penalties.repetition_penalty != 1.0f || c->penalties.presence_penalty != 0.0f ||
                     c->penalties.frequency_penalty != 0.0f;
  c->min_tokens = p.min_tokens();
  c->num_prompt_tokens = s.num_prompt_tokens();
  for (const auto& [token, bias] : p.logit_bias()) c->Entry(token).bias = bias;
  if (c->min_tokens > 0) {
    std::vector<int32_t> stops(p.min_tokens_stop_ids().begin(), p.min_tokens_stop_ids().end());
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
    for (int32_t token : stops) {
      c->Entry(token);
      c->stop_entries.push_back(c->entry_of.at(token));
    }
  }
  if (!c->counts_tokens && c->entries.empty()) return nullptr;
  return c;
}

absl::Status SequenceTable::Controls::Advance(int64_t step, int64_t seq_id, ScheduledChunk& chunk) {
  const int64_t end = chunk.start_position + static_cast<int64_t>(chunk.token_ids.size());
  if (counts_tokens) {
    if (chunk.start_position != num_counted) {
      return absl::InvalidArgumentError(absl::StrCat("step ", step, ": sequence ", seq_id, " continues at ",
                                                     chunk.start_position, " but the worker counted ", num_counted,
                                                     " of its tokens"));
    }
    for (size_t i = 0; i < chunk.token_ids.size(); ++i) Count(chunk.start_position + i, chunk.token_ids[i]);
    num_counted = end;
  }
  if (!chunk.sample) return absl::OkStatus();
  const bool below_min_tokens = end - num_prompt_tokens < min_tokens;
  for (int32_t index : stop_entries) entries[index].masked = below_min_tokens;
  chunk.penalties = penalties;
  for (const cpu::LogitAdjustment& e : entries) {
    if (e.masked || e.bias != 0.0f || e.in_prompt || e.output_count > 0) chunk.adjustments.push_back(e);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ScheduledChunk>> SequenceTable::Apply(const pb::StepRequest& step) {
  for (int64_t id : step.finished_seq_ids()) sequences_.erase(id);
  std::vector<ScheduledChunk> chunks;
  if (dp_rank_ >= step.dp_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", step.step(), " has ", step.dp_size(), " DP batches; this worker is DP rank ", dp_rank_));
  }
  for (const pb::ScheduledSequence& s : step.dp(dp_rank_).sequences()) {
    if (s.is_new()) {
      State state;
      state.sampling = {s.sampling().temperature(), s.sampling().top_k(), s.sampling().top_p(), s.sampling().min_p(),
                        s.sampling().seed()};
      state.num_logprobs = s.num_logprobs();
      state.controls = MakeControls(s);
      if (state.controls && state.controls->counts_tokens) {
        if (s.prefix_token_ids_size() != s.start_position()) {
          return absl::InvalidArgumentError(absl::StrCat("step ", step.step(), ": new sequence ", s.seq_id(),
                                                         " starts at ", s.start_position(), " but has ",
                                                         s.prefix_token_ids_size(), " prefix tokens"));
        }
        for (int32_t i = 0; i < s.prefix_token_ids_size(); ++i) state.controls->Count(i, s.prefix_token_ids(i));
        state.controls->num_counted = s.start_position();
      }
      // A sequence may come back new after preemption: its old state is stale.
      sequences_.insert_or_assign(s.seq_id(), std::move(state));
    }
    auto it = sequences_.find(s.seq_id());
    if (it == sequences_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", step.step(), " continues sequence ", s.seq_id(), ", which this worker does not hold"));
    }
    State& state = it->second;
    for (int32_t block : s.block_ids()) {
      if (block < 0 || block >= num_blocks_) {
        return absl::InvalidArgumentError(absl::StrCat("step ", step.step(), ": sequence ", s.seq_id(), " block ",
                                                       block, " is outside the cache [0, ", num_blocks_, ")"));
      }
    }
    state.block_table.insert(state.block_table.end(), s.block_ids().begin(), s.block_ids().end());
    ScheduledChunk chunk;
    chunk.seq_id = s.seq_id();
    chunk.start_position = s.start_position();
    chunk.token_ids.assign(s.token_ids().begin(), s.token_ids().end());
    chunk.block_table = state.block_table;
    chunk.sample = s.sample();
    chunk.sampling = state.sampling;
    chunk.num_logprobs = state.num_logprobs;
    const int64_t end = static_cast<int64_t>(chunk.start_position) + static_cast<int64_t>(chunk.token_ids.size());
    if (chunk.token_ids.empty() || chunk.start_position < 0 ||
        end > static_cast<int64_t>(chunk.block_table.size()) * block_size_) {
      return absl::InvalidArgumentError(absl::StrCat("step ", step.step(), ": sequence ", s.seq_id(), " has tokens [",
                                                     chunk.start_position, ", ", end, ") but ",
                                                     chunk.block_table.size(), " blocks of ", block_size_));
    }
    if (state.controls) {
      if (absl::Status status = state.controls->Advance(step.step(), s.seq_id(), chunk); !status.ok()) return status;
    }
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

pb::StepResult SequenceTable::MakeResult(int64_t step, const std::vector<SampledToken>& tokens) const {
  pb::StepResult result;
  result.set_step(step);
  result.set_dp_rank(dp_rank_);
  for (const SampledToken& t : tokens) {
    pb::SampledToken* out = result.add_tokens();
    out->set_seq_id(t.seq_id);
    out->set_token_id(t.token);
    for (const auto& [id, logprob] : t.logprobs) {
      pb::TokenLogprob* lp = out->add_top_logprobs();
      lp->set_token_id(id);
      lp->set_logprob(logprob);
    }
  }
  return result;
}

}  // namespace lattice
