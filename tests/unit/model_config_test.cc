// ModelConfig parsing: one realistic (abbreviated Hub) config per architecture, both
// field spellings (transformers 4.x and 5.x), and a table of broken configs that must
// fail with a given code and a message naming the problem.
#include "worker/model_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace lattice {
namespace {

using json = nlohmann::json;

// meta-llama/Llama-3.1-8B-Instruct, as transformers 4.x wrote it.
json Llama31() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

// Qwen/Qwen2.5-7B-Instruct.
json Qwen25() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
    "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 152064})");
}

ModelConfig ParseOk(const json& config) {
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(config);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : ModelConfig{};
}

std::string NewDir() {
  static int counter = 0;
  const std::string dir =
      (std::filesystem::path(::testing::TempDir()) / "model_config_test_").string() +
      ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
      std::to_string(counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(ModelConfigTest, LlamaOldSpellingWithLlama3Rope) {
  const ModelConfig c = ParseOk(Llama31());
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.architecture_name, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // derived
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, DType::kBF16);  // torch_dtype
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.rope.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope.rotary_dim, 128);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(32, 0));
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(32, false));
  EXPECT_EQ(c.num_experts, 0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);
}

TEST(ModelConfigTest, LlamaNewSpellingTiedWithBiasesAndHeadDim) {
  // meta-llama/Llama-3.2-1B as transformers 5 writes it, plus biases and a head_dim.
  json config = Llama31();
  config.erase("rope_scaling");
  config.erase("rope_theta");
  config.erase("torch_dtype");
  config["rope_parameters"] = {
      {"rope_type", "llama3"},   {"rope_theta", 500000.0},
      {"factor", 32.0},          {"low_freq_factor", 1.0},
      {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  config["dtype"] = "float16";
  config["hidden_size"] = 2048;
  config["head_dim"] = 64;
  config["tie_word_embeddings"] = true;
  config["attention_bias"] = true;
  config["mlp_bias"] = true;
  const ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.dtype, DType::kF16);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.rotary_dim, 64);
}

TEST(ModelConfigTest, HeadDimDerivedAndGivenAndKvHeadsDefault) {
  json config = Llama31();
  config.erase("num_key_value_heads");
  config["head_dim"] = nullptr;  // null: derive it
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  config["head_dim"] = 96;  // given and unrelated to hidden_size / heads
  c = ParseOk(config);
  EXPECT_EQ(c.head_dim, 96);
  EXPECT_EQ(c.rope.rotary_dim, 96);
}

TEST(ModelConfigTest, RopeTypesInBothSpellings) {
  struct Case {
    json rope;  // the rope dict
    bool old;   // under rope_scaling with rope_theta at the top level
    std::string type;
    double factor;
  };
  const std::vector<Case> cases = {
      {{{"type", "linear"}, {"factor", 2.0}}, true, "linear", 2.0},
      {{{"rope_type", "linear"}, {"factor", 3.0}}, false, "linear", 3.0},
      {{{"type", "dynamic"}, {"factor", 2.0}}, true, "dynamic", 2.0},
      {{{"rope_type", "dynamic"}, {"factor", 4.0}}, false, "dynamic", 4.0},
      {{{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}},
       true,
       "yarn",
       4.0},
      {{{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}},
       false,
       "yarn",
       4.0},
      {{{"type", "default"}}, true, "default", 1.0},
      {{{"rope_type", "default"}}, false, "default", 1.0},
  };
  for (const Case& t : cases) {
    SCOPED_TRACE(t.rope.dump() + (t.old ? " (old)" : " (new)"));
    json config = Qwen25();
    config.erase("rope_theta");
    if (t.old) {
      config["rope_theta"] = 20000.0;
      config["rope_scaling"] = t.rope;
    } else {
      json rope = t.rope;
      rope["rope_theta"] = 20000.0;
      config["rope_parameters"] = rope;
    }
    const ModelConfig c = ParseOk(config);
    EXPECT_EQ(c.rope.type, t.type);
    EXPECT_DOUBLE_EQ(c.rope.theta, 20000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, t.factor);
    EXPECT_EQ(c.rope.max_position_embeddings, 32768);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 32768);
    EXPECT_EQ(c.rope.rotary_dim, 128);
  }
}

