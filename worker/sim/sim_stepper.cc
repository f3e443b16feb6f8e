// The simulated instance's step (see sim_stepper.h).
#include "worker/sim/sim_stepper.h"

#include <algorithm>
#include <cmath>

namespace lattice::sim {

SimStepper::SimStepper(CostModel cost, int32_t dp_rank, int32_t block_size, int32_t num_blocks,
                       int64_t vocab_size)
    : cost_(std::move(cost)), dp_rank_(dp_rank), vocab_size_(vocab_size) {
  for (int32_t d = 0; d < cost_.num_dp(); ++d) tables_.emplace_back(d, block_size, num_blocks);
  free_at_.assign(cost_.num_stages(), Clock::time_point{});
}

absl::StatusOr<SimStepper::Outcome> SimStepper::Step(const pb::StepRequest& step, Clock::time_point arrival) {
  std::vector<std::vector<SeqWork>> work(tables_.size());
  std::vector<SampledToken> tokens;
  for (size_t d = 0; d < tables_.size(); ++d) {
    absl::StatusOr<std::vector<ScheduledChunk>> chunks = tables_[d].Apply(step);
    if (!chunks.ok()) return chunks.status();
    for (const ScheduledChunk& c : *chunks) {
      const int32_t q = static_cast<int32_t>(c.token_ids.size());
      work[d].push_back({.num_new_tokens = q, .context_len = c.start_position + q, .sample = c.sample});
      if (static_cast<int32_t>(d) != dp_rank_ || !c.sample) continue;
      const int64_t position = c.start_position + q;
      const double u = cpu::SampleUniform(c.sampling.seed, position);
      SampledToken t{.seq_id = c.seq_id,
                     .token = static_cast<int32_t>(std::min<int64_t>(vocab_size_ - 1, u * vocab_size_)),
                     .logprobs = {}};
      for (int32_t i = 0; i < c.num_logprobs; ++i) {
        t.logprobs.emplace_back(static_cast<int32_t>((t.token + i) % vocab_size_), -0.5f - static_cast<float>(i));
      }
      tokens.push_back(std::move(t));
    }
  }
  Outcome out;
  Clock::time_point ready = arrival;
  for (int s = 0; s < cost_.num_stages(); ++s) {
    const StageCost c = cost_.Stage(s, work);
    const Clock::time_point start = std::max(ready, free_at_[s]);
    const Clock::time_point end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c.total()));
    free_at_[s] = end;
    ready = end + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c.send_s));
    out.due = end;
    out.stages.push_back(c);
  }
  out.result = tables_[dp_rank_].MakeResult(step.step(), tokens);
  return out;
}

}  // namespace lattice::sim
