// SparseMoe: a router picks top-k experts per token (softmax, optional
// renormalisation); experts are gated MLPs stored stacked; an optional shared expert
// is added through its sigmoid gate (Qwen2-MoE).
//
// Two ways to spread the experts over the ranks of a pipeline stage:
//   - tensor parallel (ep == 1): every rank holds every expert, each its TP slice of
//     the expert width; partial sums are all-reduced over TP.
//   - expert parallel (ep == dp * tp): each rank holds E / ep whole experts. The TP
//     ranks of a DP group hold the same tokens and share them out (token t goes with
//     TP rank t % tp); each (token, expert) pair is sent to the expert's owner with an
//     all-to-all, computed there, sent back with a second all-to-all and combined at
//     its source; a TP all-reduce then gives every TP rank every token again.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/forward_context.h"
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
                                        const ModelConfig& config, Shard tp, Shard ep);
  // x [T, hidden] -> [T, hidden], reduced: every TP rank gets the whole result.
  Tensor Forward(const Tensor& x, ForwardContext& context) const;

  // For backends that run the layer elsewhere (the CUDA model).
  int top_k() const { return top_k_; }
  bool renormalize() const { return renormalize_; }
  int64_t first_local_expert() const { return first_local_expert_; }
  const Linear& router() const { return router_; }
  const Tensor& w13() const { return w13_; }
  const Tensor& w2() const { return w2_; }
  const std::optional<GatedMlp>& shared_expert() const { return shared_expert_; }
  const Linear& shared_expert_gate() const { return shared_expert_gate_; }

 private:
  // This rank's share of the routed experts' output (a partial sum over TP or EP).
  Tensor RoutedTensorParallel(const Tensor& x, const std::vector<int32_t>& ids,
                              const std::vector<float>& weights) const;
  Tensor RoutedExpertParallel(const Tensor& x, const std::vector<int32_t>& ids,
                              const std::vector<float>& weights, ForwardContext& context) const;

  int top_k_ = 0;
  bool renormalize_ = false;
  int64_t num_experts_ = 0;
  int64_t hidden_size_ = 0;
  Shard tp_;
  Shard ep_;
  int64_t first_local_expert_ = 0;
  int64_t num_local_experts_ = 0;
  Linear router_;
  Tensor w13_;  // [local experts, 2 * local width, hidden]: gate rows then up rows
  Tensor w2_;   // [local experts, hidden, local width]
  std::optional<GatedMlp> shared_expert_;
  Linear shared_expert_gate_;  // [1, hidden]
};

}  // namespace lattice
