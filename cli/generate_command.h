// `lattice generate`: a client of a running Lattice server over the public lattice.v1 API.
// Sends one streaming Generate RPC per prompt, all in flight at once, and prints what
// `lattice run` prints (with --json, the same JSON lines in input order), so a served run
// and an offline run of the same prompts compare line by line.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/sampling_flags.h"
#include "cli/text_flags.h"

namespace lattice {

struct GenerateCommandOptions {
  std::string server;  // HOST:PORT
  TextFlags text;      // prompts (ids, text, chats) and stop strings
  int max_tokens = 16;
  float temperature = 0.0f;
  std::optional<float> top_p;  // unset: the request leaves it unset (off)
  int top_k = 0;
  float min_p = 0.0f;
  std::optional<uint64_t> seed;  // unset: the server picks one
  SamplingControlFlags sampling_controls;  // penalties, min_tokens, logit_bias
  int logprobs = 0;
  bool ignore_eos = false;
  std::string stop_token_ids;  // comma-separated; empty: none
  bool json = false;
  bool stream = false;  // ids: echo each chunk to stderr; text (one prompt): print it as it comes
  // Deadline of every RPC, counted from the start of the command: reaching the server and
  // generating must both fit in it. 0: no deadline.
  double timeout_s = 60.0;
};

void AddGenerateCommandFlags(CLI::App& app, GenerateCommandOptions& options);
// Returns the process exit code: 0, or 2 when the command line is wrong or any RPC failed
// (each failure printed to stderr as `lattice generate: <CODE>: <message>`).
int GenerateCommand(const GenerateCommandOptions& options);

}  // namespace lattice
