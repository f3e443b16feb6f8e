// The shared sampling-control flags (see sampling_flags.h).
#include "cli/sampling_flags.h"

#include <charconv>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lattice {

void AddSamplingControlFlags(CLI::App& app, SamplingControlFlags& f) {
  app.add_option("--repetition-penalty", f.repetition_penalty,
                 "Divide positive logits of tokens in the prompt or output so far by it, multiply the others (> 0; "
                 "1: off)");
  app.add_option("--presence-penalty", f.presence_penalty,
                 "Subtract from the logit of every token already in the output ([-2, 2]; 0: off)");
  app.add_option("--frequency-penalty", f.frequency_penalty,
                 "Subtract from a token's logit once per occurrence in the output ([-2, 2]; 0: off)");
  app.add_option("--min-tokens", f.min_tokens,
                 "Hold back the eos and stop tokens until this many tokens are generated (<= --max-tokens)");
  app.add_option("--logit-bias", f.logit_bias, "ID:BIAS[,ID:BIAS...]: add BIAS ([-100, 100]) to token ID's logit");
}

absl::StatusOr<std::vector<std::pair<int32_t, float>>> ParseLogitBias(const std::string& text, const char* flag) {
  std::vector<std::pair<int32_t, float>> pairs;
  absl::flat_hash_set<int32_t> seen;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    const auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", std::string(part), "' in \"", text, "\" ", why));
    };
    const size_t colon = part.find(':');
    if (colon == absl::string_view::npos) return bad("is not ID:BIAS");
    const absl::string_view id_text = part.substr(0, colon), bias_text = part.substr(colon + 1);
    int32_t id = 0;
    const auto [id_end, id_ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (id_text.empty() || id_ec != std::errc() || id_end != id_text.data() + id_text.size()) {
      return bad("does not start with a token id");
    }
    float bias = 0.0f;
    const auto [bias_end, bias_ec] = std::from_chars(bias_text.data(), bias_text.data() + bias_text.size(), bias);
    if (bias_text.empty() || bias_ec != std::errc() || bias_end != bias_text.data() + bias_text.size() ||
        !std::isfinite(bias)) {
      return bad("does not end with a bias");
    }
    if (!seen.insert(id).second) return bad("repeats a token id");
    pairs.emplace_back(id, bias);
  }
  return pairs;
}

}  // namespace lattice
