// Scheduler: exact token counts per step (chunked prefill, decode, shared budget,
// max_num_seqs), stop conditions, diffs, preemption, prefix caching, steps in flight,
// cancellation, DP ranks and validation. The harness (scheduler_harness.h) plays the
// workers and checks block accounting after every step; the randomized test is in
// scheduler_random_test.cc.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/scheduler_harness.h"

namespace lattice {
namespace {

using scheduler_testing::Chunks;
using scheduler_testing::Find;
using scheduler_testing::kEos;
using scheduler_testing::MakeRequest;
using scheduler_testing::Prompt;
using scheduler_testing::SchedulerHarness;
using scheduler_testing::SmallOptions;
using Steps = std::vector<std::pair<int64_t, int>>;

TEST(SchedulerChunkedPrefill, PromptTakesCeilLOverBStepsOfAtMostB) {
  for (const auto& [length, budget] : {std::pair{37, 10}, {40, 10}, {1, 10}, {10, 10}, {9, 1}}) {
    SCOPED_TRACE(testing::Message() << "L=" << length << " B=" << budget);
    SchedulerHarness h(SmallOptions(4, 64, budget));
    const int64_t id = h.Add(MakeRequest(Prompt(length), 3));
    const int num_chunks = (length + budget - 1) / budget;
    for (int k = 0; k < num_chunks; ++k) {
      const auto step = h.Schedule();
      ASSERT_TRUE(step);
      EXPECT_EQ(Chunks(*step), (Steps{{id, std::min(budget, length - k * budget)}})) << k;
      EXPECT_EQ(step->dp(0).sequences(0).start_position(), k * budget);
      EXPECT_EQ(step->dp(0).sequences(0).sample(), k == num_chunks - 1);
      EXPECT_TRUE(h.Complete().empty() == (k < num_chunks - 1));
      EXPECT_EQ(h.scheduler().num_used_blocks(0), (std::min(length, (k + 1) * budget) + 3) / 4);
    }
    for (int k = 1; k < 3; ++k) {  // decodes: one token each
      const auto step = h.Schedule();
      ASSERT_TRUE(step);
      EXPECT_EQ(Chunks(*step), (Steps{{id, 1}}));
      EXPECT_EQ(step->dp(0).sequences(0).start_position(), length + k - 1);
      h.Complete();
    }
    EXPECT_EQ(h.finish_reason(id), FinishReason::kLength);
    EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
    EXPECT_EQ(h.scheduler().stats().num_computed_tokens, length + 2);
    EXPECT_EQ(h.scheduler().stats().max_tokens_in_step, std::min(length, budget));
  }
}

TEST(SchedulerChunkedPrefill, SequencesShareTheBudgetRunningFirstThenWaiting) {
  SchedulerHarness h(SmallOptions(4, 64, 10));
  const int64_t a = h.Add(MakeRequest(Prompt(7, 0), 4));
  const int64_t b = h.Add(MakeRequest(Prompt(6, 100), 4));
  const int64_t c = h.Add(MakeRequest(Prompt(5, 200), 4));
  const std::vector<Steps> expected = {
      {{a, 7}, {b, 3}},          // b's first chunk takes what is left
      {{a, 1}, {b, 3}, {c, 5}},  // running first (a decodes, b finishes its prompt), then c
      {{a, 1}, {b, 1}, {c, 1}}, {{a, 1}, {b, 1}, {c, 1}}, {{b, 1}, {c, 1}},  // a has its 4 tokens
  };
  for (const Steps& want : expected) {
    const auto step = h.Schedule();
    ASSERT_TRUE(step);
    EXPECT_EQ(Chunks(*step), want);
    h.Complete();
  }
  EXPECT_FALSE(h.Schedule());
  EXPECT_FALSE(h.scheduler().HasUnfinished());
  for (int64_t id : {a, b, c}) EXPECT_EQ(h.num_outputs(id), 4);
}

TEST(SchedulerBatching, MaxNumSeqsBoundsSequencesPerStep) {
  SchedulerOptions o = SmallOptions(4, 64, 100);
  o.max_num_seqs = 2;
  SchedulerHarness h(o);
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(h.Add(MakeRequest(Prompt(3, i * 10), 2)));
  const std::vector<Steps> expected = {
      {{ids[0], 3}, {ids[1], 3}},
      {{ids[0], 1}, {ids[1], 1}},
      {{ids[2], 3}, {ids[3], 3}},
      {{ids[2], 1}, {ids[3], 1}},
      {{ids[4], 3}},
      {{ids[4], 1}},
  };
  for (const Steps& want : expected) {
    const auto step = h.Schedule();
    ASSERT_TRUE(step);
    EXPECT_EQ(Chunks(*step), want);
    h.Complete();
  }
  EXPECT_FALSE(h.scheduler().HasUnfinished());
}

// A sequence's fabricated outputs (the k-th is outputs[k]) and how it must end.
struct StopCase {
  std::vector<int32_t> outputs;
  bool ignore_eos;
  std::vector<int32_t> stop_ids;
  FinishReason reason;
  int num_outputs;
};

TEST(SchedulerStop, MaxTokensEosStopIdsAndIgnoreEos) {
  const std::vector<StopCase> cases = {
      {{50, 51, 52, 53, 54}, false, {}, FinishReason::kLength, 5},
      {{50, kEos, 52}, false, {}, FinishReason::kStop, 2},   // eos included
      {{kEos, 51, 52}, true, {}, FinishReason::kLength, 3},  // ignore_eos
      {{50, 51, 77, 53}, false, {77}, FinishReason::kStop, 3},
      {{50, kEos, 77, 53}, true, {77}, FinishReason::kStop, 3},  // stop ids despite ignore_eos
      {{50, 51, 52}, false, {52}, FinishReason::kStop, 3},       // stop wins over length
  };
  for (const StopCase& c : cases) {
    SCOPED_TRACE(static_cast<int>(&c - cases.data()));
    SchedulerHarness h(SmallOptions(4, 64, 32));
    const std::vector<int32_t> outputs = c.outputs;
    SequenceRequest r = MakeRequest(Prompt(6), 3, c.ignore_eos);
    r.max_tokens = c.reason == FinishReason::kLength ? c.num_outputs : 3;
    r.stop_token_ids = c.stop_ids;
    const int64_t id = h.Add(r);
    const int64_t other = h.Add(MakeRequest(Prompt(6, 300), 20));
    h.set_token_fn([&](int64_t seq, int32_t k) { return seq == id ? outputs[k] : 60 + k; });
    std::vector<SequenceUpdate> last;
    while (!h.finished(id)) {
      ASSERT_TRUE(h.Schedule());
      last = h.Complete();
      ASSERT_FALSE(h.HasFailure());
    }
    EXPECT_EQ(h.finish_reason(id), c.reason);
    EXPECT_EQ(h.num_outputs(id), c.num_outputs);
    EXPECT_EQ(std::vector<int32_t>(h.tokens(id).begin() + 6, h.tokens(id).end()),
              std::vector<int32_t>(outputs.begin(), outputs.begin() + c.num_outputs));
    ASSERT_EQ(last.at(0).seq_id, id);
    EXPECT_EQ(last[0].finish_reason, c.reason);
    EXPECT_EQ(last[0].token_ids, std::vector<int32_t>{outputs[c.num_outputs - 1]});
    // Only `other`'s blocks are left: it has computed 6 + num_outputs - 1 tokens.
    EXPECT_EQ(h.scheduler().num_used_blocks(0), (6 + c.num_outputs - 1 + 3) / 4);
    const auto next = h.Schedule();  // workers hear of the finished sequence with the next step
    ASSERT_TRUE(next);
    EXPECT_EQ(
        std::vector<int64_t>(next->finished_seq_ids().begin(), next->finished_seq_ids().end()),
        std::vector<int64_t>{id});
    EXPECT_EQ(Chunks(*next), (Steps{{other, 1}}));
    h.Complete();
    h.Cancel(other);
    EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
    EXPECT_EQ(h.TakeIdleCancellations().size(), 1u);
  }
}

TEST(SchedulerDiffs, NewSequencesInFullRunningOnesAsAppendedBlocks) {
  SchedulerHarness h(SmallOptions(4, 64, 6));
  SequenceRequest r = MakeRequest(Prompt(10), 8);
  r.sampling.set_temperature(0.7f);
  r.sampling.set_top_k(5);
  r.sampling.set_top_p(0.9f);
  r.sampling.set_min_p(0.05f);
  r.sampling.set_seed(1234);
  r.num_logprobs = 3;
  const int64_t id = h.Add(r);
  // Prompt chunks of 6 and 4 (which samples), then 7 decodes: 8 outputs, 17 tokens computed.
  const std::vector<std::pair<int, int>> start_and_new_blocks = {
      {0, 2}, {6, 1}, {10, 0}, {11, 0}, {12, 1}, {13, 0}, {14, 0}, {15, 0}, {16, 1}};
  std::vector<int32_t> table;
  for (size_t k = 0; k < start_and_new_blocks.size(); ++k) {
    const auto step = h.Schedule();
    ASSERT_TRUE(step);
    const pb::ScheduledSequence& s = step->dp(0).sequences(0);
    EXPECT_EQ(s.is_new(), k == 0);
    EXPECT_EQ(s.has_sampling(), k == 0);
    if (k == 0) {
      EXPECT_FLOAT_EQ(s.sampling().temperature(), 0.7f);
      EXPECT_EQ(s.sampling().top_k(), 5);
      EXPECT_EQ(s.sampling().seed(), 1234u);
      EXPECT_EQ(s.num_logprobs(), 3);
    } else {
      EXPECT_EQ(s.num_logprobs(), 0);
    }
    EXPECT_EQ(s.start_position(), start_and_new_blocks[k].first);
    EXPECT_EQ(s.block_ids_size(), start_and_new_blocks[k].second) << k;
    table.insert(table.end(), s.block_ids().begin(), s.block_ids().end());
    EXPECT_EQ(table, h.worker_table(id));
    const std::vector<SequenceUpdate> updates = h.Complete();
    if (k > 0) {
      EXPECT_EQ(updates.at(0).logprobs.at(0).size(), 3u);
    }
  }
  EXPECT_EQ(h.num_outputs(id), 8);
  EXPECT_EQ(table.size(), 5u);  // 17 tokens computed
}

// 6 usable blocks of 4 tokens; two sequences of 8 prompt tokens and 8 outputs each need
// 4 blocks apiece (15 tokens computed), so the newer one is preempted at position 12.
TEST(SchedulerPreemption, NewestRunningSequenceIsPreemptedAndRecomputed) {
  for (const bool caching : {true, false}) {
    SCOPED_TRACE(caching);
    SchedulerOptions o = SmallOptions(4, 7, 64);
    o.enable_prefix_caching = caching;
    SchedulerHarness h(o);
    const int64_t a = h.Add(MakeRequest(Prompt(8, 0), 8));
    const int64_t b = h.Add(MakeRequest(Prompt(8, 500), 8));
    for (int k = 0; k < 5; ++k) {  // both prompts, then decodes of positions 8..11
      const auto step = h.Schedule();
      ASSERT_TRUE(step);
      EXPECT_EQ(Chunks(*step), (Steps{{a, k == 0 ? 8 : 1}, {b, k == 0 ? 8 : 1}}));
      h.Complete();
    }
    EXPECT_EQ(h.scheduler().num_used_blocks(0), 6);
    const std::vector<int32_t> b_blocks = h.worker_table(b);
    auto step = h.Schedule();  // a needs a 4th block: b goes
    ASSERT_TRUE(step);
    EXPECT_EQ(h.scheduler().stats().num_preemptions, 1);
    EXPECT_EQ(Chunks(*step), (Steps{{a, 1}}));
    EXPECT_EQ(
        std::vector<int64_t>(step->finished_seq_ids().begin(), step->finished_seq_ids().end()),
        std::vector<int64_t>{b});
    EXPECT_EQ(h.scheduler().stats().num_waiting, 1);
    h.Complete();
    for (int k = 0; k < 2; ++k) {  // a's last two decodes; b does not fit beside it
      step = h.Schedule();
      ASSERT_TRUE(step);
      EXPECT_EQ(Chunks(*step), (Steps{{a, 1}}));
      h.Complete();
    }
    EXPECT_EQ(h.finish_reason(a), FinishReason::kLength);
    // b comes back new, from its prompt plus its 5 outputs; with caching its first two
    // blocks are still cached (a evicted b's third, the least recently freed).
    step = h.Schedule();
    ASSERT_TRUE(step);
    const int cached = caching ? 8 : 0;
    EXPECT_EQ(Chunks(*step), (Steps{{b, 13 - cached}}));
    const pb::ScheduledSequence& s = step->dp(0).sequences(0);
    EXPECT_TRUE(s.is_new());
    EXPECT_EQ(s.start_position(), cached);
    EXPECT_EQ(s.block_ids_size(), 4);
    if (caching) {
      EXPECT_EQ(s.block_ids(0), b_blocks[0]);
      EXPECT_EQ(s.block_ids(1), b_blocks[1]);
    }
    const std::vector<SequenceUpdate> updates = h.Complete();
    EXPECT_EQ(updates.at(0).num_cached_tokens, 0);  // only the first admission counts
    h.RunToCompletion();
    EXPECT_EQ(h.num_outputs(a), 8);
    EXPECT_EQ(h.num_outputs(b), 8);
    EXPECT_EQ(h.num_admissions(b), 2);
    EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
  }
}

// A preempted sequence goes back to the front of the queue, ahead of later arrivals
// (c alone would fit while b waits for a to finish).
TEST(SchedulerPreemption, PreemptedSequenceWaitsAheadOfLaterOnes) {
  SchedulerOptions o = SmallOptions(4, 7, 64);
  o.max_num_seqs = 2;
  SchedulerHarness h(o);
  const int64_t a = h.Add(MakeRequest(Prompt(8, 0), 8));
  const int64_t b = h.Add(MakeRequest(Prompt(8, 500), 8));
  const int64_t c = h.Add(MakeRequest(Prompt(4, 300), 1));
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(h.Schedule());
    h.Complete();
  }
  for (int k = 0; k < 3; ++k) {
    const auto step = h.Schedule();
    ASSERT_TRUE(step);
    EXPECT_EQ(Chunks(*step), (Steps{{a, 1}}));
    h.Complete();
  }
  EXPECT_EQ(h.scheduler().stats().num_preemptions, 1);
  const auto step = h.Schedule();
  ASSERT_TRUE(step);
  EXPECT_EQ(Chunks(*step), (Steps{{b, 5}, {c, 4}}));
  h.RunToCompletion();
}

// With a step in flight, the newest sequence that is not in flight is the victim.
TEST(SchedulerPreemption, InFlightSequencesAreNeverPreempted) {
  SchedulerOptions o = SmallOptions(4, 7, 64);
  o.max_num_seqs = 1;
  SchedulerHarness h(o);
  const int64_t a = h.Add(MakeRequest(Prompt(8, 0), 9, true));
  const int64_t b = h.Add(MakeRequest(Prompt(12, 500), 4, true));
  h.RunToCompletion(/*max_in_flight=*/2);
  EXPECT_GE(h.scheduler().stats().num_preemptions, 1);
  EXPECT_EQ(h.num_outputs(a), 9);
  EXPECT_EQ(h.num_outputs(b), 4);
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
}

TEST(SchedulerPrefixCache, SecondRequestReusesFullBlocksOfTheFirst) {
  SchedulerHarness h(SmallOptions(4, 64, 64));
  const std::vector<int32_t> prompt = Prompt(14);
  const int64_t a = h.Add(MakeRequest(prompt, 4));
  ASSERT_TRUE(h.Schedule());
  h.Complete();  // a's three full prompt blocks are cached now
  std::vector<int32_t> shared(prompt.begin(), prompt.begin() + 12);
  std::vector<int32_t> b_prompt = shared;
  b_prompt.insert(b_prompt.end(), {7, 8, 9});
  const int64_t b = h.Add(MakeRequest(b_prompt, 2));
  const int64_t c = h.Add(MakeRequest(shared, 2));  // whole prompt cached, a block multiple
  const int64_t d =
      h.Add(MakeRequest(std::vector<int32_t>(prompt.begin(), prompt.begin() + 13), 2));
  const auto step = h.Schedule();
  ASSERT_TRUE(step);
  EXPECT_EQ(Chunks(*step), (Steps{{a, 1}, {b, 3}, {c, 4}, {d, 1}}));
  EXPECT_EQ(Find(*step, b)->start_position(), 12);
  EXPECT_EQ(Find(*step, c)->start_position(), 8);  // at least one token is computed
  EXPECT_EQ(Find(*step, d)->start_position(), 12);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.worker_table(b)[i], h.worker_table(a)[i]);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(h.worker_table(c)[i], h.worker_table(a)[i]);
  EXPECT_NE(h.worker_table(c)[2], h.worker_table(a)[2]);
  // 4 blocks of a; b: +1 block; c: +1 block; d: +1 block.
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 7);
  for (const SequenceUpdate& u : h.Complete()) {
    EXPECT_EQ(u.num_cached_tokens, u.seq_id == a ? 0 : u.seq_id == c ? 8 : 12) << u.seq_id;
  }
  const SchedulerStats stats = h.scheduler().stats();
  EXPECT_EQ(stats.prefix_cache_queries, 12 + 12 + 8 + 12);
  EXPECT_EQ(stats.prefix_cache_hits, 12 + 8 + 12);
  h.RunToCompletion();
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
}

