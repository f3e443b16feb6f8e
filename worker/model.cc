// The decoder-only model (see model.h).
#include "worker/model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/ops.h"

namespace lattice {

RopeScaling RopeScalingFor(const ModelConfig& config) {
  const RopeParams& p = config.rope;
  RopeScaling r;
  r.type = p.type;
  r.theta = p.theta;
  r.rotary_dim = p.rotary_dim > 0 ? p.rotary_dim : config.head_dim;
  r.factor = p.factor;
  r.max_position_embeddings =
      p.max_position_embeddings > 0 ? p.max_position_embeddings : config.max_position_embeddings;
  r.original_max_position_embeddings = p.original_max_position_embeddings > 0
                                           ? p.original_max_position_embeddings
                                           : r.max_position_embeddings;
  r.low_freq_factor = p.low_freq_factor;
  r.high_freq_factor = p.high_freq_factor;
  r.beta_fast = p.beta_fast;
  r.beta_slow = p.beta_slow;
  r.attention_factor = p.attention_factor;
  r.mscale = p.mscale;
  r.mscale_all_dim = p.mscale_all_dim;
  r.truncate = p.truncate;
  return r;
}

absl::StatusOr<std::unique_ptr<DecoderModel>> DecoderModel::Load(const std::string& model_dir,
                                                                 const ModelConfig& config) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  std::unique_ptr<DecoderModel> model(new DecoderModel(config));
  model->rope_ = RopeScalingFor(config);
  model->rope_frequencies_ = ComputeRopeFrequencies(model->rope_, 0);
  if (absl::Status status = model->LoadWeights(**checkpoint); !status.ok()) return status;
  const std::vector<std::string> unused = (*checkpoint)->Unused();
  if (!unused.empty()) {
    const size_t shown = std::min<size_t>(unused.size(), 5);
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected tensor", unused.size() > 1 ? "s" : "", " in checkpoint ", model_dir, ": ",
        absl::StrJoin(unused.begin(), unused.begin() + shown, ", "),
        unused.size() > shown ? absl::StrCat(" and ", unused.size() - shown, " more") : "",
        " (not used by ", config.architecture_name, ")"));
  }
  return model;
}

absl::Status DecoderModel::LoadWeights(Checkpoint& checkpoint) {
  const ModelConfig& c = config_;
  const int64_t hidden = c.hidden_size;
  absl::StatusOr<Tensor> embed = checkpoint.Load("model.embed_tokens.weight", {c.vocab_size, hidden});
  if (!embed.ok()) return embed.status();
  embed_tokens_ = *std::move(embed);

  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i);
    Layer layer;
    absl::StatusOr<Tensor> ln = checkpoint.Load(prefix + ".input_layernorm.weight", {hidden});
    if (!ln.ok()) return ln.status();
    layer.input_layernorm = *std::move(ln);
    absl::StatusOr<Tensor> post = checkpoint.Load(prefix + ".post_attention_layernorm.weight", {hidden});
    if (!post.ok()) return post.status();
    layer.post_attention_layernorm = *std::move(post);
    absl::StatusOr<Attention> attention =
        Attention::Load(checkpoint, prefix + ".self_attn", c, static_cast<int>(i));
    if (!attention.ok()) return attention.status();
    layer.attention = *std::move(attention);
    if (c.num_experts > 0 && c.layer_is_moe[i]) {
      const std::string moe_prefix =
          prefix + (c.architecture == Architecture::kMixtral ? ".block_sparse_moe" : ".mlp");
      absl::StatusOr<SparseMoe> moe = SparseMoe::Load(checkpoint, moe_prefix, c);
      if (!moe.ok()) return moe.status();
      layer.moe = *std::move(moe);
    } else {
      absl::StatusOr<GatedMlp> mlp =
          GatedMlp::Load(checkpoint, prefix + ".mlp", hidden, c.intermediate_size, c.mlp_bias);
      if (!mlp.ok()) return mlp.status();
      layer.mlp = *std::move(mlp);
    }
    layers_.push_back(std::move(layer));
  }

  absl::StatusOr<Tensor> norm = checkpoint.Load("model.norm.weight", {hidden});
  if (!norm.ok()) return norm.status();
  norm_ = *std::move(norm);
  if (c.tie_word_embeddings) {
    lm_head_ = embed_tokens_;
    // Some tied checkpoints store the head anyway; it must be the same shape.
    if (checkpoint.Contains("lm_head.weight")) {
      absl::StatusOr<Tensor> head = checkpoint.Load("lm_head.weight", {c.vocab_size, hidden});
      if (!head.ok()) return head.status();
    }
  } else {
    absl::StatusOr<Tensor> head = checkpoint.Load("lm_head.weight", {c.vocab_size, hidden});
    if (!head.ok()) return head.status();
    lm_head_ = *std::move(head);
  }
  return absl::OkStatus();
}

Tensor DecoderModel::Forward(const ForwardBatch& batch, KvCache& kv_cache) const {
  const int64_t tokens = batch.num_tokens();
  const float eps = static_cast<float>(config_.rms_norm_eps);

  // Rotary frequencies: one set, or one per sequence when they depend on its length.
  std::vector<RopeFrequencies> per_seq;
  ForwardContext context{batch, {}, kv_cache, {}};
  context.attention.query_start_loc = batch.query_start_loc;
  context.attention.seq_lens = batch.seq_lens;
  context.attention.block_tables = batch.block_tables;
  context.attention.max_blocks_per_seq = batch.max_blocks_per_seq;
  context.attention.block_size = kv_cache.block_size();
  if (RopeDependsOnLength(rope_)) {
    per_seq.reserve(batch.num_seqs());
    for (int32_t s = 0; s < batch.num_seqs(); ++s) {
      // As Hugging Face: the longest position in this step's chunk, plus one.
      per_seq.push_back(ComputeRopeFrequencies(rope_, batch.seq_lens[s]));
    }
    for (const RopeFrequencies& f : per_seq) context.rope.push_back(&f);
  } else {
    context.rope.assign(batch.num_seqs(), &rope_frequencies_);
  }

  Tensor hidden = Tensor::Empty(DType::kF32, {tokens, config_.hidden_size});
  cpu::Embedding(batch.token_ids, embed_tokens_, hidden);
  Tensor residual;
  for (const Layer& layer : layers_) {
    if (!residual.defined()) {
      residual = hidden.Clone();
      cpu::RmsNorm(hidden, layer.input_layernorm, eps, hidden);
    } else {
      cpu::FusedAddRmsNorm(hidden, residual, layer.input_layernorm, eps);
    }
    hidden = layer.attention.Forward(hidden, context);
    cpu::FusedAddRmsNorm(hidden, residual, layer.post_attention_layernorm, eps);
    hidden = layer.moe ? layer.moe->Forward(hidden) : layer.mlp->Forward(hidden);
  }
  cpu::FusedAddRmsNorm(hidden, residual, norm_, eps);

  const int64_t rows = static_cast<int64_t>(batch.logits_indices.size());
  Tensor selected = Tensor::Empty(DType::kF32, {rows, config_.hidden_size});
  for (int64_t r = 0; r < rows; ++r) {
    const Tensor src = hidden.Slice(batch.logits_indices[r], batch.logits_indices[r] + 1);
    std::copy_n(src.data<float>(), config_.hidden_size, selected.data<float>() + r * config_.hidden_size);
  }
  Tensor logits = Tensor::Empty(DType::kF32, {rows, config_.vocab_size});
  cpu::Linear(selected, lm_head_, Tensor(), logits);
  return logits;
}

}  // namespace lattice
