// Fake workers for the Scheduler tests (vLLM-style: CPU only, fabricated step results).
// The harness applies every StepRequest the way a worker's SequenceTable does (finished
// ids first, then new sequences in full and running ones as diffs), answers each
// sampled sequence with a token it chooses, and after every Schedule, Complete and
// Cancel checks the scheduler's token and block accounting against what it saw:
// positions, chunk tokens, block tables rebuilt from the diffs, exclusive ownership of
// every block written, prefix sharing only of identical computed prefixes, and the
// pool's used-block count.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "coordinator/scheduler.h"

namespace lattice::scheduler_testing {

constexpr int32_t kEos = 2;
constexpr int64_t kVocab = 1000;

// A request that passes Validate (the proto's default top_p of 0 would not).
inline SequenceRequest MakeRequest(std::vector<int32_t> prompt, int32_t max_tokens,
                                   bool ignore_eos = false) {
  SequenceRequest r;
  r.prompt_ids = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = ignore_eos;
  r.sampling.set_top_p(1.0f);
  r.sampling.set_top_k(-1);
  return r;
}

// `n` prompt tokens from `first` on (never the eos id).
inline std::vector<int32_t> Prompt(int32_t n, int32_t first = 100) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < n; ++i) p.push_back(10 + (first + i) % 900);
  return p;
}

inline SchedulerOptions SmallOptions(int32_t block_size, int32_t num_blocks, int32_t budget) {
  SchedulerOptions o;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.max_num_batched_tokens = budget;
  o.max_model_len = 4096;
  o.vocab_size = kVocab;
  o.eos_token_ids = {kEos};
  return o;
}

// (seq_id, number of tokens) of each sequence of one DP rank's batch, in order.
inline std::vector<std::pair<int64_t, int>> Chunks(const pb::StepRequest& step, int dp = 0) {
  std::vector<std::pair<int64_t, int>> out;
  for (const pb::ScheduledSequence& s : step.dp(dp).sequences())
    out.emplace_back(s.seq_id(), s.token_ids_size());
  return out;
}

inline const pb::ScheduledSequence* Find(const pb::StepRequest& step, int64_t seq_id) {
  for (const pb::DpBatch& batch : step.dp())
    for (const pb::ScheduledSequence& s : batch.sequences())
      if (s.seq_id() == seq_id) return &s;
  return nullptr;
}

class SchedulerHarness {
 public:
  using TokenFn = std::function<int32_t(int64_t seq_id, int32_t output_index)>;

  explicit SchedulerHarness(const SchedulerOptions& options)
      : options_(options), scheduler_(options), workers_(options.num_dp) {}

  Scheduler& scheduler() { return scheduler_; }
  void set_token_fn(TokenFn fn) { token_fn_ = std::move(fn); }

  int64_t Add(SequenceRequest request) {
    EXPECT_TRUE(scheduler_.Validate(request).ok()) << scheduler_.Validate(request);
    Record record;
    record.dp_rank = static_cast<int32_t>(num_added_++ % options_.num_dp);
    record.tokens = request.prompt_ids;
    record.request = request;
    const int64_t id = scheduler_.Add(std::move(request));
    EXPECT_EQ(records_.count(id), 0u);
    records_[id] = std::move(record);
    return id;
  }

  // Schedules a step, applies it on the fake workers and checks it; it stays in flight.
  std::optional<pb::StepRequest> Schedule();
  // Completes the oldest step in flight with fabricated tokens.
  std::vector<SequenceUpdate> Complete();
  void Cancel(int64_t seq_id);
  std::vector<SequenceUpdate> TakeIdleCancellations() {
    std::vector<SequenceUpdate> updates = scheduler_.TakeIdleCancellations();
    for (const SequenceUpdate& u : updates) Process(u, nullptr);
    CheckBlocks();
    return updates;
  }
  // Keeps up to `max_in_flight` steps in flight until every sequence has finished.
  void RunToCompletion(int max_in_flight = 1, int max_steps = 100000) {
    for (int n = 0; scheduler_.HasUnfinished() && n < max_steps && !HasFailure(); ++n) {
      while (static_cast<int>(in_flight_.size()) < max_in_flight && Schedule()) {
      }
      ASSERT_FALSE(in_flight_.empty()) << "no step possible with unfinished sequences";
      Complete();
    }
    EXPECT_FALSE(scheduler_.HasUnfinished());
  }

