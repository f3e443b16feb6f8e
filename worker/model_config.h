// ModelConfig: what a Hugging Face config.json (plus generation_config.json) says
// about a decoder-only model, normalised across architectures and across the old
// and new field names that checkpoints on the Hub use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace lattice {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3, kMixtral, kQwen2Moe, kQwen3Moe };

// Rotary embedding parameters, from `rope_parameters` (new) or `rope_theta` +
// `rope_scaling` (old, where the type may be under `type` or `rope_type`).
struct RopeParams {
  std::string type = "default";  // default | linear | dynamic | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;                        // linear, dynamic, llama3, yarn
  int64_t max_position_embeddings = 0;        // the model's max_position_embeddings
  int64_t original_max_position_embeddings = 0;  // llama3, yarn; 0: max_position_embeddings
  double low_freq_factor = 1.0;               // llama3
  double high_freq_factor = 4.0;              // llama3
  double beta_fast = 32.0;                    // yarn
  double beta_slow = 1.0;                     // yarn
  std::optional<double> attention_factor;     // yarn; default from factor (and mscale)
  std::optional<double> mscale;               // yarn
  std::optional<double> mscale_all_dim;       // yarn
  bool truncate = true;                       // yarn
  int64_t rotary_dim = 0;  // head_dim * partial_rotary_factor
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;  // as written in config.json, e.g. "LlamaForCausalLM"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP width (Mixtral: each expert's width)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // given, or hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  DType dtype = DType::kF32;  // `dtype` or `torch_dtype`; float32 when absent

  bool qkv_bias = false;  // q_proj, k_proj, v_proj have biases
  bool o_bias = false;    // o_proj has a bias
  bool mlp_bias = false;  // gate/up/down (dense MLP) have biases
  bool qk_norm = false;   // per-head RMSNorm of q and k before rotary (Qwen3)

  RopeParams rope;
  // Per layer: 0 for full attention, else the sliding window in tokens (a query at
  // position p sees keys at positions > p - window).
  std::vector<int32_t> sliding_window;

  // Mixture of experts (num_experts == 0 for dense models).
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool norm_topk_prob = false;                  // renormalise the top-k routing weights
  std::vector<bool> layer_is_moe;               // per layer

  std::vector<int32_t> eos_token_ids;  // generation_config.json first, then config.json
  std::optional<int32_t> bos_token_id;
};

std::string_view ArchitectureName(Architecture architecture);

// Parses config.json. An unknown architecture or unsupported setting (e.g. an
// activation other than silu, an unknown rope type, a quantization_config) is
// INVALID_ARGUMENT naming the field and value.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& config);

// Reads `dir`/config.json and, if present, `dir`/generation_config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

// Default max_model_len: max_position_embeddings, times the factor of a dynamic rope.
int64_t DefaultMaxModelLen(const ModelConfig& config);

}  // namespace lattice
