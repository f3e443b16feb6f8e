// The metrics of `lattice bench`: one record per request sent (when it was sent, when
// each of its tokens arrived, what the server reported, or why it failed), and the
// summary `vllm bench serve` reports, with vLLM's names and definitions:
//   TTFT  first token time - send time;
//   TPOT  (e2e latency - TTFT) / (output tokens - 1), per request; requests with a single
//         output token have none and are left out;
//   ITL   the gaps between consecutive tokens of a request, over every request;
//   E2EL  arrival of the stream's last message - send time.
// Only completed requests enter TTFT, TPOT, ITL, E2EL and the token totals.
//
// ITL when one stream message carries several tokens: the gap between that message and the
// previous one is split evenly over its n tokens (n gaps of gap / n); the tokens that came
// with the first message (after the first token) have gaps of 0. So every request has
// exactly output_tokens - 1 ITLs and they sum to E2EL - TTFT, which makes the mean ITL over
// a request its TPOT. (vLLM counts a multi-token chunk as one gap.)
//
// Statistics as numpy computes them: mean, the population standard deviation, and
// percentiles interpolated linearly between the closest ranks (np.percentile's default);
// median is p50. An empty sample reports 0 for each, as vLLM does.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lattice {

// One stream message that carried tokens: when it arrived and how many it carried.
struct BenchTokenChunk {
  double time_s = 0.0;  // seconds from the start of the run
  int32_t num_tokens = 0;
};

struct BenchRequestRecord {
  double send_time_s = 0.0;  // seconds from the start of the run
  std::vector<BenchTokenChunk> chunks;
  double end_time_s = 0.0;    // arrival of the stream's last message
  int32_t prompt_tokens = 0;  // the prompt's length
  int32_t output_tokens = 0;  // tokens received
  int32_t cached_tokens = 0;  // prompt tokens the server took from its prefix cache
  std::string error;          // empty: completed; else "CODE: message"

  bool ok() const { return error.empty(); }
  // Seconds; 0 when no token arrived.
  double Ttft() const { return chunks.empty() ? 0.0 : chunks.front().time_s - send_time_s; }
  double E2el() const { return end_time_s - send_time_s; }
};

// The inter-token latencies of one request in seconds (output_tokens - 1 of them, see
// above).
std::vector<double> BenchInterTokenLatencies(const BenchRequestRecord& record);

// np.percentile(values, p) with linear interpolation; `sorted` ascending and non-empty.
double BenchPercentile(const std::vector<double>& sorted, double p);

// One latency's statistics in milliseconds.
struct BenchDistribution {
  double mean_ms = 0.0;
  double median_ms = 0.0;  // = p50
  double std_ms = 0.0;
  double p90_ms = 0.0;
  double p99_ms = 0.0;
  double max_ms = 0.0;
};
BenchDistribution BenchDistributionOf(const std::vector<double>& seconds);

struct BenchSummary {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0.0;
  int64_t total_input_tokens = 0;       // of completed requests
  int64_t total_output_tokens = 0;      // of completed requests
  int64_t total_cached_tokens = 0;      // of completed requests
  double request_throughput = 0.0;      // completed / duration
  double output_throughput = 0.0;       // total_output_tokens / duration
  double total_token_throughput = 0.0;  // (input + output) / duration
  BenchDistribution ttft, tpot, itl, e2el;
};

// `duration_s`: from the first send to the end of the last request.
BenchSummary SummarizeBench(const std::vector<BenchRequestRecord>& records, double duration_s);

// The metrics half of the result JSON: the summary's fields under vLLM's keys (completed,
// failed, duration, total_input_tokens, ..., mean_ttft_ms, median_ttft_ms, std_ttft_ms,
// p50_ttft_ms, p90_ttft_ms, p99_ttft_ms, max_ttft_ms, the same for tpot, itl and e2el) and
// vLLM's per-request arrays, one entry per request sent, in send order: input_lens (every
// prompt's length), output_lens (tokens received; 0 for a failed request), ttfts (seconds;
// 0 for a failed request), itls (lists of seconds; empty for a failed request), errors
// ("" for a completed request). Plus cached_lens (per request, as output_lens).
nlohmann::json BenchResultJson(const BenchSummary& summary,
                               const std::vector<BenchRequestRecord>& records);

// The human table vLLM prints, e.g. title "Serving Benchmark Result".
std::string FormatBenchTable(const BenchSummary& summary, std::string_view title,
                             std::optional<int> max_concurrency);

}  // namespace lattice
