// Scheduler under random load: 300 requests of random lengths (many sharing a prefix),
// random cancellations, a pool far smaller than the load, 1 or 2 steps in flight, one
// or two DP ranks. The harness checks token positions, diffs and block accounting after
// every step; every request ends with exactly max_tokens tokens or as cancelled.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "coordinator/scheduler.h"
#include "tests/unit/scheduler_harness.h"

namespace lattice {
namespace {

using scheduler_testing::kEos;
using scheduler_testing::MakeRequest;
using scheduler_testing::SchedulerHarness;
using scheduler_testing::SmallOptions;

struct RandomCase {
  int num_dp;
  int max_in_flight;
  bool prefix_caching;
  int block_size;
  uint32_t seed;
};

class SchedulerRandomized : public ::testing::TestWithParam<RandomCase> {};

TEST_P(SchedulerRandomized, InvariantsHoldAndEveryRequestEnds) {
  const RandomCase p = GetParam();
  constexpr int kNumRequests = 300;
  constexpr int kPoolTokens = 96;  // per DP rank; a request needs at most 72
  SchedulerOptions o = SmallOptions(p.block_size, 1 + kPoolTokens / p.block_size, 24);
  o.num_dp = p.num_dp;
  o.max_num_seqs = 6;
  o.enable_prefix_caching = p.prefix_caching;
  SchedulerHarness h(o);
  // Outputs include eos now and then: ignore_eos must keep going.
  h.set_token_fn([](int64_t seq, int32_t k) {
    const uint64_t x = static_cast<uint64_t>(seq) * 7919u + static_cast<uint64_t>(k) * 104729u;
    return x % 13 == 0 ? kEos : static_cast<int32_t>(10 + x % 900);
  });
  std::mt19937 rng(p.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<std::vector<int32_t>> prefixes;
  for (int i = 0; i < 3; ++i) {
    std::vector<int32_t> prefix(uniform(4, 20));
    for (int32_t& t : prefix) t = uniform(3, 999);
    prefixes.push_back(prefix);
  }
  std::vector<int64_t> ids;
  std::vector<int32_t> max_tokens;
  int num_cancels = 0;
  for (int iter = 0; iter < 20000 && (ids.size() < kNumRequests || h.scheduler().HasUnfinished());
       ++iter) {
    for (int n = uniform(0, 2); n > 0 && ids.size() < kNumRequests; --n) {
      std::vector<int32_t> prompt;
      if (uniform(0, 1)) prompt = prefixes[uniform(0, 2)];
      for (int k = uniform(prompt.empty() ? 1 : 0, 48 - static_cast<int>(prompt.size())); k > 0;
           --k)
        prompt.push_back(uniform(3, 999));
      max_tokens.push_back(uniform(1, 24));
      ids.push_back(h.Add(MakeRequest(prompt, max_tokens.back(), /*ignore_eos=*/true)));
    }
    if (!ids.empty() && uniform(0, 24) == 0) {
      h.Cancel(ids[uniform(0, static_cast<int>(ids.size()) - 1)]);  // possibly finished: ignored
      ++num_cancels;
    }
    if (uniform(0, 3) == 0) h.TakeIdleCancellations();  // else the next Complete reports them
    while (static_cast<int>(h.num_in_flight()) < p.max_in_flight && h.Schedule()) {
    }
    if (h.scheduler().HasUnfinished()) {
      ASSERT_GT(h.num_in_flight(), 0u) << "no step possible at iteration " << iter;
    }
    if (h.num_in_flight() > 0) h.Complete();
    ASSERT_FALSE(h.HasFailure()) << "iteration " << iter;
  }
  h.TakeIdleCancellations();
  ASSERT_EQ(ids.size(), static_cast<size_t>(kNumRequests));
  ASSERT_FALSE(h.scheduler().HasUnfinished());
  int num_cancelled = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(h.finished(ids[i])) << ids[i];
    if (h.finish_reason(ids[i]) == FinishReason::kCancelled) {
      ++num_cancelled;
      continue;
    }
    EXPECT_EQ(h.finish_reason(ids[i]), FinishReason::kLength) << ids[i];
    EXPECT_EQ(h.num_outputs(ids[i]), max_tokens[i]) << ids[i];
  }
  const SchedulerStats stats = h.scheduler().stats();
  for (int d = 0; d < p.num_dp; ++d) EXPECT_EQ(h.scheduler().num_used_blocks(d), 0);
  EXPECT_EQ(stats.num_waiting + stats.num_running, 0);
  // The load really exercised what it is meant to.
  EXPECT_GT(num_cancelled, 0);
  EXPECT_LE(num_cancelled, num_cancels);
  EXPECT_GT(stats.num_preemptions, 0);
  EXPECT_EQ(stats.prefix_cache_hits > 0, p.prefix_caching);
}

INSTANTIATE_TEST_SUITE_P(
    SchedulerLoads, SchedulerRandomized,
    ::testing::Values(RandomCase{1, 1, true, 4, 1}, RandomCase{1, 2, true, 4, 2},
                      RandomCase{2, 2, true, 4, 3}, RandomCase{1, 2, false, 4, 4},
                      RandomCase{2, 1, true, 1, 5}, RandomCase{1, 2, true, 16, 6}),
    [](const ::testing::TestParamInfo<RandomCase>& info) {
      const RandomCase& p = info.param;
      return "dp" + std::to_string(p.num_dp) + "_inflight" + std::to_string(p.max_in_flight) +
             (p.prefix_caching ? "_cache" : "_nocache") + "_bs" + std::to_string(p.block_size);
    });

}  // namespace
}  // namespace lattice
