// `lattice bench offline` (see bench_offline.h).
#include "cli/bench_offline.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "worker/model_config.h"

namespace lattice {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice bench offline: %s\n", std::string(status.message()).c_str());
  return 2;
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

}  // namespace

void AddBenchOfflineFlags(CLI::App& app, BenchOfflineOptions& o) {
  AddRunEngineFlags(app, o.engine);
  AddBenchWorkloadFlags(app, o.workload);
  app.add_flag("--ignore-eos", o.ignore_eos, "Generate every request's output length (do not stop at eos)");
  app.add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)")->check(CLI::NonNegativeNumber);
  app.add_option("--result-json", o.result_json, "Write the result as JSON to FILE");
}

int BenchOfflineCommand(const BenchOfflineOptions& o, const std::vector<std::string>& argv) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.engine.model_dir);
  if (!config.ok()) return Fail(config.status());
  const BenchModelLimits limits{
      .vocab_size = config->vocab_size,
      .max_model_len = o.engine.max_model_len > 0 ? o.engine.max_model_len : DefaultMaxModelLen(*config),
      .eos_token_ids = config->eos_token_ids};
  absl::StatusOr<std::vector<BenchRequest>> workload = BuildBenchWorkload(o.workload, limits);
  if (!workload.ok()) return Fail(workload.status());
  std::vector<GenerationRequest> requests;
  requests.reserve(workload->size());
  for (size_t i = 0; i < workload->size(); ++i) {
    GenerationRequest r;
    r.prompt_ids = (*workload)[i].prompt_ids;
    r.max_tokens = (*workload)[i].output_len;
    r.ignore_eos = o.ignore_eos;
    r.sampling = DefaultSampling();
    r.sampling.set_temperature(o.temperature);
    r.sampling.set_seed(o.workload.seed + i);
    requests.push_back(std::move(r));
  }
  return RunGeneration(o.engine, argv, requests, [&](const RunOutcome& outcome) {
    int64_t input_tokens = 0, output_tokens = 0, cached_tokens = 0;
    for (const GenerationResult& r : outcome.results) {
      input_tokens += static_cast<int64_t>(r.prompt_ids.size());
      output_tokens += static_cast<int64_t>(r.output_ids.size());
      cached_tokens += r.num_cached_tokens;
    }
    const double t = outcome.elapsed_s > 0 ? outcome.elapsed_s : 1e-9;
    const double n = static_cast<double>(outcome.results.size());
    nlohmann::json j = BenchWorkloadJson(o.workload);
    j["date"] = UtcNow();
    j["backend"] = "lattice-offline";
    j["model"] = o.engine.model_dir;
    j["device"] = o.engine.device;
    j["layout"] = o.engine.layout.parallel().ToString();
    j["num_micro_batches"] = o.engine.layout.num_micro_batches;
    j["ignore_eos"] = o.ignore_eos;
    j["max_num_batched_tokens"] = o.engine.max_num_batched_tokens;
    j["max_num_seqs"] = o.engine.max_num_seqs;
    j["num_kv_blocks"] = outcome.num_kv_blocks;
    j["elapsed_time"] = outcome.elapsed_s;
    j["num_requests"] = outcome.results.size();
    j["total_input_tokens"] = input_tokens;
    j["total_output_tokens"] = output_tokens;
    j["total_cached_tokens"] = cached_tokens;
    j["total_num_tokens"] = input_tokens + output_tokens;
    j["requests_per_second"] = n / t;
    j["tokens_per_second"] = static_cast<double>(input_tokens + output_tokens) / t;
    j["output_tokens_per_second"] = static_cast<double>(output_tokens) / t;
    j["num_steps"] = outcome.stats.num_steps;
    j["num_preemptions"] = outcome.stats.num_preemptions;
    j["mean_tokens_per_step"] =
        outcome.stats.num_steps > 0 ? static_cast<double>(outcome.stats.num_computed_tokens) / outcome.stats.num_steps : 0;
    std::cout << absl::StrFormat(
        "Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s\n"
        "Total num prompt tokens:  %d\nTotal num output tokens:  %d\nElapsed (s): %.3f, steps %d, preemptions %d\n",
        n / t, static_cast<double>(input_tokens + output_tokens) / t, static_cast<double>(output_tokens) / t,
        input_tokens, output_tokens, outcome.elapsed_s, outcome.stats.num_steps, outcome.stats.num_preemptions);
    std::cout.flush();
    if (!o.result_json.empty()) {
      std::ofstream out(o.result_json);
      out << j.dump(2) << "\n";
      if (!out) std::fprintf(stderr, "lattice bench offline: cannot write %s\n", o.result_json.c_str());
    }
  });
}

}  // namespace lattice