// num_cached_tokens is what the admission that happened took from the cache, not what
// an earlier attempt that did not fit found (a regression test).
TEST(SchedulerPrefixCache, CachedTokensComeFromTheAdmissionThatSucceeds) {
  SchedulerHarness h(SmallOptions(4, 7, 64));
  const std::vector<int32_t> prompt = Prompt(12);
  const int64_t a = h.Add(MakeRequest(prompt, 9));
  ASSERT_TRUE(h.Schedule());
  std::vector<int32_t> b_prompt(prompt.begin(), prompt.begin() + 8);
  for (int32_t t : Prompt(12, 600)) b_prompt.push_back(t);
  const int64_t b = h.Add(MakeRequest(b_prompt, 1));
  EXPECT_FALSE(h.Schedule());  // b needs 5 blocks, 3 are free, nothing is cached yet
  h.Complete();
  int b_steps = 0;
  while (!h.finished(b)) {
    const auto step = h.Schedule();
    ASSERT_TRUE(step);
    if (const pb::ScheduledSequence* s = Find(*step, b)) {
      EXPECT_TRUE(h.finished(a));  // b fits only once a is gone
      EXPECT_EQ(s->start_position(), 8);
      ++b_steps;
    }
    for (const SequenceUpdate& u : h.Complete()) {
      if (u.seq_id == b) {
        EXPECT_EQ(u.num_cached_tokens, 8);
      }
    }
  }
  EXPECT_EQ(b_steps, 1);
}

