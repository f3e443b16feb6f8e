// `lattice run`: load a model in-process, generate for each prompt, print JSON lines.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/layout_flags.h"
#include "cli/offline_engine.h"
#include "cli/sampling_flags.h"
#include "cli/text_flags.h"

namespace lattice {

struct RunCommandOptions {
  std::string model_dir;
  TextFlags text;                // prompts (ids, text, chats) and stop strings
  std::string tokenizer;         // default: model_dir
  std::string chat_template;     // overrides the model's chat template
  int max_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  uint64_t seed = 0;
  SamplingControlFlags sampling_controls;  // penalties, min_tokens, logit_bias
  int logprobs = 0;
  bool ignore_eos = false;
  bool json = false;
  int block_size = 16;
  int num_kv_blocks = 0;           // 0: enough for every prompt at full length
  int max_num_batched_tokens = 2048;  // token budget per step (chunked prefill)
  int max_num_seqs = 256;             // sequences per step
  int max_model_len = 0;              // 0: from the config
  // The device: cpu (the f32 reference) or cuda (one GPU per rank).
  std::string device = "cpu";
  std::string load_format = "auto";  // auto: safetensors; dummy: random weights from config.json
  std::string dtype = "auto";        // cuda: auto (the checkpoint's), bfloat16, float16, float32
  double gpu_memory_utilization = 0.9;
  bool no_cuda_graphs = false;

  LayoutFlags layout;  // world size = tp * pp * dp
  // Set by a launcher other than `lattice run` itself (or by it, for its children).
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<std::string> store_host;
  std::optional<int> store_port;
  std::string trace_path;      // per-rank step trace: PATH.rankN.jsonl
};

void AddRunCommandFlags(CLI::App& app, RunCommandOptions& options);
// The model, layout, device, scheduler and launcher flags alone (what `bench offline`
// shares with `run`).
void AddRunEngineFlags(CLI::App& app, RunCommandOptions& options);
// `argv` is the process's own command line: the local launcher re-executes it, once per
// extra rank, with --rank/--world-size/--store-* appended.
int RunCommand(const RunCommandOptions& options, const std::vector<std::string>& argv);

// What a run produced, on the rank that drives it (rank 0).
struct RunOutcome {
  std::vector<GenerationResult> results;  // in input order
  SchedulerStats stats;
  int32_t num_kv_blocks = 0;  // per DP rank
  double elapsed_s = 0;       // generation only: from the first step to the last result
};
using RunDone = std::function<void(const RunOutcome&)>;

// Runs `requests` as `lattice run` does (one rank in-process, or several: started
// here by re-executing `argv` per rank, or under a launcher), with the model, layout,
// device and scheduler flags of `options` (its prompt and sampling flags are
// unused). Calls `done` on rank 0. Returns the exit code (2 after printing an error).
// Every rank must pass the same requests.
// `token_hook` (optional) runs on rank 0 for every output token and may end a request
// (see TokenHook).
int RunGeneration(const RunCommandOptions& options, const std::vector<std::string>& argv,
                  const std::vector<GenerationRequest>& requests, const RunDone& done,
                  const TokenHook& token_hook = {});

}  // namespace lattice
