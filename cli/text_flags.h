// The prompt and text flags `lattice run` and `lattice generate` share: token-id
// prompts, text prompts, one-message chats, stop strings. Both turn them into
// lattice.v1.GenerateRequests (the server's request; `run` prepares those with the same
// TextService the coordinator uses), so the two accept and print the same things.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lattice/v1/lattice.pb.h"

namespace lattice {

struct TextFlags {
  std::vector<std::string> prompt_ids;  // --prompt-ids: one comma-separated list per prompt
  std::vector<std::string> prompts;     // --prompt TEXT
  std::vector<std::string> chats;       // --chat TEXT: a one-message chat (role user)
  std::string system;                   // --system TEXT: a system message before each chat
  std::vector<std::string> stop;        // --stop STRING
  bool include_stop_str_in_output = false;
  bool keep_special_tokens = false;  // --no-skip-special-tokens
};

// Adds the flags; `app` requires at least one prompt of any kind at parse time.
void AddTextFlags(CLI::App& app, TextFlags& flags);

// One request per prompt with only its prompt and text fields set, in the order
// --prompt-ids, --prompt, --chat (each in the order given).
absl::StatusOr<std::vector<v1::GenerateRequest>> BuildPromptRequests(const TextFlags& flags);

}  // namespace lattice