TEST(SchedulerPrefixCache, NothingIsSharedBeforeTheStepCompletesOrWhenDisabled) {
  for (const bool caching : {true, false}) {
    SchedulerOptions o = SmallOptions(4, 64, 64);
    o.enable_prefix_caching = caching;
    SchedulerHarness h(o);
    const int64_t a = h.Add(MakeRequest(Prompt(9), 2));
    const int64_t b = h.Add(MakeRequest(Prompt(9), 2));  // same step as a: no hit
    auto step = h.Schedule();
    EXPECT_EQ(Chunks(*step), (Steps{{a, 9}, {b, 9}}));
    h.Complete();
    const int64_t c = h.Add(MakeRequest(Prompt(9), 2));
    step = h.Schedule();
    EXPECT_EQ(Chunks(*step), (Steps{{a, 1}, {b, 1}, {c, caching ? 1 : 9}}));
    h.RunToCompletion();
    EXPECT_EQ(h.scheduler().stats().prefix_cache_hits, caching ? 8 : 0);
  }
}

TEST(SchedulerMicroBatches, TwoStepsInFlightAreDisjoint) {
  SchedulerHarness h(SmallOptions(4, 64, 12));
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(h.Add(MakeRequest(Prompt(6, i * 50), 3)));
  const auto first = h.Schedule();
  const auto second = h.Schedule();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(Chunks(*first), (Steps{{ids[0], 6}, {ids[1], 6}}));
  EXPECT_EQ(Chunks(*second), (Steps{{ids[2], 6}, {ids[3], 6}}));
  EXPECT_FALSE(h.Schedule());
  EXPECT_EQ(h.scheduler().num_in_flight(), 2);
  h.Complete();  // the oldest first
  auto third = h.Schedule();
  ASSERT_TRUE(third);
  EXPECT_EQ(Chunks(*third), (Steps{{ids[0], 1}, {ids[1], 1}}));
  h.Complete();
  third = h.Schedule();
  EXPECT_EQ(Chunks(*third), (Steps{{ids[2], 1}, {ids[3], 1}}));
  h.RunToCompletion(2);
  for (int64_t id : ids) EXPECT_EQ(h.num_outputs(id), 3);
}

