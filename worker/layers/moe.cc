// Sparse mixture-of-experts block (see moe.h).
#include "worker/layers/moe.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/ops.h"

namespace lattice {

absl::StatusOr<SparseMoe> SparseMoe::Load(Checkpoint& checkpoint, const std::string& prefix,
                                          const ModelConfig& config, Shard tp, Shard ep) {
  SparseMoe moe;
  moe.top_k_ = static_cast<int>(config.num_experts_per_tok);
  moe.renormalize_ = config.norm_topk_prob;
  moe.num_experts_ = config.num_experts;
  moe.hidden_size_ = config.hidden_size;
  moe.tp_ = tp;
  moe.ep_ = ep;
  const int64_t hidden = config.hidden_size;
  const int64_t width = config.moe_intermediate_size;
  absl::StatusOr<Linear> router = Linear::Load(checkpoint, prefix + ".gate", moe.num_experts_, hidden, false);
  if (!router.ok()) return router.status();
  moe.router_ = *std::move(router);

  // Expert parallel: whole experts, a contiguous range per rank. Else every expert, TP-sliced.
  const RowRange experts = ep.size > 1 ? EvenSplit(moe.num_experts_, ep) : RowRange{0, moe.num_experts_};
  const RowRange local = ep.size > 1 ? RowRange{0, width} : EvenSplit(width, tp);
  moe.first_local_expert_ = experts.begin;
  moe.num_local_experts_ = experts.size();

  const bool mixtral = config.architecture == Architecture::kMixtral;
  const GatedMlpNames names = mixtral ? GatedMlpNames{"w1", "w3", "w2"} : GatedMlpNames{};
  std::vector<RowSlice> w13_slices;
  for (int64_t e = experts.begin; e < experts.end; ++e) {
    const std::string expert = absl::StrCat(prefix, ".experts.", e, ".");
    w13_slices.push_back({expert + names.gate + ".weight", width, local});
    w13_slices.push_back({expert + names.up + ".weight", width, local});
  }
  absl::StatusOr<Tensor> w13 = LoadRowSlices(checkpoint, w13_slices, {hidden});
  if (!w13.ok()) return w13.status();
  moe.w13_ = w13->View({experts.size(), 2 * local.size(), hidden});
  moe.w2_ = Tensor::Empty(DType::kF32, {experts.size(), hidden, local.size()});
  for (int64_t e = experts.begin; e < experts.end; ++e) {
    absl::StatusOr<Tensor> down = LoadColumnSlice(
        checkpoint, absl::StrCat(prefix, ".experts.", e, ".", names.down, ".weight"), hidden, width, local);
    if (!down.ok()) return down.status();
    Tensor dst = moe.w2_.Slice(e - experts.begin, e - experts.begin + 1);
    std::memcpy(dst.raw_data(), down->raw_data(), down->nbytes());
  }

  if (config.shared_expert_intermediate_size > 0) {
    absl::StatusOr<GatedMlp> shared = GatedMlp::Load(checkpoint, prefix + ".shared_expert", hidden,
                                                     config.shared_expert_intermediate_size, false, tp);
    if (!shared.ok()) return shared.status();
    moe.shared_expert_ = *std::move(shared);
    absl::StatusOr<Linear> gate = Linear::Load(checkpoint, prefix + ".shared_expert_gate", 1, hidden, false);
    if (!gate.ok()) return gate.status();
    moe.shared_expert_gate_ = *std::move(gate);
  }
  return moe;
}

Tensor SparseMoe::RoutedTensorParallel(const Tensor& x, const std::vector<int32_t>& ids,
                                       const std::vector<float>& weights) const {
  Tensor out = Tensor::Empty(DType::kF32, x.shape());
  cpu::FusedMoe(x, w13_, w2_, ids, weights, top_k_, out);
  return out;
}

Tensor SparseMoe::RoutedExpertParallel(const Tensor& x, const std::vector<int32_t>& ids,
                                       const std::vector<float>& weights, ForwardContext& context) const {
  Communicator& ep = context.ep;
  const int64_t tokens = x.dim(0), hidden = hidden_size_;
  const int64_t experts_per_rank = num_experts_ / ep_.size;

  // The (token, slot) pairs this rank dispatches, grouped by the rank owning the expert.
  struct Pair {
    int64_t token;
    int32_t expert;
    float weight;
  };
  std::vector<std::vector<Pair>> by_dst(ep_.size);
  for (int64_t t = tp_.rank; t < tokens; t += tp_.size) {
    for (int k = 0; k < top_k_; ++k) {
      const int32_t e = ids[t * top_k_ + k];
      by_dst[e / experts_per_rank].push_back({t, e, weights[t * top_k_ + k]});
    }
  }
  std::vector<int64_t> send_counts(ep_.size);
  for (int r = 0; r < ep_.size; ++r) send_counts[r] = static_cast<int64_t>(by_dst[r].size());
  const int64_t num_send = std::accumulate(send_counts.begin(), send_counts.end(), int64_t{0});

  // Everyone learns everyone's counts; column `rank` is what this rank receives.
  Tensor counts = Tensor::Empty(DType::kI32, {1, ep_.size});
  for (int r = 0; r < ep_.size; ++r) counts.data<int32_t>()[r] = static_cast<int32_t>(send_counts[r]);
  Tensor all_counts = Tensor::Empty(DType::kI32, {ep_.size, ep_.size});
  ep.AllGather(counts, all_counts);
  std::vector<int64_t> recv_counts(ep_.size);
  for (int r = 0; r < ep_.size; ++r) recv_counts[r] = all_counts.data<int32_t>()[r * ep_.size + ep_.rank];
  const int64_t num_recv = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});

  Tensor send_x = Tensor::Empty(DType::kF32, {num_send, hidden});
  Tensor send_expert = Tensor::Empty(DType::kI32, {num_send, 1});
  int64_t row = 0;
  for (const std::vector<Pair>& pairs : by_dst) {
    for (const Pair& p : pairs) {
      std::memcpy(send_x.data<float>() + row * hidden, x.data<float>() + p.token * hidden, hidden * sizeof(float));
      send_expert.data<int32_t>()[row] = p.expert;
      ++row;
    }
  }
  Tensor recv_x = Tensor::Empty(DType::kF32, {num_recv, hidden});
  Tensor recv_expert = Tensor::Empty(DType::kI32, {num_recv, 1});
  ep.AllToAllV(send_x, send_counts, recv_x, recv_counts);
  ep.AllToAllV(send_expert, send_counts, recv_expert, recv_counts);

  // Each received row through its (local) expert, unweighted.
  std::vector<int32_t> local_ids(num_recv);
  for (int64_t i = 0; i < num_recv; ++i) {
    local_ids[i] = recv_expert.data<int32_t>()[i] - static_cast<int32_t>(first_local_expert_);
    LATTICE_CHECK(local_ids[i] >= 0 && local_ids[i] < num_local_experts_);
  }
  const std::vector<float> ones(num_recv, 1.0f);
  Tensor expert_out = Tensor::Empty(DType::kF32, {num_recv, hidden});
  cpu::FusedMoe(recv_x, w13_, w2_, local_ids, ones, 1, expert_out);

  Tensor back = Tensor::Empty(DType::kF32, {num_send, hidden});
  ep.AllToAllV(expert_out, recv_counts, back, send_counts);

  // Combine at the source in expert-id order, as the single-rank FusedMoe sums.
  std::vector<std::vector<std::pair<int32_t, int64_t>>> per_token(tokens);  // (expert, row of `back`)
  std::vector<float> weight_of_row(num_send);
  row = 0;
  for (const std::vector<Pair>& pairs : by_dst) {
    for (const Pair& p : pairs) {
      per_token[p.token].push_back({p.expert, row});
      weight_of_row[row++] = p.weight;
    }
  }
  Tensor out = Tensor::Zeros(DType::kF32, {tokens, hidden});
  for (int64_t t = 0; t < tokens; ++t) {
    std::sort(per_token[t].begin(), per_token[t].end());
    float* o = out.data<float>() + t * hidden;
    for (const auto& [expert, r] : per_token[t]) {
      const float* y = back.data<float>() + r * hidden;
      const float w = weight_of_row[r];
      for (int64_t h = 0; h < hidden; ++h) o[h] += w * y[h];
    }
  }
  return out;
}

Tensor SparseMoe::Forward(const Tensor& x, ForwardContext& context) const {
  const Tensor router_logits = router_.Forward(x);
  std::vector<int32_t> topk_ids;
  std::vector<float> topk_weights;
  cpu::MoeTopKRouting(router_logits, top_k_, renormalize_, topk_ids, topk_weights);
  Tensor out = ep_.size > 1 ? RoutedExpertParallel(x, topk_ids, topk_weights, context)
                            : RoutedTensorParallel(x, topk_ids, topk_weights);
  if (shared_expert_) {
    const Tensor shared = shared_expert_->ForwardPartial(x);
    cpu::AddSigmoidGated(shared_expert_gate_.Forward(x), shared, out);
  }
  if (context.tp.size() > 1) context.tp.AllReduce(out);
  return out;
}

}  // namespace lattice