  // Test-side view of a sequence.
  const std::vector<int32_t>& tokens(int64_t id) { return records_.at(id).tokens; }
  int32_t num_outputs(int64_t id) { return records_.at(id).num_outputs; }
  FinishReason finish_reason(int64_t id) { return records_.at(id).finish; }
  bool finished(int64_t id) { return records_.at(id).finished; }
  int32_t num_admissions(int64_t id) { return records_.at(id).num_admissions; }
  // The block table a worker rebuilt from the diffs.
  const std::vector<int32_t>& worker_table(int64_t id) {
    return workers_[records_.at(id).dp_rank].at(id).table;
  }
  size_t num_in_flight() const { return in_flight_.size(); }
  static bool HasFailure() { return ::testing::Test::HasFailure(); }

 private:
  struct Record {
    SequenceRequest request;
    int32_t dp_rank = 0;
    std::vector<int32_t> tokens;  // prompt, then every token handed back
    int32_t num_outputs = 0;
    int32_t first_start = -1;  // start_position at its first admission: its cached prompt tokens
    int32_t num_admissions = 0;
    bool cancel_in_flight = false;  // to be reported by the Complete of its step
    bool cancel_idle = false;       // to be reported without a step
    bool finished = false;
    FinishReason finish = FinishReason::kNone;
  };
  struct WorkerSeq {
    std::vector<int32_t> table;
    int64_t computed = 0;
  };

  int32_t Token(int64_t id, int32_t index) const {
    return token_fn_ ? token_fn_(id, index)
                     : 10 + static_cast<int32_t>((id * 37 + index * 11) % 900);
  }
  bool InFlight(int64_t id) const {
    for (const pb::StepRequest& step : in_flight_)
      if (Find(step, id)) return true;
    return false;
  }
  void ApplyOnWorkers(const pb::StepRequest& step);
  void CheckSharing(int dp, const pb::StepRequest& step);
  void Process(const SequenceUpdate& update, const pb::StepRequest* step);
  void CheckBlocks();

  SchedulerOptions options_;
  Scheduler scheduler_;
  std::vector<std::map<int64_t, WorkerSeq>> workers_;  // per DP rank
  std::map<int64_t, Record> records_;
  std::deque<pb::StepRequest> in_flight_;
  std::set<int64_t> freed_;  // freed by the scheduler, possibly still held by the workers
  int64_t num_added_ = 0;
  int64_t num_steps_ = 0;
  int64_t preemptions_told_ = 0;  // preemptions the workers have heard of
  TokenFn token_fn_;
};

inline std::optional<pb::StepRequest> SchedulerHarness::Schedule() {
  std::optional<pb::StepRequest> step = scheduler_.Schedule();
  if (step) {
    EXPECT_EQ(step->step(), num_steps_++);
    EXPECT_EQ(step->dp_size(), options_.num_dp);
    ApplyOnWorkers(*step);
    preemptions_told_ = scheduler_.stats().num_preemptions;
    in_flight_.push_back(*step);
  }
  EXPECT_EQ(scheduler_.num_in_flight(), static_cast<int32_t>(in_flight_.size()));
  CheckBlocks();
  return step;
}

