// The metrics of `lattice bench` (see bench_metrics.h).
#include "cli/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace lattice {

std::vector<double> BenchInterTokenLatencies(const BenchRequestRecord& record) {
  std::vector<double> itls;
  for (size_t k = 0; k < record.chunks.size(); ++k) {
    const BenchTokenChunk& chunk = record.chunks[k];
    if (k == 0) {
      // The first token is the TTFT; the rest of its message came with it.
      itls.insert(itls.end(), std::max(chunk.num_tokens - 1, 0), 0.0);
      continue;
    }
    const double gap = chunk.time_s - record.chunks[k - 1].time_s;
    itls.insert(itls.end(), std::max(chunk.num_tokens, 0), gap / std::max(chunk.num_tokens, 1));
  }
  return itls;
}

double BenchPercentile(const std::vector<double>& sorted, double p) {
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

BenchDistribution BenchDistributionOf(const std::vector<double>& seconds) {
  BenchDistribution d;
  if (seconds.empty()) return d;
  std::vector<double> ms;
  ms.reserve(seconds.size());
  for (double s : seconds) ms.push_back(s * 1000.0);
  std::sort(ms.begin(), ms.end());
  double sum = 0.0;
  for (double v : ms) sum += v;
  d.mean_ms = sum / static_cast<double>(ms.size());
  double squares = 0.0;
  for (double v : ms) squares += (v - d.mean_ms) * (v - d.mean_ms);
  d.std_ms = std::sqrt(squares / static_cast<double>(ms.size()));
  d.median_ms = BenchPercentile(ms, 50);
  d.p90_ms = BenchPercentile(ms, 90);
  d.p99_ms = BenchPercentile(ms, 99);
  d.max_ms = ms.back();
  return d;
}

BenchSummary SummarizeBench(const std::vector<BenchRequestRecord>& records, double duration_s) {
  BenchSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const BenchRequestRecord& r : records) {
    if (!r.ok()) {
      ++s.failed;
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    s.total_cached_tokens += r.cached_tokens;
    ttfts.push_back(r.Ttft());
    e2els.push_back(r.E2el());
    if (r.output_tokens > 1) tpots.push_back((r.E2el() - r.Ttft()) / (r.output_tokens - 1));
    const std::vector<double> request_itls = BenchInterTokenLatencies(r);
    itls.insert(itls.end(), request_itls.begin(), request_itls.end());
  }
  if (duration_s > 0.0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
  }
  s.ttft = BenchDistributionOf(ttfts);
  s.tpot = BenchDistributionOf(tpots);
  s.itl = BenchDistributionOf(itls);
  s.e2el = BenchDistributionOf(e2els);
  return s;
}

namespace {

void AddDistribution(nlohmann::json& j, const char* name, const BenchDistribution& d) {
  j[absl::StrCat("mean_", name, "_ms")] = d.mean_ms;
  j[absl::StrCat("median_", name, "_ms")] = d.median_ms;
  j[absl::StrCat("std_", name, "_ms")] = d.std_ms;
  j[absl::StrCat("p50_", name, "_ms")] = d.median_ms;
  j[absl::StrCat("p90_", name, "_ms")] = d.p90_ms;
  j[absl::StrCat("p99_", name, "_ms")] = d.p99_ms;
  j[absl::StrCat("max_", name, "_ms")] = d.max_ms;
}

// Python's "{s:{c}^{n}}".format(...): centred, the odd fill character on the right.
std::string Centered(absl::string_view text, char fill, size_t width = 50) {
  if (text.size() >= width) return std::string(text);
  const size_t left = (width - text.size()) / 2;
  return absl::StrCat(std::string(left, fill), text, std::string(width - text.size() - left, fill));
}

void AddLine(std::string& out, absl::string_view label, int64_t value) {
  absl::StrAppendFormat(&out, "%-40s %-10d\n", label, value);
}

void AddLine(std::string& out, absl::string_view label, double value) {
  absl::StrAppendFormat(&out, "%-40s %-10.2f\n", label, value);
}

void AddSection(std::string& out, absl::string_view heading, absl::string_view name,
                const BenchDistribution& d) {
  absl::StrAppend(&out, Centered(heading, '-'), "\n");
  AddLine(out, absl::StrCat("Mean ", name, " (ms):"), d.mean_ms);
  AddLine(out, absl::StrCat("Median ", name, " (ms):"), d.median_ms);
  AddLine(out, absl::StrCat("P90 ", name, " (ms):"), d.p90_ms);
  AddLine(out, absl::StrCat("P99 ", name, " (ms):"), d.p99_ms);
}

}  // namespace

nlohmann::json BenchResultJson(const BenchSummary& s,
                               const std::vector<BenchRequestRecord>& records) {
  nlohmann::json j;
  j["completed"] = s.completed;
  j["failed"] = s.failed;
  j["duration"] = s.duration_s;
  j["total_input_tokens"] = s.total_input_tokens;
  j["total_output_tokens"] = s.total_output_tokens;
  j["total_cached_tokens"] = s.total_cached_tokens;
  j["request_throughput"] = s.request_throughput;
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  AddDistribution(j, "ttft", s.ttft);
  AddDistribution(j, "tpot", s.tpot);
  AddDistribution(j, "itl", s.itl);
  AddDistribution(j, "e2el", s.e2el);
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array(),
                 cached_lens = nlohmann::json::array(), ttfts = nlohmann::json::array(),
                 itls = nlohmann::json::array(), errors = nlohmann::json::array();
  for (const BenchRequestRecord& r : records) {
    input_lens.push_back(r.prompt_tokens);
    output_lens.push_back(r.ok() ? r.output_tokens : 0);
    cached_lens.push_back(r.ok() ? r.cached_tokens : 0);
    ttfts.push_back(r.ok() ? r.Ttft() : 0.0);
    itls.push_back(r.ok() ? BenchInterTokenLatencies(r) : std::vector<double>());
    errors.push_back(r.error);
  }
  j["input_lens"] = std::move(input_lens);
  j["output_lens"] = std::move(output_lens);
  j["cached_lens"] = std::move(cached_lens);
  j["ttfts"] = std::move(ttfts);
  j["itls"] = std::move(itls);
  j["errors"] = std::move(errors);
  return j;
}

std::string FormatBenchTable(const BenchSummary& s, std::string_view title,
                             std::optional<int> max_concurrency) {
  std::string out = Centered(absl::StrCat(" ", std::string(title), " "), '=') + "\n";
  AddLine(out, "Successful requests:", s.completed);
  AddLine(out, "Failed requests:", s.failed);
  if (max_concurrency.has_value())
    AddLine(out, "Maximum request concurrency:", int64_t{*max_concurrency});
  AddLine(out, "Benchmark duration (s):", s.duration_s);
  AddLine(out, "Total input tokens:", s.total_input_tokens);
  AddLine(out, "Total cached input tokens:", s.total_cached_tokens);
  AddLine(out, "Total generated tokens:", s.total_output_tokens);
  AddLine(out, "Request throughput (req/s):", s.request_throughput);
  AddLine(out, "Output token throughput (tok/s):", s.output_throughput);
  AddLine(out, "Total Token throughput (tok/s):", s.total_token_throughput);
  AddSection(out, "Time to First Token", "TTFT", s.ttft);
  AddSection(out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  AddSection(out, "Inter-token Latency", "ITL", s.itl);
  AddSection(out, "End-to-end Latency", "E2EL", s.e2el);
  absl::StrAppend(&out, std::string(50, '='), "\n");
  return out;
}

}  // namespace lattice
