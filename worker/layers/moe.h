// SparseMoe: a router picks top-k experts per token (softmax, optional
// renormalisation), experts are gated MLPs stored as stacked tensors, and an
// optional shared expert is added through its sigmoid gate (Qwen2-MoE).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/layers/linear.h"
#include "worker/layers/mlp.h"
#include "worker/model_config.h"

namespace lattice {

class SparseMoe {
 public:
  // Mixtral: `prefix` = model.layers.N.block_sparse_moe, experts w1 (gate), w3 (up), w2 (down).
  // Qwen-MoE: `prefix` = model.layers.N.mlp, experts gate_proj/up_proj/down_proj, and
  // shared_expert / shared_expert_gate when the config has a shared expert.
  static absl::StatusOr<SparseMoe> Load(Checkpoint& checkpoint, const std::string& prefix,
                                        const ModelConfig& config);
  // x [T, hidden] -> [T, hidden].
  Tensor Forward(const Tensor& x) const;

 private:
  int top_k_ = 0;
  bool renormalize_ = false;
  Linear router_;
  Tensor w13_;  // [E, 2I, hidden]: gate rows then up rows
  Tensor w2_;   // [E, hidden, I]
  std::optional<GatedMlp> shared_expert_;
  Linear shared_expert_gate_;  // [1, hidden]
};

}  // namespace lattice
