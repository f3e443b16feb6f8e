// The decoder-only model (see model.h).
#include "worker/model.h"

#include <algorithm>
#include <charconv>

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
                                                                 const ModelConfig& config,
                                                                 const ModelShard& shard) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  ModelShard resolved = shard;
  if (resolved.end_layer < 0) resolved.end_layer = static_cast<int>(config.num_hidden_layers);
  LATTICE_CHECK(0 <= resolved.first_layer && resolved.first_layer < resolved.end_layer &&
                resolved.end_layer <= config.num_hidden_layers);
  std::unique_ptr<DecoderModel> model(new DecoderModel(config, resolved));
  model->rope_ = RopeScalingFor(config);
  model->rope_frequencies_ = ComputeRopeFrequencies(model->rope_, 0);
  if (absl::Status status = model->LoadWeights(**checkpoint); !status.ok()) return status;
  std::vector<std::string> unexpected;
  for (const std::string& name : (*checkpoint)->Unused()) {
    if (!model->BelongsToAnotherShard(name)) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    const size_t shown = std::min<size_t>(unexpected.size(), 5);
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected tensor", unexpected.size() > 1 ? "s" : "", " in checkpoint ", model_dir, ": ",
        absl::StrJoin(unexpected.begin(), unexpected.begin() + shown, ", "),
        unexpected.size() > shown ? absl::StrCat(" and ", unexpected.size() - shown, " more") : "",
        " (not used by ", config.architecture_name, ")"));
  }
  return model;
}

namespace {

// The N of "model.layers.N." or of "experts.N.", or -1.
int64_t IndexAfter(const std::string& name, std::string_view marker) {
  const size_t at = name.find(marker);
  if (at == std::string::npos) return -1;
  int64_t value = -1;
  const char* begin = name.data() + at + marker.size();
  const auto [end, ec] = std::from_chars(begin, name.data() + name.size(), value);
  if (ec != std::errc() || end == begin || *end != '.') return -1;
  return value;
}

}  // namespace

bool DecoderModel::BelongsToAnotherShard(const std::string& name) const {
  const int64_t layer = IndexAfter(name, "model.layers.");
  if (layer >= 0) {
    if (layer >= config_.num_hidden_layers) return false;  // no shard has it
    if (layer < shard_.first_layer || layer >= shard_.end_layer) return true;
    const int64_t expert = IndexAfter(name, ".experts.");
    if (expert >= 0 && shard_.ep.size > 1 && expert < config_.num_experts) {
      const RowRange local = EvenSplit(config_.num_experts, shard_.ep);
      return expert < local.begin || expert >= local.end;
    }
    return false;
  }
  if (name == "model.embed_tokens.weight") return true;  // loaded where needed, else elsewhere
  if (name == "model.norm.weight" || name == "lm_head.weight") return !is_last_stage();
  return false;
}

KvCacheShape DecoderModel::kv_cache_shape() const {
  const LocalHeads heads = LocalHeadsFor(config_.num_attention_heads, config_.num_key_value_heads, shard_.tp);
  return {shard_.end_layer - shard_.first_layer, heads.num_kv_heads, config_.head_dim};
}

