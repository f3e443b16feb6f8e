// Worker-side sequence state (see sequence_table.h).
#include "worker/sequence_table.h"

#include "absl/strings/str_cat.h"

namespace lattice {

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