TEST(ModelConfigTest, RopeDefaultsAndNullScaling) {
  json config = Qwen25();
  config["rope_scaling"] = nullptr;
  config.erase("rope_theta");
  const ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);  // default_theta
  EXPECT_EQ(c.rope.original_max_position_embeddings, 32768);
}

TEST(ModelConfigTest, YarnKeepsTheExplicitFactorAndReadsItsParameters) {
  // Qwen2.5 long-context recipe: factor 4 while max_position_embeddings equals the
  // original length. transformers 5 uses the explicit factor (4.x used 32768/32768).
  json config = Qwen25();
  config["rope_scaling"] = {
      {"type", "yarn"},  {"factor", 4.0},         {"original_max_position_embeddings", 32768},
      {"beta_fast", 16}, {"beta_slow", 2.0},      {"attention_factor", 1.25},
      {"mscale", 0.707}, {"mscale_all_dim", 0.5}, {"truncate", false}};
  ModelConfig c = ParseOk(config);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 2.0);
  EXPECT_EQ(c.rope.attention_factor, 1.25);
  EXPECT_EQ(c.rope.mscale, 0.707);
  EXPECT_EQ(c.rope.mscale_all_dim, 0.5);
  EXPECT_FALSE(c.rope.truncate);

  // A null factor is implied by the two lengths; null betas mean 32 and 1.
  config["max_position_embeddings"] = 131072;
  config["rope_scaling"] = {{"rope_type", "yarn"},
                            {"factor", nullptr},
                            {"beta_fast", nullptr},
                            {"original_max_position_embeddings", 32768}};
  c = ParseOk(config);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1.0);
  EXPECT_FALSE(c.rope.attention_factor.has_value());
  EXPECT_FALSE(c.rope.mscale.has_value());
  EXPECT_TRUE(c.rope.truncate);
}

TEST(ModelConfigTest, PartialRotaryFactorInConfigOrRopeDict) {
  json config = Llama31();
  config["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(ParseOk(config).rope.rotary_dim, 64);
  config.erase("partial_rotary_factor");
  config["rope_scaling"]["partial_rotary_factor"] = 0.25;
  EXPECT_EQ(ParseOk(config).rope.rotary_dim, 32);
}

TEST(ModelConfigTest, Mistral) {
  // mistralai/Mistral-7B-v0.1: a 4096-token window on every layer.
  json config = json::parse(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})");
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.architecture, Architecture::kMistral);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(32, 4096));
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.bos_token_id, 1);
  // Mistral-7B-v0.3 / Nemo: window null, head_dim given.
  config["sliding_window"] = nullptr;
  config["hidden_size"] = 5120;
  config["head_dim"] = 128;
  c = ParseOk(config);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(32, 0));
  EXPECT_EQ(c.head_dim, 128);
  // Absent: MistralConfig's default of 4096. bos/eos absent: MistralConfig's 1 and 2.
  config.erase("sliding_window");
  config.erase("bos_token_id");
  config.erase("eos_token_id");
  c = ParseOk(config);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(32, 4096));
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.bos_token_id, 1);
}

TEST(ModelConfigTest, Qwen2BiasesAndNoSlidingWindowUnlessEnabled) {
  const ModelConfig c = ParseOk(Qwen25());
  EXPECT_EQ(c.architecture, Architecture::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(28, 0));  // use_sliding_window false
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{151645});
}

