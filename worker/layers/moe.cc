// Sparse mixture-of-experts block (see moe.h).
#include "worker/layers/moe.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<SparseMoe> SparseMoe::Load(Checkpoint& checkpoint, const std::string& prefix,
                                          const ModelConfig& config) {
  SparseMoe moe;
  moe.top_k_ = static_cast<int>(config.num_experts_per_tok);
  moe.renormalize_ = config.norm_topk_prob;
  const int64_t hidden = config.hidden_size;
  const int64_t width = config.moe_intermediate_size;
  const int64_t experts = config.num_experts;
  absl::StatusOr<Linear> router = Linear::Load(checkpoint, prefix + ".gate", experts, hidden, false);
  if (!router.ok()) return router.status();
  moe.router_ = *std::move(router);

  const bool mixtral = config.architecture == Architecture::kMixtral;
  const GatedMlpNames names = mixtral ? GatedMlpNames{"w1", "w3", "w2"} : GatedMlpNames{};
  std::vector<std::string> w13_names, w2_names;
  std::vector<int64_t> w13_rows, w2_rows;
  for (int64_t e = 0; e < experts; ++e) {
    const std::string expert = absl::StrCat(prefix, ".experts.", e, ".");
    w13_names.push_back(expert + names.gate + ".weight");
    w13_names.push_back(expert + names.up + ".weight");
    w13_rows.insert(w13_rows.end(), {width, width});
    w2_names.push_back(expert + names.down + ".weight");
    w2_rows.push_back(hidden);
  }
  absl::StatusOr<Tensor> w13 = LoadStacked(checkpoint, w13_names, w13_rows, {hidden});
  if (!w13.ok()) return w13.status();
  absl::StatusOr<Tensor> w2 = LoadStacked(checkpoint, w2_names, w2_rows, {width});
  if (!w2.ok()) return w2.status();
  moe.w13_ = w13->View({experts, 2 * width, hidden});
  moe.w2_ = w2->View({experts, hidden, width});

  if (config.shared_expert_intermediate_size > 0) {
    absl::StatusOr<GatedMlp> shared = GatedMlp::Load(checkpoint, prefix + ".shared_expert", hidden,
                                                     config.shared_expert_intermediate_size, false);
    if (!shared.ok()) return shared.status();
    moe.shared_expert_ = *std::move(shared);
    absl::StatusOr<Linear> gate = Linear::Load(checkpoint, prefix + ".shared_expert_gate", 1, hidden, false);
    if (!gate.ok()) return gate.status();
    moe.shared_expert_gate_ = *std::move(gate);
  }
  return moe;
}

Tensor SparseMoe::Forward(const Tensor& x) const {
  const Tensor router_logits = router_.Forward(x);
  std::vector<int32_t> topk_ids;
  std::vector<float> topk_weights;
  cpu::MoeTopKRouting(router_logits, top_k_, renormalize_, topk_ids, topk_weights);
  Tensor out = Tensor::Empty(DType::kF32, x.shape());
  cpu::FusedMoe(x, w13_, w2_, topk_ids, topk_weights, top_k_, out);
  if (shared_expert_) {
    const Tensor shared = shared_expert_->Forward(x);
    cpu::AddSigmoidGated(shared_expert_gate_.Forward(x), shared, out);
  }
  return out;
}

}  // namespace lattice
