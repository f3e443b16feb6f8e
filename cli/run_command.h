// `lattice run`: load a model in-process, generate for each prompt, print JSON lines.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lattice {

struct RunCommandOptions {
  std::string model_dir;
  std::vector<std::string> prompt_ids;  // one comma-separated list per prompt
  int max_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  uint64_t seed = 0;
  int logprobs = 0;
  bool ignore_eos = false;
  bool json = false;
  int block_size = 16;
  int num_kv_blocks = 0;           // 0: enough for every prompt at full length
  int max_num_batched_tokens = 2048;  // token budget per step (chunked prefill)
};

void AddRunCommandFlags(CLI::App& app, RunCommandOptions& options);
int RunCommand(const RunCommandOptions& options);

}  // namespace lattice
