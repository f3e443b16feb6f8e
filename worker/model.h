// DecoderModel: the decoder-only transformer every supported architecture is an
// instance of (Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE):
// embedding, layers of attention plus dense or sparse MLP with pre-norms, the final
// norm and the (possibly tied) LM head. The architecture differences live in
// ModelConfig (biases, q/k norm, windows, rope, MoE layout) and in checkpoint names.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/forward_context.h"
#include "worker/layers/attention.h"
#include "worker/layers/linear.h"
#include "worker/layers/mlp.h"
#include "worker/layers/moe.h"
#include "worker/model_config.h"

namespace lattice {

class DecoderModel {
 public:
  // Loads every weight the config calls for; any checkpoint tensor left unused is an
  // error ("unexpected tensor ..."), as is a missing one or one of the wrong shape.
  static absl::StatusOr<std::unique_ptr<DecoderModel>> Load(const std::string& model_dir,
                                                             const ModelConfig& config);

  // Runs one step and returns the logits [logits_indices.size(), vocab] of the rows
  // batch.logits_indices. Writes the batch's K/V into `kv_cache`.
  Tensor Forward(const ForwardBatch& batch, KvCache& kv_cache) const;

  const ModelConfig& config() const { return config_; }

 private:
  struct Layer {
    Tensor input_layernorm;
    Tensor post_attention_layernorm;
    Attention attention;
    std::optional<GatedMlp> mlp;
    std::optional<SparseMoe> moe;
  };

  explicit DecoderModel(ModelConfig config) : config_(std::move(config)) {}
  absl::Status LoadWeights(Checkpoint& checkpoint);

  ModelConfig config_;
  RopeScaling rope_;
  RopeFrequencies rope_frequencies_;  // used unless the rope depends on the length
  Tensor embed_tokens_;               // [vocab, hidden]
  std::vector<Layer> layers_;
  Tensor norm_;
  Tensor lm_head_;                    // [vocab, hidden]; shares embed_tokens_ when tied
};

// The RopeScaling the config describes.
RopeScaling RopeScalingFor(const ModelConfig& config);

}  // namespace lattice
