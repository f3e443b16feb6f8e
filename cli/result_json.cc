// The per-prompt JSON object of `lattice run` and `lattice generate` (see result_json.h).
#include "cli/result_json.h"

#include "absl/strings/str_cat.h"

#include <string>
#include <utility>

namespace lattice {

nlohmann::json ResultToJson(const std::vector<int32_t>& prompt_ids,
                            const std::vector<int32_t>& output_ids,
                            const std::vector<TokenLogprobs>& logprobs,
                            FinishReason finish_reason) {
  nlohmann::json logprobs_json = nlohmann::json::array();
  for (const TokenLogprobs& token : logprobs) {
    nlohmann::json pairs = nlohmann::json::array();
    // The float goes into the JSON unchanged (widened to double), so both commands print
    // the same digits for the same float whichever path it took.
    for (const auto& [id, logprob] : token) pairs.push_back({id, logprob});
    logprobs_json.push_back(std::move(pairs));
  }
  return {{"prompt_ids", prompt_ids},
          {"output_ids", output_ids},
          {"logprobs", std::move(logprobs_json)},
          {"finish_reason", std::string(FinishReasonName(finish_reason))}};
}

void AddTextToJson(const std::string& text, const std::string& stop_string, nlohmann::json& j) {
  j["text"] = text;
  if (!stop_string.empty()) j["stop_string"] = stop_string;
}

std::string ResultToText(const v1::GenerateRequest& request, const std::vector<int32_t>& prompt_ids,
                         const std::vector<int32_t>& output_ids, FinishReason finish_reason,
                         const std::string* text) {
  if (text == nullptr) {
    return absl::StrCat("prompt ", nlohmann::json(prompt_ids).dump(), " -> ", nlohmann::json(output_ids).dump(),
                        " (", std::string(FinishReasonName(finish_reason)), ")");
  }
  return absl::StrCat(request.prompt(), *text, "\n");
}

}  // namespace lattice
