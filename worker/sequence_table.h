// SequenceTable: what a worker remembers of the sequences of its DP rank between
// steps (block table, sampling parameters and, for the penalties, min_tokens and
// logit_bias, the sequence's token counts), so that step requests can carry running
// sequences as diffs. It turns a StepRequest into the ModelRunner's chunks and the
// runner's samples into a StepResult. One owner thread (the worker's step loop).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "lattice/internal/v1/control.pb.h"
#include "worker/model_runner.h"

namespace lattice {

namespace pb = ::lattice::internal::v1;

class SequenceTable {
 public:
  SequenceTable(int32_t dp_rank, int32_t block_size, int32_t num_blocks)
      : dp_rank_(dp_rank), block_size_(block_size), num_blocks_(num_blocks) {}

  // Forgets the step's finished sequences, applies its diffs for this DP rank and
  // returns the full chunks. INVALID_ARGUMENT for a diff of an unknown sequence, a
  // block id outside the cache or tokens beyond the sequence's blocks (the
  // coordinator and the worker disagree): checked here so the kernels never see it.
  absl::StatusOr<std::vector<ScheduledChunk>> Apply(const pb::StepRequest& step);

  pb::StepResult MakeResult(int64_t step, const std::vector<SampledToken>& tokens) const;
  size_t size() const { return sequences_.size(); }

 private:
  // The sequence-dependent sampling controls of one sequence: one adjustment entry per
  // token they touch, kept up to date as tokens arrive (a step costs its new tokens).
  // A sequence sent new again (after preemption) rebuilds them from its tokens.
  struct Controls {
    cpu::PenaltyParams penalties;
    bool counts_tokens = false;  // the penalties are on: every token is counted
    int32_t min_tokens = 0;
    int32_t num_prompt_tokens = 0;
    int64_t num_counted = 0;  // tokens [0, num_counted) are in `entries`
    std::vector<cpu::LogitAdjustment> entries;
    absl::flat_hash_map<int32_t, int32_t> entry_of;  // token -> index in entries
    std::vector<int32_t> stop_entries;                // masked until min_tokens are out
    cpu::LogitAdjustment& Entry(int32_t token);
    void Count(int64_t position, int32_t token);
    // Counts the chunk's tokens (they must continue the counted ones) and, when it
    // samples, gives it the row's adjustments as of its last token.
    absl::Status Advance(int64_t step, int64_t seq_id, ScheduledChunk& chunk);
  };
  struct State {
    std::vector<int32_t> block_table;
    cpu::SamplingParams sampling;
    int32_t num_logprobs = 0;
    std::unique_ptr<Controls> controls;  // null: none in use (the common case)
  };
  static std::unique_ptr<Controls> MakeControls(const pb::ScheduledSequence& s);
  int32_t dp_rank_;
  int32_t block_size_;
  int32_t num_blocks_;
  absl::flat_hash_map<int64_t, State> sequences_;
};

}  // namespace lattice
