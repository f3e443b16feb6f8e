// Attention: fused QKV projection, optional per-head q/k RMSNorm (Qwen3), rotary
// embedding, KV cache write, paged attention and the output projection.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/forward_context.h"
#include "worker/layers/linear.h"
#include "worker/layers/sharding.h"
#include "worker/model_config.h"

namespace lattice {

class Attention {
 public:
  // `layer` indexes the config's per-layer settings; `cache_layer` the KV cache of this
  // stage (they differ under pipeline parallelism). `tp` picks this rank's heads.
  static absl::StatusOr<Attention> Load(Checkpoint& checkpoint, const std::string& prefix,
                                        const ModelConfig& config, int layer, int cache_layer,
                                        Shard tp);

  // x [T, hidden] -> [T, hidden]; writes this step's K/V into the layer's cache.
  Tensor Forward(const Tensor& x, ForwardContext& context) const;

  // For backends that run the layer elsewhere (the CUDA model).
  int64_t num_heads() const { return num_heads_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int32_t sliding_window() const { return sliding_window_; }
  float scale() const { return scale_; }
  const ColumnParallelLinear& qkv_proj() const { return qkv_proj_; }
  const RowParallelLinear& o_proj() const { return o_proj_; }
  const Tensor& q_norm() const { return q_norm_; }
  const Tensor& k_norm() const { return k_norm_; }

 private:
  int cache_layer_ = 0;
  int64_t num_heads_ = 0;  // on this rank
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  int32_t sliding_window_ = 0;
  float norm_eps_ = 0;
  float scale_ = 0;
  ColumnParallelLinear qkv_proj_;
  RowParallelLinear o_proj_;
  Tensor q_norm_;  // [head_dim], undefined without q/k norm
  Tensor k_norm_;
};

}  // namespace lattice
