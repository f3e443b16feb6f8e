// Layout checks and shard assignment (see layout.h).
#include "worker/layout.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lattice {
namespace {

// [first, end) layer ranges per stage.
std::vector<std::pair<int, int>> StageLayers(int64_t num_layers, int pp, const std::vector<int>& pp_layers) {
  std::vector<int> counts = pp_layers;
  if (counts.empty()) {
    // Even split; the remainder goes to the first stages (the last also runs the head).
    for (int s = 0; s < pp; ++s) counts.push_back(static_cast<int>(num_layers / pp + (s < num_layers % pp ? 1 : 0)));
  }
  std::vector<std::pair<int, int>> ranges;
  int first = 0;
  for (int c : counts) {
    ranges.emplace_back(first, first + c);
    first += c;
  }
  return ranges;
}

}  // namespace

absl::Status ValidateLayoutForModel(const ModelConfig& c, const ParallelConfig& p, const std::vector<int>& pp_layers) {
  const int tp = p.tp;
  if (tp > c.num_attention_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", tp, " is larger than the model's num_attention_heads ", c.num_attention_heads));
  }
  if (c.num_attention_heads % tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_attention_heads ", c.num_attention_heads, " is not divisible by tp ", tp));
  }
  if (c.num_key_value_heads % tp != 0 && tp % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_key_value_heads ", c.num_key_value_heads,
                                                   " and tp ", tp, ": neither divides the other"));
  }
  auto divisible = [&](const char* field, int64_t value, int by, const char* name) -> absl::Status {
    if (value % by == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, " ", value, " is not divisible by ", name, " ", by));
  };
  const bool has_dense = c.num_experts == 0 ||
                         std::find(c.layer_is_moe.begin(), c.layer_is_moe.end(), false) != c.layer_is_moe.end();
  if (has_dense) {
    if (absl::Status s = divisible("intermediate_size", c.intermediate_size, tp, "tp"); !s.ok()) return s;
  }
  if (c.shared_expert_intermediate_size > 0) {
    if (absl::Status s = divisible("shared_expert_intermediate_size", c.shared_expert_intermediate_size, tp, "tp");
        !s.ok()) {
      return s;
    }
  }
  if (p.ep > 1) {
    if (c.num_experts == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("ep ", p.ep, " needs a mixture-of-experts model; ", c.architecture_name, " is dense"));
    }
    if (absl::Status s = divisible("num_experts", c.num_experts, p.ep, "ep"); !s.ok()) return s;
  } else if (c.num_experts > 0) {
    if (absl::Status s = divisible("moe_intermediate_size", c.moe_intermediate_size, tp, "tp"); !s.ok()) return s;
  }
  if (p.pp > c.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("pp ", p.pp, " is larger than the model's num_hidden_layers ", c.num_hidden_layers));
  }
  if (!pp_layers.empty()) {
    if (static_cast<int>(pp_layers.size()) != p.pp) {
      return absl::InvalidArgumentError(
          absl::StrCat("--pp-layers lists ", pp_layers.size(), " stages but pp is ", p.pp));
    }
    for (int n : pp_layers) {
      if (n < 1) return absl::InvalidArgumentError("--pp-layers: every stage needs at least one layer");
    }
    const int64_t sum = std::accumulate(pp_layers.begin(), pp_layers.end(), int64_t{0});
    if (sum != c.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("--pp-layers ", absl::StrJoin(pp_layers, ","), " sums to ", sum,
                                                     " but the model has ", c.num_hidden_layers, " layers"));
    }
  }
  return absl::OkStatus();
}

ModelShard ShardFor(const ModelConfig& config, const RankLayout& layout, int rank, const std::vector<int>& pp_layers) {
  const RankCoords coords = layout.Coords(rank);
  const ParallelConfig& p = layout.config();
  ModelShard shard;
  shard.tp = {coords.tp_rank, p.tp};
  shard.ep = p.ep > 1 ? Shard{coords.ep_rank, p.ep} : Shard{};
  const auto ranges = StageLayers(config.num_hidden_layers, p.pp, pp_layers);
  shard.first_layer = ranges[coords.pp_rank].first;
  shard.end_layer = ranges[coords.pp_rank].second;
  return shard;
}

}  // namespace lattice