inline void SchedulerHarness::ApplyOnWorkers(const pb::StepRequest& step) {
  const int32_t bs = options_.block_size;
  for (int64_t id : step.finished_seq_ids()) {
    ASSERT_TRUE(records_.count(id)) << id;
    EXPECT_FALSE(InFlight(id)) << "sequence " << id << " dropped while in flight";
    EXPECT_EQ(workers_[records_[id].dp_rank].erase(id), 1u) << "dropped " << id << " never sent";
    freed_.erase(id);
  }
  for (int d = 0; d < step.dp_size(); ++d) {
    const pb::DpBatch& batch = step.dp(d);
    EXPECT_LE(batch.sequences_size(), options_.max_num_seqs);
    int64_t num_tokens = 0;
    for (const pb::ScheduledSequence& s : batch.sequences()) {
      const int64_t id = s.seq_id();
      ASSERT_TRUE(records_.count(id)) << id;
      Record& r = records_[id];
      EXPECT_EQ(r.dp_rank, d) << id;
      EXPECT_FALSE(r.finished) << id;
      EXPECT_FALSE(InFlight(id)) << "sequence " << id << " in two steps in flight";
      WorkerSeq* w = nullptr;
      if (s.is_new()) {
        EXPECT_FALSE(workers_[d].count(id)) << "sequence " << id << " new twice without a drop";
        EXPECT_EQ(s.start_position() % bs, 0);
        EXPECT_EQ(s.sampling().SerializeAsString(), r.request.sampling.SerializeAsString());
        EXPECT_EQ(s.num_logprobs(), r.request.num_logprobs);
        if (!options_.enable_prefix_caching) {
          EXPECT_EQ(s.start_position(), 0);
        }
        if (r.num_admissions++ == 0) r.first_start = s.start_position();
        w = &workers_[d][id];
        w->computed = s.start_position();
      } else {
        ASSERT_TRUE(workers_[d].count(id)) << "diff of unknown sequence " << id;
        EXPECT_FALSE(s.has_sampling());
        w = &workers_[d][id];
      }
      // Positions continue exactly where the workers' K/V ends.
      EXPECT_EQ(s.start_position(), w->computed) << id;
      for (int32_t b : s.block_ids()) {
        EXPECT_TRUE(b >= 1 && b < options_.num_blocks) << b;
        EXPECT_EQ(std::count(w->table.begin(), w->table.end(), b), 0) << "block twice: " << b;
        w->table.push_back(b);
      }
      const int64_t n = s.token_ids_size();
      const int64_t end = s.start_position() + n;
      EXPECT_GE(n, 1);
      ASSERT_LE(end, static_cast<int64_t>(r.tokens.size())) << id;
      EXPECT_TRUE(std::equal(s.token_ids().begin(), s.token_ids().end(),
                             r.tokens.begin() + s.start_position()))
          << id;
      EXPECT_EQ(s.sample(), end == static_cast<int64_t>(r.tokens.size())) << id;
      // Blocks are allocated as needed: every position falls inside, and no block is spare.
      EXPECT_EQ(static_cast<int64_t>(w->table.size()), (end + bs - 1) / bs) << id;
      w->computed = end;
      num_tokens += n;
    }
    EXPECT_LE(num_tokens, options_.max_num_batched_tokens);
    CheckSharing(d, step);
  }
}

// A block written by a step belongs to its sequence alone; a block held by several
// sequences sits at the same index of each, behind identical computed prefixes.
inline void SchedulerHarness::CheckSharing(int dp, const pb::StepRequest& step) {
  const int32_t bs = options_.block_size;
  std::map<int32_t, std::vector<std::pair<int64_t, size_t>>> holders;
  for (const auto& [id, w] : workers_[dp]) {
    EXPECT_FALSE(freed_.count(id)) << "freed sequence " << id << " still held";
    for (size_t i = 0; i < w.table.size(); ++i) holders[w.table[i]].emplace_back(id, i);
  }
  for (const auto& [block, list] : holders) {
    if (list.size() < 2) continue;
    const auto [first_id, index] = list[0];
    const size_t prefix = (index + 1) * bs;
    for (const auto& [id, i] : list) {
      EXPECT_EQ(i, index) << "block " << block << " at different indices";
      EXPECT_GE(workers_[dp][id].computed, static_cast<int64_t>(prefix)) << block;
      const std::vector<int32_t>& a = records_[first_id].tokens;
      const std::vector<int32_t>& b = records_[id].tokens;
      EXPECT_TRUE(a.size() >= prefix && b.size() >= prefix &&
                  std::equal(a.begin(), a.begin() + prefix, b.begin()))
          << "block " << block << " shared by " << first_id << " and " << id
          << " with different prefixes";
    }
  }
  for (const pb::ScheduledSequence& s : step.dp(dp).sequences()) {
    const WorkerSeq& w = workers_[dp][s.seq_id()];
    for (int64_t p = s.start_position(); p < w.computed; p += 1) {
      const int32_t block = w.table[p / bs];
      EXPECT_EQ(holders[block].size(), 1u) << "block " << block << " written while shared";
    }
  }
}

inline std::vector<SequenceUpdate> SchedulerHarness::Complete() {
  EXPECT_FALSE(in_flight_.empty());
  if (in_flight_.empty()) return {};
  const pb::StepRequest step = std::move(in_flight_.front());
  in_flight_.pop_front();
  std::vector<pb::StepResult> results;
  std::set<int64_t> expected;  // sequences that must report
  for (int d = 0; d < step.dp_size(); ++d) {
    pb::StepResult result;
    result.set_step(step.step());
    result.set_dp_rank(d);
    for (const pb::ScheduledSequence& s : step.dp(d).sequences()) {
      const Record& r = records_[s.seq_id()];
      if (s.sample() || r.cancel_in_flight) expected.insert(s.seq_id());
      if (!s.sample()) continue;
      pb::SampledToken* t = result.add_tokens();
      t->set_seq_id(s.seq_id());
      t->set_token_id(Token(s.seq_id(), r.num_outputs));
      for (int k = 0; k < r.request.num_logprobs; ++k) {
        pb::TokenLogprob* lp = t->add_top_logprobs();
        lp->set_token_id(t->token_id() + k);
        lp->set_logprob(-0.5f - k);
      }
    }
    if (result.tokens_size() > 0) results.push_back(std::move(result));
  }
  std::vector<SequenceUpdate> updates = scheduler_.Complete(step, results);
  for (const SequenceUpdate& u : updates) {
    if (Find(step, u.seq_id)) {
      EXPECT_EQ(expected.erase(u.seq_id), 1u) << "unexpected update of " << u.seq_id;
      Process(u, &step);
    } else {
      Process(u, nullptr);
    }
  }
  EXPECT_TRUE(expected.empty()) << "a sampled or cancelled sequence did not report";
  EXPECT_EQ(scheduler_.num_in_flight(), static_cast<int32_t>(in_flight_.size()));
  CheckBlocks();
  return updates;
}

