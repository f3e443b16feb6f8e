// Mixture-of-experts: softmax top-k routing and the expert MLPs. FusedMoe groups the
// (token, slot) pairs by expert so that each expert's weights are read once per call,
// then runs the expert as Linear -> SiluAndMul -> Linear on the gathered rows. A
// token's contributions are summed in expert order, as Hugging Face's expert loop does.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/cpu/ops.h"

namespace lattice::cpu {

void MoeTopKRouting(const Tensor& router_logits, int top_k, bool renormalize,
                    std::vector<int32_t>& topk_ids, std::vector<float>& topk_weights) {
  LATTICE_CHECK(router_logits.ndim() == 2);
  const int64_t num_tokens = router_logits.dim(0);
  const int64_t num_experts = router_logits.dim(1);
  LATTICE_CHECK(1 <= top_k && top_k <= num_experts);
  topk_ids.resize(num_tokens * top_k);
  topk_weights.resize(num_tokens * top_k);

  std::vector<float> probs(num_experts);
  std::vector<int32_t> order(num_experts);
  const float* logits = router_logits.data<float>();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = logits + t * num_experts;
    const float max_logit = *std::max_element(row, row + num_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) {
      probs[e] = std::exp(row[e] - max_logit);
      sum += probs[e];
    }
    for (float& p : probs) p /= sum;

    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                      [&probs](int32_t a, int32_t b) {
                        return probs[a] != probs[b] ? probs[a] > probs[b] : a < b;
                      });
    float kept = 0.0f;
    for (int k = 0; k < top_k; ++k) kept += probs[order[k]];
    for (int k = 0; k < top_k; ++k) {
      topk_ids[t * top_k + k] = order[k];
      topk_weights[t * top_k + k] = renormalize ? probs[order[k]] / kept : probs[order[k]];
    }
  }
}

void FusedMoe(const Tensor& x, const Tensor& w13, const Tensor& w2,
              std::span<const int32_t> topk_ids, std::span<const float> topk_weights, int top_k,
              Tensor& out) {
  LATTICE_CHECK(x.ndim() == 2 && out.shape() == x.shape());
  LATTICE_CHECK(out.raw_data() != x.raw_data());  // out is cleared before x is read
  LATTICE_CHECK(w13.ndim() == 3 && w2.ndim() == 3);
  const int64_t num_tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  const int64_t num_experts = w13.dim(0);
  const int64_t inter = w13.dim(1) / 2;
  LATTICE_CHECK(w13.dim(1) == 2 * inter && w13.dim(2) == hidden);
  LATTICE_CHECK(w2.dim(0) == num_experts && w2.dim(1) == hidden && w2.dim(2) == inter);
  LATTICE_CHECK(top_k >= 1);
  LATTICE_CHECK(static_cast<int64_t>(topk_ids.size()) == num_tokens * top_k);
  LATTICE_CHECK(topk_weights.size() == topk_ids.size());

  // pairs[e] lists the flat (token * top_k + slot) indices routed to expert e, in token order.
  std::vector<std::vector<int64_t>> pairs(num_experts);
  for (int64_t i = 0; i < static_cast<int64_t>(topk_ids.size()); ++i) {
    const int64_t e = topk_ids[i];
    LATTICE_CHECK_MSG(0 <= e && e < num_experts, "expert %lld outside [0, %lld)",
                      static_cast<long long>(e), static_cast<long long>(num_experts));
    pairs[e].push_back(i);
  }

  std::memset(out.data<float>(), 0, out.nbytes());
  const float* x_data = x.data<float>();
  float* out_data = out.data<float>();
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t n = static_cast<int64_t>(pairs[e].size());
    if (n == 0) continue;
    Tensor rows = Tensor::Empty(DType::kF32, {n, hidden});
    float* rows_data = rows.data<float>();
    for (int64_t r = 0; r < n; ++r) {
      const int64_t t = pairs[e][r] / top_k;
      std::memcpy(rows_data + r * hidden, x_data + t * hidden, sizeof(float) * hidden);
    }
    Tensor gate_up = Tensor::Empty(DType::kF32, {n, 2 * inter});
    Linear(rows, w13.Slice(e, e + 1).View({2 * inter, hidden}), Tensor(), gate_up);
    Tensor act = Tensor::Empty(DType::kF32, {n, inter});
    SiluAndMul(gate_up, act);
    Tensor y = Tensor::Empty(DType::kF32, {n, hidden});
    Linear(act, w2.Slice(e, e + 1).View({hidden, inter}), Tensor(), y);

    const float* y_data = y.data<float>();
    for (int64_t r = 0; r < n; ++r) {
      const int64_t t = pairs[e][r] / top_k;
      const float weight = topk_weights[pairs[e][r]];
      float* dst = out_data + t * hidden;
      const float* src = y_data + r * hidden;
      for (int64_t i = 0; i < hidden; ++i) dst[i] += src[i] * weight;
    }
  }
}

}  // namespace lattice::cpu
