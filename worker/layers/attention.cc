// Attention layer (see attention.h).
#include "worker/layers/attention.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace lattice {
namespace {

// Copies columns [begin, begin + width) of x [T, C] into a new [T, width] tensor.
Tensor CopyColumns(const Tensor& x, int64_t begin, int64_t width) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  Tensor out = Tensor::Empty(DType::kF32, {rows, width});
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * width, src + r * cols + begin, width * sizeof(float));
  return out;
}

}  // namespace

absl::StatusOr<Attention> Attention::Load(Checkpoint& checkpoint, const std::string& prefix,
                                          const ModelConfig& config, int layer, int cache_layer,
                                          Shard tp) {
  const LocalHeads heads = LocalHeadsFor(config.num_attention_heads, config.num_key_value_heads, tp);
  const int64_t d = config.head_dim;
  Attention a;
  a.cache_layer_ = cache_layer;
  a.num_heads_ = heads.num_heads;
  a.num_kv_heads_ = heads.num_kv_heads;
  a.head_dim_ = d;
  a.sliding_window_ = config.sliding_window.empty() ? 0 : config.sliding_window[layer];
  a.norm_eps_ = static_cast<float>(config.rms_norm_eps);
  a.scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t q_full = config.num_attention_heads * d, kv_full = config.num_key_value_heads * d;
  const RowRange q_rows = {heads.first_head * d, (heads.first_head + heads.num_heads) * d};
  const RowRange kv_rows = {heads.first_kv_head * d, (heads.first_kv_head + heads.num_kv_heads) * d};
  const RowSlice qkv[] = {{prefix + ".q_proj", q_full, q_rows},
                          {prefix + ".k_proj", kv_full, kv_rows},
                          {prefix + ".v_proj", kv_full, kv_rows}};
  absl::StatusOr<ColumnParallelLinear> qkv_proj =
      ColumnParallelLinear::Load(checkpoint, qkv, config.hidden_size, config.qkv_bias);
  if (!qkv_proj.ok()) return qkv_proj.status();
  a.qkv_proj_ = *std::move(qkv_proj);
  absl::StatusOr<RowParallelLinear> o_proj = RowParallelLinear::Load(
      checkpoint, prefix + ".o_proj", config.hidden_size, q_full, q_rows, config.o_bias);
  if (!o_proj.ok()) return o_proj.status();
  a.o_proj_ = *std::move(o_proj);
  if (config.qk_norm) {
    absl::StatusOr<Tensor> q_norm = checkpoint.Load(prefix + ".q_norm.weight", {d});
    if (!q_norm.ok()) return q_norm.status();
    absl::StatusOr<Tensor> k_norm = checkpoint.Load(prefix + ".k_norm.weight", {d});
    if (!k_norm.ok()) return k_norm.status();
    a.q_norm_ = *std::move(q_norm);
    a.k_norm_ = *std::move(k_norm);
  }
  return a;
}

Tensor Attention::Forward(const Tensor& x, ForwardContext& context) const {
  const int64_t tokens = x.dim(0);
  const int64_t q_size = num_heads_ * head_dim_;
  const int64_t kv_size = num_kv_heads_ * head_dim_;
  const Tensor qkv = qkv_proj_.Forward(x);
  Tensor q = CopyColumns(qkv, 0, q_size).View({tokens, num_heads_, head_dim_});
  Tensor k = CopyColumns(qkv, q_size, kv_size).View({tokens, num_kv_heads_, head_dim_});
  Tensor v = CopyColumns(qkv, q_size + kv_size, kv_size).View({tokens, num_kv_heads_, head_dim_});

  if (q_norm_.defined()) {
    Tensor q_rows = q.View({tokens * num_heads_, head_dim_});
    Tensor k_rows = k.View({tokens * num_kv_heads_, head_dim_});
    cpu::RmsNorm(q_rows, q_norm_, norm_eps_, q_rows);
    cpu::RmsNorm(k_rows, k_norm_, norm_eps_, k_rows);
  }

  const ForwardBatch& batch = context.batch;
  for (int32_t s = 0; s < batch.num_seqs(); ++s) {
    const int32_t begin = batch.query_start_loc[s], end = batch.query_start_loc[s + 1];
    if (begin == end) continue;
    const RopeFrequencies& rope = *context.rope[s];
    const std::span<const int32_t> positions(batch.positions.data() + begin, end - begin);
    Tensor q_seq = q.Slice(begin, end);
    Tensor k_seq = k.Slice(begin, end);
    cpu::ApplyRotary(positions, rope.inv_freq, rope.attention_scale, q_seq);
    cpu::ApplyRotary(positions, rope.inv_freq, rope.attention_scale, k_seq);
  }

  cpu::WriteKvCache(k, v, batch.slot_mapping, context.kv_cache.k(cache_layer_), context.kv_cache.v(cache_layer_));
  Tensor attn = Tensor::Empty(DType::kF32, {tokens, num_heads_, head_dim_});
  cpu::PagedAttention(q, context.kv_cache.k(cache_layer_), context.kv_cache.v(cache_layer_), context.attention,
                      scale_, sliding_window_, attn);
  return o_proj_.Forward(attn.View({tokens, q_size}), context.tp);
}

}  // namespace lattice