TEST(ModelConfigTest, Qwen2SlidingWindowFromMaxWindowLayersOrLayerTypes) {
  json config = Qwen25();
  config["num_hidden_layers"] = 4;
  config["use_sliding_window"] = true;
  config["sliding_window"] = 8;
  config["max_window_layers"] = 1;  // Qwen2Config: layers i >= max_window_layers slide
  EXPECT_EQ(ParseOk(config).sliding_window, (std::vector<int32_t>{0, 8, 8, 8}));
  config["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention",
                           "full_attention"};
  EXPECT_EQ(ParseOk(config).sliding_window, (std::vector<int32_t>{8, 0, 8, 0}));
  config["use_sliding_window"] = false;  // layer_types alone do not enable it
  EXPECT_EQ(ParseOk(config).sliding_window, (std::vector<int32_t>{0, 0, 0, 0}));
}

TEST(ModelConfigTest, Qwen3) {
  // Qwen/Qwen3-8B (transformers 5 spelling).
  json config = json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3",
    "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"}, "sliding_window": null,
    "tie_word_embeddings": false, "dtype": "bfloat16", "transformers_version": "5.0.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.architecture, Architecture::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(36, 0));
  // Qwen3-0.6B is tied and its head_dim (128) is not hidden_size / heads (64); an
  // absent head_dim is Qwen3Config's 128. attention_bias covers q, k, v and o.
  config["hidden_size"] = 1024;
  config["num_attention_heads"] = 16;
  config.erase("head_dim");
  config["tie_word_embeddings"] = true;
  config["attention_bias"] = true;
  c = ParseOk(config);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
}

TEST(ModelConfigTest, Mixtral) {
  // mistralai/Mixtral-8x7B-v0.1.
  json config = json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
    "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000})");
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.architecture, Architecture::kMixtral);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 14336);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(32, true));
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(32, 0));
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.qk_norm);
  // The alias num_experts, and MixtralConfig's default_theta of 1e6.
  config.erase("num_local_experts");
  config["num_experts"] = 4;
  config.erase("rope_theta");
  c = ParseOk(config);
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
}

TEST(ModelConfigTest, Qwen2MoeSharedExpertAndLayerSelection) {
  // Qwen/Qwen1.5-MoE-A2.7B, with a sparse step and a dense layer added.
  json config = json::parse(R"({
    "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "decoder_sparse_step": 1, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
    "max_window_layers": 21, "model_type": "qwen2_moe", "moe_intermediate_size": 1408,
    "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 60, "num_experts_per_tok": 4,
    "num_hidden_layers": 24, "num_key_value_heads": 16, "output_router_logits": false,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "shared_expert_intermediate_size": 5632, "sliding_window": 32768, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0", "use_cache": true,
    "use_sliding_window": false, "vocab_size": 151936})");
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.architecture, Architecture::kQwen2Moe);
  EXPECT_EQ(c.num_experts, 60);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.shared_expert_intermediate_size, 5632);
  EXPECT_EQ(c.intermediate_size, 5632);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias || c.qk_norm);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(24, true));
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(24, 0));

  config["num_hidden_layers"] = 6;
  config["decoder_sparse_step"] = 2;  // MoE where (i + 1) % 2 == 0 ...
  config["mlp_only_layers"] = {3};    // ... and not listed here
  config["qkv_bias"] = false;         // Qwen2MoeConfig.qkv_bias (transformers 5)
  config["norm_topk_prob"] = true;
  c = ParseOk(config);
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, false, false, false, true}));
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_TRUE(c.norm_topk_prob);

  // Qwen2MoeConfig (transformers 5) slides even layers below max_window_layers.
  config["use_sliding_window"] = true;
  config["sliding_window"] = 16;
  config["max_window_layers"] = 4;
  EXPECT_EQ(ParseOk(config).sliding_window, (std::vector<int32_t>{16, 0, 16, 0, 0, 0}));
}