TEST(SchedulerCancel, WaitingRunningInFlightAndUnknown) {
  SchedulerHarness h(SmallOptions(4, 64, 8));
  const int64_t a = h.Add(MakeRequest(Prompt(8, 0), 10));
  const int64_t b = h.Add(MakeRequest(Prompt(8, 100), 10));
  const int64_t c = h.Add(MakeRequest(Prompt(4, 200), 10));
  auto step = h.Schedule();
  EXPECT_EQ(Chunks(*step), (Steps{{a, 8}}));
  // A waiting sequence: reported at once, never known to the workers.
  h.Cancel(b);
  std::vector<SequenceUpdate> idle = h.TakeIdleCancellations();
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_EQ(idle[0].seq_id, b);
  EXPECT_EQ(idle[0].finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(h.TakeIdleCancellations().empty());
  // An in-flight sequence: its blocks stay until its step completes.
  h.Cancel(a);
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 2);
  std::vector<SequenceUpdate> done = h.Complete();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(done[0].token_ids.empty());
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
  step = h.Schedule();
  EXPECT_EQ(Chunks(*step), (Steps{{c, 4}}));
  EXPECT_EQ(std::vector<int64_t>(step->finished_seq_ids().begin(), step->finished_seq_ids().end()),
            std::vector<int64_t>{a});
  h.Complete();
  // A running sequence between steps: freed now, reported by the next Complete.
  const int64_t d = h.Add(MakeRequest(Prompt(3, 300), 10));
  h.Cancel(c);
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
  h.Cancel(c);      // twice
  h.Cancel(12345);  // unknown
  step = h.Schedule();
  EXPECT_EQ(Chunks(*step), (Steps{{d, 3}}));
  EXPECT_EQ(std::vector<int64_t>(step->finished_seq_ids().begin(), step->finished_seq_ids().end()),
            std::vector<int64_t>{c});
  done = h.Complete();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].seq_id, c);
  EXPECT_EQ(done[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(done[1].seq_id, d);
  h.Cancel(d);
  EXPECT_EQ(h.TakeIdleCancellations().size(), 1u);
  EXPECT_FALSE(h.scheduler().HasUnfinished());
  EXPECT_FALSE(h.Schedule());
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 0);
}

