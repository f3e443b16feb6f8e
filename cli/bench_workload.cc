// The workload of `lattice bench` (see bench_workload.h).
#include "cli/bench_workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lattice {

int64_t BenchRng::UniformInt(int64_t lo, int64_t hi) {
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
  if (range == 0) return static_cast<int64_t>(engine_());  // the whole 64-bit range
  // Rejection keeps every value equally likely (a plain modulo favours small ones).
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
  uint64_t x = engine_();
  while (x >= limit) x = engine_();
  return lo + static_cast<int64_t>(x % range);
}

double BenchRng::UniformDouble() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double BenchRng::Normal() {
  // Box-Muller; 1 - u is in (0, 1], so the log is finite.
  const double u1 = 1.0 - UniformDouble();
  const double u2 = UniformDouble();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

double BenchRng::Gamma(double shape) {
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    const double u = 1.0 - UniformDouble();
    return Gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = Normal();
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = 1.0 - UniformDouble();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

namespace {

// Draws token ids uniformly from the vocabulary minus the eos ids.
class TokenSampler {
 public:
  static absl::StatusOr<TokenSampler> Create(const BenchModelLimits& limits) {
    if (limits.vocab_size < 1 || limits.vocab_size > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model's vocab_size is ", limits.vocab_size));
    }
    std::set<int64_t> eos;
    for (int32_t id : limits.eos_token_ids) {
      if (id >= 0 && id < limits.vocab_size) eos.insert(id);
    }
    if (static_cast<int64_t>(eos.size()) >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("every id of the vocabulary (",
                                                     limits.vocab_size,
                                                     ") is an eos id; no prompt can avoid them"));
    }
    return TokenSampler(limits.vocab_size, std::vector<int64_t>(eos.begin(), eos.end()));
  }

  // Draws from [0, n) with n = vocab - |eos|, then steps over each eos id at or below it:
  // exact and without retries.
  int32_t Draw(BenchRng& rng) const {
    int64_t id = rng.UniformInt(0, vocab_size_ - static_cast<int64_t>(eos_.size()) - 1);
    for (int64_t e : eos_) {
      if (id >= e) ++id;
    }
    return static_cast<int32_t>(id);
  }

  void Append(BenchRng& rng, int64_t n, std::vector<int32_t>& out) const {
    for (int64_t i = 0; i < n; ++i) out.push_back(Draw(rng));
  }

 private:
  TokenSampler(int64_t vocab_size, std::vector<int64_t> eos)
      : vocab_size_(vocab_size), eos_(std::move(eos)) {}
  int64_t vocab_size_;
  std::vector<int64_t> eos_;  // sorted ascending
};

absl::Status CheckRange(const char* flag, double value, double lo, double hi) {
  if (!(value >= lo && value <= hi)) {  // also rejects NaN
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckFits(int64_t max_prompt, int64_t max_output, const BenchModelLimits& limits,
                       const std::string& flags) {
  if (max_prompt + max_output > limits.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(flags, " allow requests of up to ", max_prompt, " prompt + ", max_output,
                     " output = ", max_prompt + max_output,
                     " tokens, over the model's max_model_len of ", limits.max_model_len));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BenchRequest>> BuildRandom(const BenchWorkloadOptions& o,
                                                      const BenchModelLimits& limits,
                                                      const TokenSampler& tokens, BenchRng& rng) {
  if (absl::Status s = CheckRange("--random-input-len", o.random_input_len, 0, 1 << 30); !s.ok())
    return s;
  if (absl::Status s = CheckRange("--random-output-len", o.random_output_len, 1, 1 << 30); !s.ok())
    return s;
  if (absl::Status s = CheckRange("--random-prefix-len", o.random_prefix_len, 0, 1 << 30); !s.ok())
    return s;
  if (!(o.random_range_ratio >= 0.0 && o.random_range_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--random-range-ratio must be in [0, 1), got ", o.random_range_ratio));
  }
  const double r = o.random_range_ratio;
  // vLLM's bounds, floor below and ceil above, of the exact products (200 * 1.1 is 220, not
  // the 220.00000000000003 of doubles); at least one output token, and a prompt of at least
  // one token in all.
  auto floor = [](double x) { return static_cast<int64_t>(std::floor(x + 1e-9)); };
  auto ceil = [](double x) { return static_cast<int64_t>(std::ceil(x - 1e-9)); };
  const int64_t input_low =
      std::max<int64_t>(floor(o.random_input_len * (1 - r)), o.random_prefix_len > 0 ? 0 : 1);
  const int64_t input_high = std::max<int64_t>(ceil(o.random_input_len * (1 + r)), input_low);
  const int64_t output_low = std::max<int64_t>(floor(o.random_output_len * (1 - r)), 1);
  const int64_t output_high = std::max<int64_t>(ceil(o.random_output_len * (1 + r)), output_low);
  if (absl::Status s = CheckFits(
          o.random_prefix_len + input_high, output_high, limits,
          absl::StrCat("--random-prefix-len ", o.random_prefix_len, ", --random-input-len ",
                       o.random_input_len, ", --random-output-len ", o.random_output_len,
                       " and --random-range-ratio ", r));
      !s.ok()) {
    return s;
  }
  std::vector<int32_t> prefix;
  tokens.Append(rng, o.random_prefix_len, prefix);
  std::vector<BenchRequest> requests(o.num_prompts);
  for (BenchRequest& request : requests) {
    const int64_t input_len = rng.UniformInt(input_low, input_high);
    request.output_len = static_cast<int32_t>(rng.UniformInt(output_low, output_high));
    request.prompt_ids = prefix;
    tokens.Append(rng, input_len, request.prompt_ids);
    if (!prefix.empty()) request.prefix_group = 0;
  }
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> BuildPrefixRepetition(const BenchWorkloadOptions& o,
                                                                const BenchModelLimits& limits,
                                                                const TokenSampler& tokens,
                                                                BenchRng& rng) {
  if (absl::Status s =
          CheckRange("--prefix-repetition-prefix-len", o.prefix_repetition_prefix_len, 0, 1 << 30);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange("--prefix-repetition-suffix-len", o.prefix_repetition_suffix_len, 0, 1 << 30);
      !s.ok()) {
    return s;
  }
  if (o.prefix_repetition_prefix_len + static_cast<int64_t>(o.prefix_repetition_suffix_len) < 1) {
    return absl::InvalidArgumentError(
        "--prefix-repetition-prefix-len plus --prefix-repetition-suffix-len must be at least 1");
  }
  if (absl::Status s = CheckRange("--prefix-repetition-num-prefixes",
                                  o.prefix_repetition_num_prefixes, 1, std::max(1, o.num_prompts));
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange("--prefix-repetition-output-len", o.prefix_repetition_output_len, 1, 1 << 30);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckFits(
          o.prefix_repetition_prefix_len + static_cast<int64_t>(o.prefix_repetition_suffix_len),
          o.prefix_repetition_output_len, limits,
          "--prefix-repetition-prefix-len, --prefix-repetition-suffix-len and "
          "--prefix-repetition-output-len");
      !s.ok()) {
    return s;
  }
  std::vector<std::vector<int32_t>> prefixes(o.prefix_repetition_num_prefixes);
  for (std::vector<int32_t>& prefix : prefixes)
    tokens.Append(rng, o.prefix_repetition_prefix_len, prefix);
  std::vector<BenchRequest> requests(o.num_prompts);
  for (int i = 0; i < o.num_prompts; ++i) {
    BenchRequest& request = requests[i];
    request.prefix_group = i % o.prefix_repetition_num_prefixes;
    request.prompt_ids = prefixes[request.prefix_group];
    tokens.Append(rng, o.prefix_repetition_suffix_len, request.prompt_ids);
    request.output_len = o.prefix_repetition_output_len;
  }
  // Interleave the groups as vLLM does (a shuffle), so hits do not come only in runs.
  for (int i = o.num_prompts - 1; i > 0; --i)
    std::swap(requests[i], requests[rng.UniformInt(0, i)]);
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> BuildLengths(const BenchWorkloadOptions& o,
                                                       const BenchModelLimits& limits,
                                                       const TokenSampler& tokens, BenchRng& rng) {
  std::ifstream in(o.dataset_path);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat("--dataset-path ", o.dataset_path, ": cannot open the file"));
  std::vector<std::pair<int32_t, int32_t>> pairs;
  int64_t line_number = 0;
  int64_t num_too_long = 0;
  std::string first_too_long;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    int64_t input_len = 0, output_len = 0;
    std::string rest;
    if (!(fields >> input_len)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank or comment
    } else if ((fields >> output_len) && !(fields >> rest) && input_len >= 1 && output_len >= 1 &&
               input_len <= (1 << 30) && output_len <= (1 << 30)) {
      if (input_len + output_len > limits.max_model_len) {
        if (num_too_long++ == 0) {
          first_too_long = absl::StrCat("line ", line_number, ": ", input_len, " + ", output_len);
        }
        continue;
      }
      pairs.emplace_back(static_cast<int32_t>(input_len), static_cast<int32_t>(output_len));
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        o.dataset_path, ":", line_number,
        ": expected \"input_len output_len\" (two integers >= 1), got \"", line, "\""));
  }
  if (num_too_long > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.dataset_path, ": ", num_too_long, " pairs exceed the model's max_model_len of ",
        limits.max_model_len, " (first: ", first_too_long, "); filter them out of the file"));
  }
  if (pairs.empty())
    return absl::InvalidArgumentError(absl::StrCat(o.dataset_path, ": no length pairs"));
  std::vector<BenchRequest> requests(o.num_prompts);
  for (BenchRequest& request : requests) {
    const auto& [input_len, output_len] =
        pairs[rng.UniformInt(0, static_cast<int64_t>(pairs.size()) - 1)];
    tokens.Append(rng, input_len, request.prompt_ids);
    request.output_len = output_len;
  }
  return requests;
}

}  // namespace

void AddBenchWorkloadFlags(CLI::App& app, BenchWorkloadOptions& o) {
  // Ranges are checked by BuildBenchWorkload, which names the flag and returns a status.
  app.add_option("--num-prompts", o.num_prompts, "Number of requests to send (1 to 1000000)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the prompts, lengths and arrival times")
      ->capture_default_str();
  app.add_option("--dataset-name", o.dataset_name, "random | prefix_repetition | lengths")
      ->capture_default_str();
  app.add_option(
      "--dataset-path", o.dataset_path,
      "lengths: a file of \"input_len output_len\" lines (# comments), sampled with replacement");
  app.add_option("--random-input-len", o.random_input_len,
                 "random: prompt tokens per request (after the prefix)")
      ->capture_default_str();
  app.add_option("--random-output-len", o.random_output_len, "random: output tokens per request")
      ->capture_default_str();
  app.add_option("--random-range-ratio", o.random_range_ratio,
                 "random: lengths uniform in [len * (1 - r), len * (1 + r)], r in [0, 1)")
      ->capture_default_str();
  app.add_option("--random-prefix-len", o.random_prefix_len,
                 "random: tokens of a prefix shared by every prompt")
      ->capture_default_str();
  app.add_option("--prefix-repetition-prefix-len", o.prefix_repetition_prefix_len,
                 "prefix_repetition: tokens per shared prefix")
      ->capture_default_str();
  app.add_option("--prefix-repetition-suffix-len", o.prefix_repetition_suffix_len,
                 "prefix_repetition: tokens after the prefix, unique per request")
      ->capture_default_str();
  app.add_option("--prefix-repetition-num-prefixes", o.prefix_repetition_num_prefixes,
                 "prefix_repetition: distinct prefixes, shared round-robin")
      ->capture_default_str();
  app.add_option("--prefix-repetition-output-len", o.prefix_repetition_output_len,
                 "prefix_repetition: output tokens per request")
      ->capture_default_str();
}

absl::Status CheckBenchWorkloadOptions(const BenchWorkloadOptions& o) {
  if (o.num_prompts < 1 || o.num_prompts > kMaxBenchPrompts) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num-prompts must be in [1, ", kMaxBenchPrompts, "], got ", o.num_prompts));
  }
  if (o.dataset_name != "random" && o.dataset_name != "prefix_repetition" &&
      o.dataset_name != "lengths") {
    return absl::InvalidArgumentError(
        absl::StrCat("--dataset-name must be random, prefix_repetition or lengths, got \"",
                     o.dataset_name, "\""));
  }
  if (o.dataset_name == "lengths" && o.dataset_path.empty()) {
    return absl::InvalidArgumentError("--dataset-name lengths needs --dataset-path FILE");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BenchRequest>> BuildBenchWorkload(const BenchWorkloadOptions& o,
                                                             const BenchModelLimits& limits) {
  if (absl::Status s = CheckBenchWorkloadOptions(o); !s.ok()) return s;
  absl::StatusOr<TokenSampler> tokens = TokenSampler::Create(limits);
  if (!tokens.ok()) return tokens.status();
  BenchRng rng(o.seed);
  if (o.dataset_name == "random") return BuildRandom(o, limits, *tokens, rng);
  if (o.dataset_name == "prefix_repetition") return BuildPrefixRepetition(o, limits, *tokens, rng);
  return BuildLengths(o, limits, *tokens, rng);
}

nlohmann::json BenchWorkloadJson(const BenchWorkloadOptions& o) {
  nlohmann::json j = {
      {"num_prompts", o.num_prompts}, {"seed", o.seed}, {"dataset_name", o.dataset_name}};
  if (o.dataset_name == "random") {
    j["random_input_len"] = o.random_input_len;
    j["random_output_len"] = o.random_output_len;
    j["random_range_ratio"] = o.random_range_ratio;
    j["random_prefix_len"] = o.random_prefix_len;
  } else if (o.dataset_name == "prefix_repetition") {
    j["prefix_repetition_prefix_len"] = o.prefix_repetition_prefix_len;
    j["prefix_repetition_suffix_len"] = o.prefix_repetition_suffix_len;
    j["prefix_repetition_num_prefixes"] = o.prefix_repetition_num_prefixes;
    j["prefix_repetition_output_len"] = o.prefix_repetition_output_len;
  } else if (o.dataset_name == "lengths") {
    j["dataset_path"] = o.dataset_path;
  }
  return j;
}

std::vector<double> BenchArrivalTimes(int num_requests, double request_rate, double burstiness,
                                      uint64_t seed) {
  std::vector<double> times(std::max(num_requests, 0), 0.0);
  if (!(request_rate > 0.0) || std::isinf(request_rate)) return times;
  // Its own stream (vLLM's numpy stream is separate from its prompts' too).
  BenchRng rng(seed ^ 0x9e3779b97f4a7c15ull);
  const double scale =
      1.0 / (request_rate * burstiness);  // mean interval = shape * scale = 1 / rate
  // The first request goes at once; each later one one interval after its predecessor.
  for (int i = 1; i < num_requests; ++i) times[i] = times[i - 1] + rng.Gamma(burstiness) * scale;
  return times;
}

}  // namespace lattice