TEST(ModelConfigTest, Qwen3MoeWithoutSharedExpert) {
  // Qwen/Qwen3-30B-A3B.
  json config = json::parse(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 6144,
    "max_position_embeddings": 40960, "max_window_layers": 48, "mlp_only_layers": [],
    "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": true,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
    "vocab_size": 151936})");
  ModelConfig c = ParseOk(config);
  EXPECT_EQ(c.architecture, Architecture::kQwen3Moe);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 768);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(48, true));
  EXPECT_EQ(c.rope.type, "default");
  // num_local_experts (Qwen3MoeConfig's attribute_map) and dense layers; a sliding
  // window, when enabled, applies to every layer.
  config.erase("num_experts");
  config["num_local_experts"] = 16;
  config["num_hidden_layers"] = 3;
  config["mlp_only_layers"] = {0, 2};
  config["use_sliding_window"] = true;
  config["sliding_window"] = 64;
  c = ParseOk(config);
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, false}));
  EXPECT_EQ(c.sliding_window, (std::vector<int32_t>{64, 64, 64}));
}

TEST(ModelConfigTest, DTypeSpellings) {
  json config = Qwen25();
  config.erase("torch_dtype");
  EXPECT_EQ(ParseOk(config).dtype, DType::kF32);  // absent
  config["torch_dtype"] = "float16";
  EXPECT_EQ(ParseOk(config).dtype, DType::kF16);
  config["dtype"] = "bfloat16";  // the new name wins
  EXPECT_EQ(ParseOk(config).dtype, DType::kBF16);
  config["dtype"] = "float32";
  EXPECT_EQ(ParseOk(config).dtype, DType::kF32);
}

TEST(ModelConfigTest, ArchitectureNames) {
  EXPECT_EQ(ArchitectureName(Architecture::kLlama), "LlamaForCausalLM");
  EXPECT_EQ(ArchitectureName(Architecture::kQwen2Moe), "Qwen2MoeForCausalLM");
  EXPECT_EQ(ArchitectureName(Architecture::kQwen3Moe), "Qwen3MoeForCausalLM");
}

TEST(ModelConfigTest, LoadReadsGenerationConfigEos) {
  const std::string dir = NewDir();
  WriteText(dir + "/config.json", Qwen25().dump());
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);  // no generation_config.json
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{151645});

  WriteText(dir + "/generation_config.json",
            R"({"bos_token_id": 151643, "eos_token_id": [151645, 151643]})");
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{151645, 151643}));
  EXPECT_EQ(c->bos_token_id, 151643);

  WriteText(dir + "/generation_config.json", R"({"eos_token_id": 7, "bos_token_id": 3})");
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{7});
  EXPECT_EQ(c->bos_token_id, 3);

  WriteText(dir + "/generation_config.json", R"({"do_sample": true, "eos_token_id": null})");
  c = LoadModelConfig(dir);  // without it there, config.json's
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{151645});
  EXPECT_EQ(c->bos_token_id, 151643);

  json config = Qwen25();
  config["eos_token_id"] = nullptr;
  config["bos_token_id"] = nullptr;
  WriteText(dir + "/config.json", config.dump());
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_FALSE(c->bos_token_id.has_value());
}

