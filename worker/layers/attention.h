// Attention: fused QKV projection, optional per-head q/k RMSNorm (Qwen3), rotary
// embedding, KV cache write, paged attention and the output projection.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/forward_context.h"
#include "worker/layers/linear.h"
#include "worker/model_config.h"

namespace lattice {

class Attention {
 public:
  static absl::StatusOr<Attention> Load(Checkpoint& checkpoint, const std::string& prefix,
                                        const ModelConfig& config, int layer);

  // x [T, hidden] -> [T, hidden]; writes this step's K/V into the layer's cache.
  Tensor Forward(const Tensor& x, ForwardContext& context) const;

 private:
  int layer_ = 0;
  int64_t num_heads_ = 0;
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  int32_t sliding_window_ = 0;
  float norm_eps_ = 0;
  float scale_ = 0;
  Linear qkv_proj_;
  Linear o_proj_;
  Tensor q_norm_;  // [head_dim], undefined without q/k norm
  Tensor k_norm_;
};

}  // namespace lattice