TEST(SchedulerDp, RoundRobinRanksWithTheirOwnPoolsAndBudgets) {
  SchedulerOptions o = SmallOptions(4, 9, 8);
  o.num_dp = 2;
  SchedulerHarness h(o);
  const int64_t a = h.Add(MakeRequest(Prompt(8, 0), 3));    // rank 0
  const int64_t b = h.Add(MakeRequest(Prompt(6, 100), 3));  // rank 1
  const int64_t c = h.Add(MakeRequest(Prompt(8, 200), 3));  // rank 0
  auto step = h.Schedule();
  ASSERT_TRUE(step);
  ASSERT_EQ(step->dp_size(), 2);
  EXPECT_EQ(Chunks(*step, 0), (Steps{{a, 8}}));  // each rank has its own budget of 8
  EXPECT_EQ(Chunks(*step, 1), (Steps{{b, 6}}));
  EXPECT_EQ(h.scheduler().num_used_blocks(0), 2);
  EXPECT_EQ(h.scheduler().num_used_blocks(1), 2);
  h.Complete();
  step = h.Schedule();
  EXPECT_EQ(Chunks(*step, 0), (Steps{{a, 1}, {c, 7}}));
  EXPECT_EQ(Chunks(*step, 1), (Steps{{b, 1}}));
  EXPECT_EQ(h.scheduler().stats().max_tokens_in_step, 8);
  h.RunToCompletion();
  EXPECT_EQ(h.num_outputs(c), 3);
  // One sequence: the other rank's batch is there, empty.
  const int64_t d = h.Add(MakeRequest(Prompt(5, 700), 1));  // rank 1 (round-robin continues)
  step = h.Schedule();
  ASSERT_EQ(step->dp_size(), 2);
  EXPECT_EQ(step->dp(0).sequences_size(), 0);
  EXPECT_EQ(Chunks(*step, 1), (Steps{{d, 5}}));
  h.Complete();
  EXPECT_EQ(h.scheduler().stats().kv_blocks_total, 16);
  EXPECT_EQ(h.scheduler().stats().kv_blocks_used, 0);
}