// The fixture models written by transformers 5.17 (tests/fixtures/make_fixtures.py);
// the llama_linear and qwen2 ones are rewritten in the 4.x spelling.
TEST(ModelConfigTest, ParsesEveryFixture) {
  const std::string root = std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/";
  auto load = [&](const std::string& name) {
    absl::StatusOr<ModelConfig> c = LoadModelConfig(root + name);
    EXPECT_TRUE(c.ok()) << name << ": " << c.status();
    return c.ok() ? *c : ModelConfig{};
  };
  ModelConfig c = load("llama_gqa_f32");
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.dtype, DType::kF32);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});

  c = load("llama_mqa_tied_bf16");
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_TRUE(c.tie_word_embeddings && c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 7}));  // from generation_config.json

  c = load("llama_linear_headdim_f32");
  EXPECT_EQ(c.head_dim, 24);
  EXPECT_EQ(c.rope.rotary_dim, 24);
  EXPECT_EQ(c.rope.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);

  c = load("llama_dynamic_f32");
  EXPECT_EQ(c.rope.type, "dynamic");
  EXPECT_EQ(c.rope.max_position_embeddings, 32);

  c = load("mistral_swa_bf16");
  EXPECT_EQ(c.architecture, Architecture::kMistral);
  EXPECT_EQ(c.sliding_window, std::vector<int32_t>(c.num_hidden_layers, 8));

  c = load("qwen2_tied_swa_f16");
  EXPECT_EQ(c.architecture, Architecture::kQwen2);
  std::vector<int32_t> windows(c.num_hidden_layers, 8);
  windows[0] = 0;  // max_window_layers 1
  EXPECT_EQ(c.sliding_window, windows);
  EXPECT_TRUE(c.tie_word_embeddings && c.qkv_bias);
  EXPECT_EQ(c.dtype, DType::kF16);

  c = load("qwen3_yarn_bf16");
  EXPECT_EQ(c.architecture, Architecture::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rope.type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 16);

  c = load("mixtral_f32");
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 64);
  EXPECT_EQ(c.head_dim, 16);  // "head_dim": null

  c = load("qwen2moe_shared_bf16");
  std::vector<bool> moe(c.num_hidden_layers, true);
  moe[1] = false;  // mlp_only_layers [1]
  EXPECT_EQ(c.layer_is_moe, moe);
  EXPECT_EQ(c.moe_intermediate_size, 48);
  EXPECT_EQ(c.shared_expert_intermediate_size, 96);
  EXPECT_EQ(c.intermediate_size, 80);
  EXPECT_FALSE(c.norm_topk_prob);

  c = load("qwen3moe_sharded_f32");  // transformers 5.17 writes num_local_experts here
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(c.num_hidden_layers, true));
}

struct BadConfig {
  std::string name;
  std::function<void(json&)> edit;  // applied to Llama31(), or for `base` below
  std::string substring;
  std::function<json()> base = Llama31;
};