inline void SchedulerHarness::Process(const SequenceUpdate& u, const pb::StepRequest* step) {
  ASSERT_TRUE(records_.count(u.seq_id)) << u.seq_id;
  Record& r = records_[u.seq_id];
  ASSERT_FALSE(r.finished) << "sequence " << u.seq_id << " reported after finishing";
  EXPECT_EQ(u.num_cached_tokens, std::max(r.first_start, 0)) << u.seq_id;
  if (u.finish_reason == FinishReason::kCancelled) {
    EXPECT_TRUE(step ? r.cancel_in_flight : r.cancel_idle) << u.seq_id;
    EXPECT_TRUE(u.token_ids.empty());
    r.finished = true;
    r.finish = u.finish_reason;
    freed_.insert(u.seq_id);
    return;
  }
  ASSERT_NE(step, nullptr) << "update of " << u.seq_id << " without a step";
  ASSERT_EQ(u.token_ids.size(), 1u);
  const int32_t token = Token(u.seq_id, r.num_outputs);
  EXPECT_EQ(u.token_ids[0], token);
  EXPECT_EQ(u.logprobs.size(), r.request.num_logprobs > 0 ? 1u : 0u);
  if (!u.logprobs.empty()) {
    EXPECT_EQ(u.logprobs[0].size(), static_cast<size_t>(r.request.num_logprobs));
  }
  r.tokens.push_back(token);
  ++r.num_outputs;
  const auto& stops = r.request.stop_token_ids;
  const bool stop = (!r.request.ignore_eos && std::count(options_.eos_token_ids.begin(),
                                                         options_.eos_token_ids.end(), token)) ||
                    std::count(stops.begin(), stops.end(), token);
  const FinishReason want = stop                                    ? FinishReason::kStop
                            : r.num_outputs >= r.request.max_tokens ? FinishReason::kLength
                                                                    : FinishReason::kNone;
  EXPECT_EQ(u.finish_reason, want) << u.seq_id;
  if (u.finish_reason != FinishReason::kNone) {
    r.finished = true;
    r.finish = u.finish_reason;
    freed_.insert(u.seq_id);
  }
}

inline void SchedulerHarness::Cancel(int64_t seq_id) {
  auto it = records_.find(seq_id);
  if (it != records_.end() && !it->second.finished) {
    (InFlight(seq_id) ? it->second.cancel_in_flight : it->second.cancel_idle) = true;
    if (!InFlight(seq_id)) freed_.insert(seq_id);
  }
  scheduler_.Cancel(seq_id);
  CheckBlocks();
}

// The pool's used blocks are exactly the distinct blocks the workers hold for sequences
// the scheduler has not freed (only "at most" while a preemption is not yet told).
inline void SchedulerHarness::CheckBlocks() {
  const bool exact = scheduler_.stats().num_preemptions == preemptions_told_;
  int32_t total_used = 0;
  for (int d = 0; d < options_.num_dp; ++d) {
    std::set<int32_t> held;
    for (const auto& [id, w] : workers_[d])
      if (!freed_.count(id)) held.insert(w.table.begin(), w.table.end());
    const int32_t used = scheduler_.num_used_blocks(d);
    if (exact) {
      EXPECT_EQ(used, static_cast<int32_t>(held.size())) << "DP rank " << d;
    } else {
      EXPECT_LE(used, static_cast<int32_t>(held.size())) << "DP rank " << d;
    }
    EXPECT_LE(used, options_.num_blocks - 1);
    total_used += used;
  }
  const SchedulerStats stats = scheduler_.stats();
  EXPECT_EQ(stats.kv_blocks_used, total_used);
  EXPECT_EQ(stats.kv_blocks_total, options_.num_dp * (options_.num_blocks - 1));
}

}  // namespace lattice::scheduler_testing
