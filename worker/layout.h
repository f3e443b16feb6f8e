// Which part of a model each rank of a layout holds, and whether a layout can
// shard a model at all (checked before any weight loads).
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "parallel/rank_layout.h"
#include "worker/model.h"
#include "worker/model_config.h"

namespace lattice {

// INVALID_ARGUMENT when the layout cannot shard this model (tp larger than the heads
// or not dividing them, widths not divisible, experts not divisible by ep, ep on a
// dense model, pp larger than the layers, a bad --pp-layers).
absl::Status ValidateLayoutForModel(const ModelConfig& config, const ParallelConfig& parallel,
                                    const std::vector<int>& pp_layers);

// The shard of the model that `rank` holds.
ModelShard ShardFor(const ModelConfig& config, const RankLayout& layout, int rank,
                    const std::vector<int>& pp_layers);

}  // namespace lattice