TEST(ModelConfigTest, BadConfigsAreInvalidArgumentNamingTheProblem) {
  auto moe = [] {
    json c = Qwen25();
    c["architectures"] = {"Qwen2MoeForCausalLM"};
    c["num_experts"] = 4;
    c["num_experts_per_tok"] = 2;
    c["moe_intermediate_size"] = 64;
    c["shared_expert_intermediate_size"] = 128;
    return c;
  };
  const std::vector<BadConfig> cases = {
      {"unknown architecture", [](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; },
       "unsupported architecture 'GPT2LMHeadModel' (supported: LlamaForCausalLM"},
      {"architectures not a list", [](json& c) { c["architectures"] = "LlamaForCausalLM"; },
       "'architectures'"},
      {"no architecture at all", [](json& c) { c.erase("architectures"), c.erase("model_type"); },
       "missing required field 'architectures'"},
      {"gelu", [](json& c) { c["hidden_act"] = "gelu"; },
       "hidden_act' has unsupported value 'gelu'"},
      {"longrope", [](json& c) { c["rope_scaling"]["rope_type"] = "longrope"; },
       "unsupported rope type 'longrope'"},
      {"mrope",
       [](json& c) {
         c["rope_scaling"] = {{"type", "mrope"}, {"mrope_section", {16, 24, 24}}};
       },
       "unsupported rope type 'mrope'"},
      {"quantization_config",
       [](json& c) {
         c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
       },
       "quantization_config"},
      {"missing hidden_size", [](json& c) { c.erase("hidden_size"); },
       "missing required field 'hidden_size'"},
      {"null vocab_size", [](json& c) { c["vocab_size"] = nullptr; },
       "missing required field 'vocab_size'"},
      {"hidden_size a string", [](json& c) { c["hidden_size"] = "4096"; },
       "field 'hidden_size' must be an integer, got string"},
      {"fractional intermediate_size", [](json& c) { c["intermediate_size"] = 14336.5; },
       "'intermediate_size' must be an integer"},
      {"negative layers", [](json& c) { c["num_hidden_layers"] = -2; },
       "'num_hidden_layers' must be in [1, 4096]"},
      {"absurd layers", [](json& c) { c["num_hidden_layers"] = 1000000000; },
       "'num_hidden_layers' must be in"},
      {"zero kv heads", [](json& c) { c["num_key_value_heads"] = 0; },
       "'num_key_value_heads' must be in"},
      {"heads not divisible", [](json& c) { c["num_key_value_heads"] = 5; },
       "(32) must be divisible by num_key_value_heads (5)"},
      {"hidden not divisible",
       [](json& c) {
         c["num_attention_heads"] = 24, c["num_key_value_heads"] = 8, c["hidden_size"] = 4100;
       },
       "must be divisible by num_attention_heads"},
      {"odd rotary dim", [](json& c) { c["head_dim"] = 65; }, "must be positive and even"},
      {"bad dtype", [](json& c) { c["torch_dtype"] = "float8_e4m3fn"; },
       "unsupported dtype 'float8_e4m3fn'"},
      {"tie not a bool", [](json& c) { c["tie_word_embeddings"] = 1; },
       "'tie_word_embeddings' must be a boolean"},
      {"rope_scaling a string", [](json& c) { c["rope_scaling"] = "llama3"; },
       "'rope_scaling' must be an object"},
      {"llama3 without original length",
       [](json& c) { c["rope_scaling"].erase("original_max_position_embeddings"); },
       "original_max_position_embeddings' is required for rope type 'llama3'"},
      {"linear without factor",
       [](json& c) {
         c["rope_scaling"] = {{"type", "linear"}};
       },
       "'factor' is required for rope type 'linear'"},
      {"negative factor", [](json& c) { c["rope_scaling"]["factor"] = -8.0; },
       "'factor' must be positive"},
      {"rope_theta a string", [](json& c) { c["rope_theta"] = "1e6"; },
       "'rope_theta' must be a number"},
      {"eos a string", [](json& c) { c["eos_token_id"] = "</s>"; },
       "'eos_token_id' must be an integer"},
      {"negative eos",
       [](json& c) {
         c["eos_token_id"] = {2, -1};
       },
       "'eos_token_id' must be in"},
      {"experts_per_tok > experts", [](json& c) { c["num_experts_per_tok"] = 8; },
       "'num_experts_per_tok' must be in [1, 4]", moe},
      {"missing moe_intermediate_size", [](json& c) { c.erase("moe_intermediate_size"); },
       "missing required field 'moe_intermediate_size'", moe},
      {"decoder_sparse_step 0", [](json& c) { c["decoder_sparse_step"] = 0; },
       "'decoder_sparse_step' must be in", moe},
      {"mlp_only_layers out of range",
       [](json& c) {
         c["mlp_only_layers"] = {1, 28};
       },
       "'mlp_only_layers' must be in [0, 27]", moe},
      {"layer_types wrong length", [](json& c) { c["layer_types"] = {"full_attention"}; },
       "'layer_types' must be a list of 28 layer types", moe},
      {"layer_types unknown",
       [](json& c) { c["layer_types"] = std::vector<std::string>(28, "chunked_attention"); },
       "unsupported layer type string \"chunked_attention\"", moe},
      {"negative sliding_window", [](json& c) { c["sliding_window"] = -1; },
       "'sliding_window' must be in", moe},
  };
  for (const BadConfig& t : cases) {
    SCOPED_TRACE(t.name);
    json config = t.base();
    t.edit(config);
    absl::StatusOr<ModelConfig> parsed = ParseModelConfig(config);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
    EXPECT_NE(parsed.status().message().find(t.substring), std::string::npos) << parsed.status();
  }
  EXPECT_EQ(ParseModelConfig(json::array()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, DeeplyNestedValuesAreErrorsNotStackOverflows) {
  json deep = 1;
  for (int i = 0; i < 1000000; ++i) {
    json outer = json::array();
    outer.push_back(std::move(deep));
    deep = std::move(outer);
  }
  json config = Llama31();
  config["hidden_size"] = std::move(deep);
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(config);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(
      parsed.status().message().find("'hidden_size' must be an integer, got array [[[[...]]]]"),
      std::string::npos)
      << parsed.status();

  const std::string dir = NewDir();
  WriteText(dir + "/config.json",
            "{\"hidden_size\": " + std::string(1 << 20, '[') + std::string(1 << 20, ']') + "}");
  parsed = LoadModelConfig(dir);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("config.json: JSON nests deeper than 64 levels"),
            std::string::npos)
      << parsed.status();
}

TEST(ModelConfigTest, BadFilesNameThePath) {
  struct Case {
    std::string name;
    const char* config;      // nullptr: no config.json
    const char* generation;  // nullptr: no generation_config.json
    absl::StatusCode code;
    std::vector<std::string> substrings;
  };
  const std::string good = Llama31().dump();
  const std::vector<Case> cases = {
      {"config.json missing",
       nullptr,
       nullptr,
       absl::StatusCode::kNotFound,
       {"config.json", "no such file"}},
      {"config.json not JSON",
       "{\"architectures\": [",
       nullptr,
       absl::StatusCode::kInvalidArgument,
       {"config.json", "not valid JSON"}},
      {"config.json empty",
       "",
       nullptr,
       absl::StatusCode::kInvalidArgument,
       {"config.json", "not valid JSON"}},
      {"bad field",
       R"({"architectures": ["LlamaForCausalLM"]})",
       nullptr,
       absl::StatusCode::kInvalidArgument,
       {"config.json: missing required field 'vocab_size'"}},
      {"generation_config.json not JSON",
       good.c_str(),
       "{eos",
       absl::StatusCode::kInvalidArgument,
       {"generation_config.json", "not valid JSON"}},
      {"generation eos wrong type",
       good.c_str(),
       R"({"eos_token_id": {"a": 1}})",
       absl::StatusCode::kInvalidArgument,
       {"generation_config.json", "'eos_token_id' must be an integer"}},
  };
  for (const Case& t : cases) {
    SCOPED_TRACE(t.name);
    const std::string dir = NewDir();
    if (t.config != nullptr) WriteText(dir + "/config.json", t.config);
    if (t.generation != nullptr) WriteText(dir + "/generation_config.json", t.generation);
    absl::StatusOr<ModelConfig> parsed = LoadModelConfig(dir);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), t.code) << parsed.status();
    EXPECT_NE(parsed.status().message().find(dir), std::string::npos) << parsed.status();
    for (const std::string& s : t.substrings) {
      EXPECT_NE(parsed.status().message().find(s), std::string::npos) << parsed.status();
    }
  }
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

// The benchmark shapes (bench/models: config.json only, for --load-format dummy).
TEST(ModelConfigTest, BenchmarkModelShapesParse) {
  const std::filesystem::path models = std::filesystem::path(LATTICE_SOURCE_DIR) / "bench/models";
  struct Want {
    const char* name;
    int64_t layers, hidden, experts;
  };
  for (const Want& w : {Want{"llama-3.1-8b", 32, 4096, 0}, Want{"llama-3.1-70b", 80, 8192, 0},
                        Want{"mixtral-8x7b", 32, 4096, 8}, Want{"qwen3-30b-a3b", 48, 2048, 128}}) {
    const absl::StatusOr<ModelConfig> config = LoadModelConfig((models / w.name).string());
    ASSERT_TRUE(config.ok()) << w.name << ": " << config.status();
    EXPECT_EQ(config->num_hidden_layers, w.layers) << w.name;
    EXPECT_EQ(config->hidden_size, w.hidden) << w.name;
    EXPECT_EQ(config->num_experts, w.experts) << w.name;
    EXPECT_EQ(config->dtype, DType::kBF16) << w.name;
  }
}

}  // namespace
}  // namespace lattice
