// DecoderModel: the decoder-only transformer every supported architecture is an
// instance of (Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE):
// embedding, layers of attention plus dense or sparse MLP with pre-norms, the final
// norm and the (possibly tied) LM head. Architecture differences live in ModelConfig
// (biases, q/k norm, windows, rope, MoE layout) and in checkpoint names.
//
// One DecoderModel is one rank's shard: its TP slice of every weight, its EP share of
// the experts, and its pipeline stage's layers [first_layer, end_layer). The first
// stage embeds; the last stage holds the final norm and the LM head.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/forward_context.h"
#include "worker/layers/attention.h"
#include "worker/layers/mlp.h"
#include "worker/layers/moe.h"
#include "worker/layers/vocab_parallel.h"
#include "worker/model_config.h"

namespace lattice {

struct ModelShard {
  Shard tp;
  Shard ep;              // size 1: experts are TP-sliced instead
  int first_layer = 0;
  int end_layer = -1;    // exclusive; -1: through the last layer
};

// What crosses a pipeline stage boundary: the last layer's output and the residual
// stream it has not yet been added to. Both [T, hidden].
struct HiddenStates {
  Tensor hidden;
  Tensor residual;
};

class DecoderModel {
 public:
  // Loads this shard's weights. Missing tensors, wrong shapes and checkpoint tensors
  // that no shard of this architecture would use ("unexpected tensor ...") are errors.
  static absl::StatusOr<std::unique_ptr<DecoderModel>> Load(const std::string& model_dir,
                                                             const ModelConfig& config,
                                                             const ModelShard& shard = {});

  // Runs this stage's layers. The first stage embeds batch.token_ids (`in` unused);
  // later stages continue from `in`, received from the previous stage.
  HiddenStates ForwardLayers(const ForwardBatch& batch, KvCache& kv_cache, Communicator& tp,
                             Communicator& ep, HiddenStates in = {}) const;
  // Last stage: final norm and LM head on the rows batch.logits_indices ->
  // logits [rows, vocab], gathered over TP.
  Tensor ComputeLogits(const ForwardBatch& batch, const HiddenStates& states, Communicator& tp) const;

  // The whole model on one rank (tp = ep = pp = 1): logits of batch.logits_indices.
  Tensor Forward(const ForwardBatch& batch, KvCache& kv_cache) const;

  const ModelConfig& config() const { return config_; }
  const ModelShard& shard() const { return shard_; }
  bool is_first_stage() const { return shard_.first_layer == 0; }
  bool is_last_stage() const { return shard_.end_layer == config_.num_hidden_layers; }
  // The KV cache this shard needs (its layers, its KV heads).
  KvCacheShape kv_cache_shape() const;

  // The shard's weights, for backends that run the model elsewhere (the CUDA model).
  struct Layer {
    Tensor input_layernorm;
    Tensor post_attention_layernorm;
    Attention attention;
    std::optional<GatedMlp> mlp;
    std::optional<SparseMoe> moe;
  };
  const std::vector<Layer>& layers() const { return layers_; }
  const VocabParallelEmbedding& embed_tokens() const { return embed_tokens_; }
  const Tensor& norm() const { return norm_; }
  const ParallelLMHead& lm_head() const { return lm_head_; }
  const RopeScaling& rope() const { return rope_; }

 private:

  DecoderModel(ModelConfig config, ModelShard shard) : config_(std::move(config)), shard_(shard) {}
  absl::Status LoadWeights(Checkpoint& checkpoint);
  // True for a checkpoint tensor that another shard loads (another stage's layer,
  // another EP rank's expert, the embedding or head of another stage).
  bool BelongsToAnotherShard(const std::string& name) const;

  ModelConfig config_;
  ModelShard shard_;
  RopeScaling rope_;
  RopeFrequencies rope_frequencies_;  // used unless the rope depends on the length
  VocabParallelEmbedding embed_tokens_;  // first stage (and last when tied)
  std::vector<Layer> layers_;
  Tensor norm_;                       // last stage
  ParallelLMHead lm_head_;            // last stage
};

// The RopeScaling the config describes.
RopeScaling RopeScalingFor(const ModelConfig& config);

}  // namespace lattice