absl::Status DecoderModel::LoadWeights(Checkpoint& checkpoint) {
  const ModelConfig& c = config_;
  const int64_t hidden = c.hidden_size;
  const Shard tp = shard_.tp;
  if (is_first_stage() || (is_last_stage() && c.tie_word_embeddings)) {
    absl::StatusOr<Tensor> embed = LoadVocabShard(checkpoint, "model.embed_tokens.weight", c.vocab_size, hidden, tp);
    if (!embed.ok()) return embed.status();
    embed_tokens_ = VocabParallelEmbedding(*std::move(embed), c.vocab_size, tp);
  }

  for (int i = shard_.first_layer; i < shard_.end_layer; ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i);
    Layer layer;
    absl::StatusOr<Tensor> ln = checkpoint.Load(prefix + ".input_layernorm.weight", {hidden});
    if (!ln.ok()) return ln.status();
    layer.input_layernorm = *std::move(ln);
    absl::StatusOr<Tensor> post = checkpoint.Load(prefix + ".post_attention_layernorm.weight", {hidden});
    if (!post.ok()) return post.status();
    layer.post_attention_layernorm = *std::move(post);
    absl::StatusOr<Attention> attention =
        Attention::Load(checkpoint, prefix + ".self_attn", c, i, i - shard_.first_layer, tp);
    if (!attention.ok()) return attention.status();
    layer.attention = *std::move(attention);
    if (c.num_experts > 0 && c.layer_is_moe[i]) {
      const std::string moe_prefix =
          prefix + (c.architecture == Architecture::kMixtral ? ".block_sparse_moe" : ".mlp");
      absl::StatusOr<SparseMoe> moe = SparseMoe::Load(checkpoint, moe_prefix, c, tp, shard_.ep);
      if (!moe.ok()) return moe.status();
      layer.moe = *std::move(moe);
    } else {
      absl::StatusOr<GatedMlp> mlp =
          GatedMlp::Load(checkpoint, prefix + ".mlp", hidden, c.intermediate_size, c.mlp_bias, tp);
      if (!mlp.ok()) return mlp.status();
      layer.mlp = *std::move(mlp);
    }
    layers_.push_back(std::move(layer));
  }

  if (!is_last_stage()) return absl::OkStatus();
  absl::StatusOr<Tensor> norm = checkpoint.Load("model.norm.weight", {hidden});
  if (!norm.ok()) return norm.status();
  norm_ = *std::move(norm);
  if (c.tie_word_embeddings) {
    lm_head_ = ParallelLMHead(embed_tokens_.weight(), c.vocab_size);
    // Some tied checkpoints store the head anyway; it must have the right shape.
    if (checkpoint.Contains("lm_head.weight")) {
      absl::StatusOr<Tensor> head = checkpoint.Load("lm_head.weight", {c.vocab_size, hidden});
      if (!head.ok()) return head.status();
    }
  } else {
    absl::StatusOr<Tensor> head = LoadVocabShard(checkpoint, "lm_head.weight", c.vocab_size, hidden, tp);
    if (!head.ok()) return head.status();
    lm_head_ = ParallelLMHead(*std::move(head), c.vocab_size);
  }
  return absl::OkStatus();
}

HiddenStates DecoderModel::ForwardLayers(const ForwardBatch& batch, KvCache& kv_cache, Communicator& tp,
                                         Communicator& ep, HiddenStates in) const {
  const float eps = static_cast<float>(config_.rms_norm_eps);
  ForwardContext context{batch, {}, kv_cache, tp, ep, {}};
  context.attention.query_start_loc = batch.query_start_loc;
  context.attention.seq_lens = batch.seq_lens;
  context.attention.block_tables = batch.block_tables;
  context.attention.max_blocks_per_seq = batch.max_blocks_per_seq;
  context.attention.block_size = kv_cache.block_size();
  // Rotary frequencies: one set, or one per sequence when they depend on its length.
  std::vector<RopeFrequencies> per_seq;
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

  HiddenStates states = std::move(in);
  if (is_first_stage()) {
    states.hidden = embed_tokens_.Forward(batch.token_ids, tp);
    states.residual = Tensor();
  }
  for (const Layer& layer : layers_) {
    if (!states.residual.defined()) {
      states.residual = states.hidden.Clone();
      cpu::RmsNorm(states.hidden, layer.input_layernorm, eps, states.hidden);
    } else {
      cpu::FusedAddRmsNorm(states.hidden, states.residual, layer.input_layernorm, eps);
    }
    states.hidden = layer.attention.Forward(states.hidden, context);
    cpu::FusedAddRmsNorm(states.hidden, states.residual, layer.post_attention_layernorm, eps);
    states.hidden = layer.moe ? layer.moe->Forward(states.hidden, context) : layer.mlp->Forward(states.hidden, tp);
  }
  return states;
}

Tensor DecoderModel::ComputeLogits(const ForwardBatch& batch, const HiddenStates& states, Communicator& tp) const {
  LATTICE_CHECK(is_last_stage());
  const int64_t rows = static_cast<int64_t>(batch.logits_indices.size()), hidden = config_.hidden_size;
  // The final norm only on the rows that sample: norm(hidden + residual).
  Tensor selected = Tensor::Empty(DType::kF32, {rows, hidden});
  Tensor residual = Tensor::Empty(DType::kF32, {rows, hidden});
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = batch.logits_indices[r];
    std::copy_n(states.hidden.data<float>() + row * hidden, hidden, selected.data<float>() + r * hidden);
    std::copy_n(states.residual.data<float>() + row * hidden, hidden, residual.data<float>() + r * hidden);
  }
  cpu::FusedAddRmsNorm(selected, residual, norm_, static_cast<float>(config_.rms_norm_eps));
  return lm_head_.Forward(selected, tp);
}

Tensor DecoderModel::Forward(const ForwardBatch& batch, KvCache& kv_cache) const {
  LATTICE_CHECK(shard_.tp.size == 1 && shard_.ep.size == 1 && is_first_stage() && is_last_stage());
  const std::unique_ptr<Communicator> solo = MakeSoloCommunicator();
  const HiddenStates states = ForwardLayers(batch, kv_cache, *solo, *solo);
  return ComputeLogits(batch, states, *solo);
}

}  // namespace lattice
