// The per-prompt JSON object of `lattice run` and `lattice generate` (see result_json.h).
#include "cli/result_json.h"

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

}  // namespace lattice
