// The JSON object printed per prompt by `lattice run --json` and `lattice generate --json`
// (and mirrored by tests/e2e/python_client.py). One function, so that the offline engine's
// lines and the server's lines compare equal as text.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "coordinator/scheduler.h"
#include "lattice/v1/lattice.pb.h"

namespace lattice {

// {"finish_reason":"length"|"stop","logprobs":[[[id,logprob],...],...],"output_ids":[...],
//  "prompt_ids":[...]}: `logprobs` has one list per output token (best first), or is empty
// when none were asked for. nlohmann::json keeps keys sorted, so dump() prints them in that
// order whatever order they were added in.
nlohmann::json ResultToJson(const std::vector<int32_t>& prompt_ids,
                            const std::vector<int32_t>& output_ids,
                            const std::vector<TokenLogprobs>& logprobs, FinishReason finish_reason);

// Adds "text" (the output's text) and, when a stop string ended it, "stop_string".
void AddTextToJson(const std::string& text, const std::string& stop_string, nlohmann::json& j);

// What `run` and `generate` print per prompt without --json: with `text` (the model has
// a tokenizer) the prompt's text (for a text prompt) followed by the output's, ending in a
// newline; without, "prompt [ids] -> [ids] (finish reason)".
std::string ResultToText(const v1::GenerateRequest& request, const std::vector<int32_t>& prompt_ids,
                         const std::vector<int32_t>& output_ids, FinishReason finish_reason,
                         const std::string* text);

}  // namespace lattice
