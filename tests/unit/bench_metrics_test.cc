// The statistics of `lattice bench` (cli/bench_metrics.h) on hand-made records with
// known answers: numpy's percentiles, TPOT's exclusions, ITL splitting, and the JSON and
// table vLLM's users expect.
#include "cli/bench_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace lattice {
namespace {

// A completed request sent at `send` whose messages arrived at `times`, carrying `counts`
// tokens each.
BenchRequestRecord Completed(double send, const std::vector<double>& times,
                             const std::vector<int>& counts, int prompt_tokens = 10) {
  BenchRequestRecord r;
  r.send_time_s = send;
  r.prompt_tokens = prompt_tokens;
  for (size_t i = 0; i < times.size(); ++i) {
    r.chunks.push_back({times[i], counts[i]});
    r.output_tokens += counts[i];
  }
  r.end_time_s = times.back();
  return r;
}

TEST(BenchMetricsTest, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  // np.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100]) = [1, 2.5, 3.7, 3.97, 4].
  EXPECT_DOUBLE_EQ(BenchPercentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(BenchPercentile(v, 50), 2.5);
  EXPECT_NEAR(BenchPercentile(v, 90), 3.7, 1e-12);
  EXPECT_NEAR(BenchPercentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(BenchPercentile(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(BenchPercentile({7}, 99), 7.0);
  // Odd count: the median is the middle value.
  EXPECT_DOUBLE_EQ(BenchPercentile({1, 5, 100}, 50), 5.0);
}

TEST(BenchMetricsTest, DistributionInMillisecondsWithPopulationStd) {
  const BenchDistribution d =
      BenchDistributionOf({0.004, 0.001, 0.003, 0.002});  // unsorted on purpose
  EXPECT_NEAR(d.mean_ms, 2.5, 1e-12);
  EXPECT_NEAR(d.median_ms, 2.5, 1e-12);
  EXPECT_NEAR(d.std_ms, std::sqrt(1.25), 1e-12);  // np.std, ddof = 0
  EXPECT_NEAR(d.p90_ms, 3.7, 1e-12);
  EXPECT_NEAR(d.p99_ms, 3.97, 1e-12);
  EXPECT_NEAR(d.max_ms, 4.0, 1e-12);
}

TEST(BenchMetricsTest, EmptySampleIsAllZeros) {
  const BenchDistribution d = BenchDistributionOf({});
  EXPECT_EQ(d.mean_ms, 0.0);
  EXPECT_EQ(d.median_ms, 0.0);
  EXPECT_EQ(d.std_ms, 0.0);
  EXPECT_EQ(d.p99_ms, 0.0);
  EXPECT_EQ(d.max_ms, 0.0);
}

TEST(BenchMetricsTest, ItlSplitsAMultiTokenMessageEvenly) {
  // Sent at 1.0; tokens: 1 at 1.1, 2 at 1.3, 1 at 1.4, 4 at 1.8.
  const BenchRequestRecord r = Completed(1.0, {1.1, 1.3, 1.4, 1.8}, {1, 2, 1, 4});
  const std::vector<double> itls = BenchInterTokenLatencies(r);
  const std::vector<double> want = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
  ASSERT_EQ(itls.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(itls[i], want[i], 1e-12) << i;
  // One ITL per token after the first, summing to E2EL - TTFT.
  EXPECT_EQ(itls.size(), static_cast<size_t>(r.output_tokens - 1));
  double sum = 0;
  for (double v : itls) sum += v;
  EXPECT_NEAR(sum, r.E2el() - r.Ttft(), 1e-12);
}

TEST(BenchMetricsTest, TokensArrivingWithTheFirstHaveZeroGaps) {
  const BenchRequestRecord r = Completed(0.0, {0.5, 0.9}, {3, 2});
  const std::vector<double> itls = BenchInterTokenLatencies(r);
  ASSERT_EQ(itls.size(), 4u);
  EXPECT_EQ(itls[0], 0.0);
  EXPECT_EQ(itls[1], 0.0);
  EXPECT_NEAR(itls[2], 0.2, 1e-12);
  EXPECT_NEAR(itls[3], 0.2, 1e-12);
  EXPECT_NEAR(r.Ttft(), 0.5, 1e-12);
}

TEST(BenchMetricsTest, TpotLeavesOutSingleTokenRequestsAndFailures) {
  std::vector<BenchRequestRecord> records;
  records.push_back(
      Completed(0.0, {0.1, 0.2, 0.3, 0.4, 0.5}, {1, 1, 1, 1, 1}));  // TPOT (0.5 - 0.1) / 4 = 100 ms
  records.push_back(Completed(0.0, {0.3}, {1}));          // one token: no TPOT, but TTFT and E2EL
  records.push_back(Completed(1.0, {1.2, 1.8}, {1, 1}));  // TPOT 600 ms
  BenchRequestRecord failed = Completed(0.0, {5.0}, {1});
  failed.error = "RESOURCE_EXHAUSTED: the queue is full";
  records.push_back(failed);

  const BenchSummary s = SummarizeBench(records, 2.0);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 30);
  EXPECT_EQ(s.total_output_tokens, 5 + 1 + 2);
  EXPECT_NEAR(s.request_throughput, 1.5, 1e-12);
  EXPECT_NEAR(s.output_throughput, 4.0, 1e-12);
  EXPECT_NEAR(s.total_token_throughput, 19.0, 1e-12);
  EXPECT_NEAR(s.tpot.mean_ms, 350.0, 1e-9);  // (100 + 600) / 2: the single-token request is not a 0
  EXPECT_NEAR(s.tpot.max_ms, 600.0, 1e-9);
  // TTFTs 100, 300, 200 ms (the failure's 5 s is not among them).
  EXPECT_NEAR(s.ttft.mean_ms, 200.0, 1e-9);
  EXPECT_NEAR(s.ttft.median_ms, 200.0, 1e-9);
  EXPECT_NEAR(s.ttft.max_ms, 300.0, 1e-9);
  // E2ELs 500, 300, 800 ms.
  EXPECT_NEAR(s.e2el.median_ms, 500.0, 1e-9);
  // ITLs: four of 100 ms and one of 600 ms.
  EXPECT_NEAR(s.itl.mean_ms, 1000.0 / 5, 1e-9);
  EXPECT_NEAR(s.itl.median_ms, 100.0, 1e-9);
  EXPECT_NEAR(s.itl.max_ms, 600.0, 1e-9);
}

TEST(BenchMetricsTest, NoDurationMeansNoThroughput) {
  const BenchSummary s = SummarizeBench({}, 0.0);
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.request_throughput, 0.0);
}

TEST(BenchMetricsTest, JsonHasVllmKeysAndPerRequestArrays) {
  std::vector<BenchRequestRecord> records;
  records.push_back(Completed(0.0, {0.1, 0.3}, {1, 1}, 7));
  records.back().cached_tokens = 4;
  BenchRequestRecord failed = Completed(0.0, {0.2}, {1}, 9);
  failed.error = "CANCELLED: cancelled at the time limit";
  records.push_back(failed);
  const nlohmann::json j = BenchResultJson(SummarizeBench(records, 1.0), records);
  for (const char* key : {"completed", "failed", "duration", "total_input_tokens",
                          "total_output_tokens", "total_cached_tokens", "request_throughput",
                          "output_throughput", "total_token_throughput"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  for (const char* metric : {"ttft", "tpot", "itl", "e2el"}) {
    for (const char* stat : {"mean", "median", "std", "p50", "p90", "p99", "max"}) {
      EXPECT_TRUE(j.contains(std::string(stat) + "_" + metric + "_ms")) << stat << " " << metric;
    }
  }
  EXPECT_EQ(j["completed"], 1);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["input_lens"], nlohmann::json({7, 9}));
  EXPECT_EQ(j["output_lens"], nlohmann::json({2, 0}));
  EXPECT_EQ(j["cached_lens"], nlohmann::json({4, 0}));
  EXPECT_EQ(j["errors"], nlohmann::json({"", "CANCELLED: cancelled at the time limit"}));
  EXPECT_NEAR(j["ttfts"][0].get<double>(), 0.1, 1e-12);
  EXPECT_EQ(j["ttfts"][1], 0.0);
  ASSERT_EQ(j["itls"][0].size(), 1u);
  EXPECT_NEAR(j["itls"][0][0].get<double>(), 0.2, 1e-12);
  EXPECT_TRUE(j["itls"][1].empty());
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 200.0, 1e-9);
}

TEST(BenchMetricsTest, TableLooksLikeVllms) {
  const std::vector<BenchRequestRecord> records = {Completed(0.0, {0.1, 0.3}, {1, 1})};
  const std::string table =
      FormatBenchTable(SummarizeBench(records, 1.0), "Serving Benchmark Result", 8);
  EXPECT_EQ(table.substr(0, table.find('\n')),
            "============ Serving Benchmark Result ============");
  EXPECT_NE(table.find("\nSuccessful requests:                     1         \n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("\nMaximum request concurrency:             8"), std::string::npos) << table;
  EXPECT_NE(table.find("\nBenchmark duration (s):                  1.00      \n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("\n---------------Time to First Token----------------\n"), std::string::npos)
      << table;
  EXPECT_NE(table.find("\n-----Time per Output Token (excl. 1st token)------\n"), std::string::npos)
      << table;
  EXPECT_NE(table.find("\nMean TPOT (ms):                          200.00"), std::string::npos)
      << table;
  EXPECT_NE(table.find("\n----------------End-to-end Latency----------------\n"), std::string::npos)
      << table;
  EXPECT_EQ(table.substr(table.size() - 51), std::string(50, '=') + "\n");
  // No concurrency line when there is no cap.
  EXPECT_EQ(FormatBenchTable(SummarizeBench(records, 1.0), "Serving Benchmark Result", std::nullopt)
                .find("Maximum request concurrency"),
            std::string::npos);
}

}  // namespace
}  // namespace lattice