TEST(SchedulerValidate, EveryBadFieldIsNamed) {
  SchedulerOptions o = SmallOptions(4, 9, 64);  // 8 usable blocks: 32 tokens
  o.max_model_len = 40;
  o.max_stop_token_ids = 2;
  const Scheduler scheduler(o);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* name;
    std::function<void(SequenceRequest&)> edit;
    absl::StatusCode code;
    const char* field;
  };
  const auto bad = absl::StatusCode::kInvalidArgument;
  const std::vector<Case> cases = {
      {"empty", [](SequenceRequest& r) { r.prompt_ids.clear(); }, bad, "prompt_ids"},
      {"negative id", [](SequenceRequest& r) { r.prompt_ids[1] = -1; }, bad, "prompt_ids[1]"},
      {"id = vocab", [](SequenceRequest& r) { r.prompt_ids[0] = 1000; }, bad, "prompt_ids[0]"},
      {"max_tokens 0", [](SequenceRequest& r) { r.max_tokens = 0; }, bad, "max_tokens"},
      {"temp < 0", [](SequenceRequest& r) { r.sampling.set_temperature(-0.1f); }, bad,
       "temperature"},
      {"temp nan", [=](SequenceRequest& r) { r.sampling.set_temperature(nan); }, bad,
       "temperature"},
      {"temp inf", [=](SequenceRequest& r) { r.sampling.set_temperature(inf); }, bad,
       "temperature"},
      {"top_p 0", [](SequenceRequest& r) { r.sampling.set_top_p(0.0f); }, bad, "top_p"},
      {"top_p > 1", [](SequenceRequest& r) { r.sampling.set_top_p(1.01f); }, bad, "top_p"},
      {"top_p nan", [=](SequenceRequest& r) { r.sampling.set_top_p(nan); }, bad, "top_p"},
      {"top_k -2", [](SequenceRequest& r) { r.sampling.set_top_k(-2); }, bad, "top_k"},
      {"min_p < 0", [](SequenceRequest& r) { r.sampling.set_min_p(-0.01f); }, bad, "min_p"},
      {"min_p > 1", [](SequenceRequest& r) { r.sampling.set_min_p(1.5f); }, bad, "min_p"},
      {"min_p nan", [=](SequenceRequest& r) { r.sampling.set_min_p(nan); }, bad, "min_p"},
      {"logprobs < 0", [](SequenceRequest& r) { r.num_logprobs = -1; }, bad, "logprobs"},
      {"stops",
       [](SequenceRequest& r) {
         r.stop_token_ids = {5, 6, 7};
       },
       bad, "stop_token_ids"},
      {"stop id",
       [](SequenceRequest& r) {
         r.stop_token_ids = {5, 1000};
       },
       bad, "stop_token_ids[1]"},
      {"too long", [](SequenceRequest& r) { r.max_tokens = 35; }, bad, "max_tokens"},
      {"no room", [](SequenceRequest& r) { r.max_tokens = 30; },
       absl::StatusCode::kResourceExhausted, "KV blocks"},
  };
  for (const Case& c : cases) {
    SequenceRequest r = MakeRequest(Prompt(6), 4);
    c.edit(r);
    const absl::Status status = scheduler.Validate(r);
    EXPECT_EQ(status.code(), c.code) << c.name << ": " << status;
    EXPECT_NE(std::string(status.message()).find(c.field), std::string::npos)
        << c.name << ": " << status;
  }
  // The edges that are allowed.
  const std::vector<std::function<void(SequenceRequest&)>> fine = {
      [](SequenceRequest& r) { r.sampling.set_temperature(0.0f); },
      [](SequenceRequest& r) { r.sampling.set_top_k(-1); },
      [](SequenceRequest& r) { r.sampling.set_top_k(0); },
      [](SequenceRequest& r) { r.sampling.set_min_p(1.0f); },
      [](SequenceRequest& r) {
        r.stop_token_ids = {0, 999};
      },
      [](SequenceRequest& r) {
        r.prompt_ids = {0, 999};
      },
      [](SequenceRequest& r) { r.max_tokens = 26; },  // 32 tokens: the whole pool
      [](SequenceRequest& r) { r.num_logprobs = 1000; },
  };
  for (size_t i = 0; i < fine.size(); ++i) {
    SequenceRequest r = MakeRequest(Prompt(6), 4);
    fine[i](r);
    EXPECT_TRUE(scheduler.Validate(r).ok()) << i << ": " << scheduler.Validate(r);
  }
  o.max_model_len = 1000;  // over max_model_len vs. over the pool
  EXPECT_EQ(Scheduler(o).Validate(MakeRequest(Prompt(6), 27)).code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace lattice
