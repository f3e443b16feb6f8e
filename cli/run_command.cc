// `lattice run` (see run_command.h).
#include "cli/run_command.h"

#include <charconv>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "worker/engine.h"
#include "worker/model.h"
#include "worker/model_config.h"

namespace lattice {
namespace {

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    int32_t id = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), id);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: '", part, "' in \"", text,
                                                     "\" is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

nlohmann::json ResultToJson(const GenerationResult& result) {
  nlohmann::json logprobs = nlohmann::json::array();
  for (const TokenLogprobs& token : result.logprobs) {
    nlohmann::json pairs = nlohmann::json::array();
    for (const auto& [id, logprob] : token) pairs.push_back({id, logprob});
    logprobs.push_back(std::move(pairs));
  }
  return {{"prompt_ids", result.prompt_ids},
          {"output_ids", result.output_ids},
          {"logprobs", std::move(logprobs)},
          {"finish_reason", std::string(FinishReasonName(result.finish_reason))}};
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lattice run: %s\n", std::string(status.message()).c_str());
  return 2;
}

}  // namespace

void AddRunCommandFlags(CLI::App& app, RunCommandOptions& o) {
  app.add_option("--model", o.model_dir, "Model directory (config.json + safetensors)")->required();
  app.add_option("--prompt-ids", o.prompt_ids, "Comma-separated prompt token ids; repeat for more prompts")
      ->required();
  app.add_option("--max-tokens", o.max_tokens, "Tokens to generate per prompt");
  app.add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)");
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass (1: off)");
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 or -1: off)");
  app.add_option("--min-p", o.min_p, "Drop tokens below min_p times the top probability (0: off)");
  app.add_option("--seed", o.seed, "Per-request sampling seed (each prompt uses it)");
  app.add_option("--logprobs", o.logprobs, "Top-k logprobs to return per output token");
  app.add_flag("--ignore-eos", o.ignore_eos, "Do not stop at the end-of-sequence token");
  app.add_flag("--json", o.json, "One JSON object per prompt, one per line");
  app.add_option("--block-size", o.block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  app.add_option("--num-kv-blocks", o.num_kv_blocks, "KV cache blocks (0: enough for every prompt)");
  app.add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "Token budget per step")
      ->check(CLI::Range(1, 1 << 20));
}

int RunCommand(const RunCommandOptions& o) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(o.model_dir);
  if (!config.ok()) return Fail(config.status());

  std::vector<GenerationRequest> requests;
  int64_t blocks_for_all = 0;
  for (const std::string& text : o.prompt_ids) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseIds(text);
    if (!ids.ok()) return Fail(ids.status());
    GenerationRequest request;
    request.prompt_ids = *std::move(ids);
    request.max_tokens = o.max_tokens;
    request.ignore_eos = o.ignore_eos;
    request.num_logprobs = o.logprobs;
    request.sampling = {o.temperature, o.top_k, o.top_p, o.min_p, o.seed};
    blocks_for_all += NumBlocksFor(static_cast<int64_t>(request.prompt_ids.size()) + std::max(o.max_tokens, 0),
                                   o.block_size);
    requests.push_back(std::move(request));
  }

  absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(o.model_dir, *config);
  if (!model.ok()) return Fail(model.status());

  EngineOptions options;
  options.kv_cache.block_size = o.block_size;
  options.kv_cache.num_blocks =
      o.num_kv_blocks > 0 ? o.num_kv_blocks : static_cast<int32_t>(std::max<int64_t>(blocks_for_all, 1));
  options.max_num_batched_tokens = o.max_num_batched_tokens;
  Engine engine(**model, options);
  absl::StatusOr<std::vector<GenerationResult>> results = engine.Generate(requests);
  if (!results.ok()) return Fail(results.status());

  const EngineStats& stats = engine.stats();
  std::fprintf(stderr, "lattice run: steps=%lld preemptions=%lld max_step_tokens=%lld kv_blocks=%d\n",
               static_cast<long long>(stats.num_steps), static_cast<long long>(stats.num_preemptions),
               static_cast<long long>(stats.max_tokens_in_step), options.kv_cache.num_blocks);
  for (const GenerationResult& result : *results) {
    if (o.json) {
      std::cout << ResultToJson(result).dump() << "\n";
    } else {
      std::cout << "prompt " << nlohmann::json(result.prompt_ids).dump() << " -> "
                << nlohmann::json(result.output_ids).dump() << " (" << FinishReasonName(result.finish_reason)
                << ")\n";
    }
  }
  std::cout.flush();
  return 0;
}

}  // namespace lattice
