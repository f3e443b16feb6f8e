// Hugging Face config.json (+ generation_config.json) -> ModelConfig. Applies the
// per-architecture defaults and field spellings of transformers 5.x while still
// reading what transformers 4.x wrote, and validates everything so that a bad
// config is an INVALID_ARGUMENT naming the field, never a crash or a silently
// wrong model. Where transformers' behaviour was checked, the comment says which.
#include "worker/model_config.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "worker/json_util.h"

#define CONFIG_CONCAT_INNER(a, b) a##b
#define CONFIG_CONCAT(a, b) CONFIG_CONCAT_INNER(a, b)
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(CONFIG_CONCAT(status_or_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(*tmp)
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    if (absl::Status s = (expr); !s.ok()) return s; \
  } while (0)

namespace lattice {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxLayers = 4096;  // bounds the per-layer vectors we allocate
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
constexpr size_t kMaxConfigFileBytes = 16 << 20;  // real ones are a few KB

// transformers 5.x class defaults for fields that change the computation but that a
// hand-written config may omit. Structural sizes have no default: they are required.
struct ArchInfo {
  Architecture architecture;
  std::string_view name;
  std::string_view model_type;
  double rms_norm_eps;
  double rope_theta;  // RotaryEmbeddingConfigMixin.default_theta (Mixtral overrides it)
  int64_t max_position_embeddings;
  std::optional<int32_t> bos_token_id;
  std::optional<int32_t> eos_token_id;
};

constexpr ArchInfo kArchitectures[] = {
    {Architecture::kLlama, "LlamaForCausalLM", "llama", 1e-6, 10000.0, 2048, 1, 2},
    {Architecture::kMistral, "MistralForCausalLM", "mistral", 1e-6, 10000.0, 4096 * 32, 1, 2},
    {Architecture::kQwen2, "Qwen2ForCausalLM", "qwen2", 1e-6, 10000.0, 32768, {}, {}},
    {Architecture::kQwen3, "Qwen3ForCausalLM", "qwen3", 1e-6, 10000.0, 32768, {}, {}},
    {Architecture::kMixtral, "MixtralForCausalLM", "mixtral", 1e-5, 1e6, 4096 * 32, 1, 2},
    {Architecture::kQwen2Moe, "Qwen2MoeForCausalLM", "qwen2_moe", 1e-6, 10000.0, 32768, {}, {}},
    {Architecture::kQwen3Moe, "Qwen3MoeForCausalLM", "qwen3_moe", 1e-6, 10000.0, 32768, {}, {}},
};

// Typed reads of one JSON object's fields; every error names the object and field.
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  const std::string& where() const { return where_; }
  bool Contains(const char* key) const { return object_.find(key) != object_.end(); }
  // The value, or nullptr when absent or null (null means "default" in transformers).
  const json* Get(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  absl::Status Missing(const char* key) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: missing required field '%s'", where_, key));
  }
  absl::Status Invalid(const char* key, const std::string& problem) const {
    return absl::InvalidArgumentError(absl::StrFormat("%s field '%s' %s", where_, key, problem));
  }
  absl::Status WrongType(const char* key, const std::string& expected, const json& value) const {
    return Invalid(key, absl::StrCat("must be ", expected, ", got ", DescribeJson(value)));
  }

  absl::StatusOr<int64_t> Int(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return Missing(key);
    return ToInt(key, *v);
  }
  absl::StatusOr<int64_t> Int(const char* key, int64_t fallback) const {
    const json* v = Get(key);
    return v == nullptr ? absl::StatusOr<int64_t>(fallback) : ToInt(key, *v);
  }
  // A required integer in [1, max].
  absl::StatusOr<int64_t> Positive(const char* key, int64_t max = kMaxDim) const {
    ASSIGN_OR_RETURN(int64_t value, Int(key));
    return CheckRange(key, value, 1, max);
  }
  absl::StatusOr<int64_t> CheckRange(const char* key, int64_t value, int64_t min,
                                     int64_t max) const {
    if (value < min || value > max) {
      return Invalid(key, absl::StrFormat("must be in [%d, %d], got %d", min, max, value));
    }
    return value;
  }
  absl::StatusOr<double> Double(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return Missing(key);
    if (!v->is_number()) return WrongType(key, "a number", *v);
    const double d = v->get<double>();
    if (!std::isfinite(d)) return Invalid(key, "must be finite");
    return d;
  }
  absl::StatusOr<double> Double(const char* key, double fallback) const {
    return Get(key) == nullptr ? absl::StatusOr<double>(fallback) : Double(key);
  }
  absl::StatusOr<std::optional<double>> OptionalDouble(const char* key) const {
    if (Get(key) == nullptr) return std::optional<double>();
    ASSIGN_OR_RETURN(double d, Double(key));
    return std::optional<double>(d);
  }
  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    const json* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return WrongType(key, "a boolean", *v);
    return v->get<bool>();
  }
  absl::StatusOr<std::string> String(const char* key, std::string fallback) const {
    const json* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) return WrongType(key, "a string", *v);
    return v->get<std::string>();
  }

  absl::StatusOr<int64_t> ToInt(const char* key, const json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Invalid(key, "is too large");
      }
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {  // 4096.0 is an integer to Python's int() too
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
        return static_cast<int64_t>(d);
      }
    }
    return WrongType(key, "an integer", v);
  }

 private:
  const json& object_;
  std::string where_;
};

absl::StatusOr<const ArchInfo*> FindArchitecture(const Fields& f) {
  std::string name;
  if (const json* archs = f.Get("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return f.WrongType("architectures", "a non-empty list of strings", *archs);
    }
    name = (*archs)[0].get<std::string>();
  } else if (const json* model_type = f.Get("model_type")) {  // hand-written configs
    if (!model_type->is_string()) return f.WrongType("model_type", "a string", *model_type);
    for (const ArchInfo& info : kArchitectures) {
      if (info.model_type == model_type->get<std::string>()) return &info;
    }
    name = absl::StrCat("model_type ", model_type->get<std::string>());
  } else {
    return f.Missing("architectures");
  }
  std::vector<std::string> supported;
  for (const ArchInfo& info : kArchitectures) {
    if (info.name == name) return &info;
    supported.emplace_back(info.name);
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: unsupported architecture '%s' (supported: %s)", f.where(), name,
                      absl::StrJoin(supported, ", ")));
}

absl::StatusOr<DType> ParseDType(const Fields& f) {
  // transformers 5 writes `dtype`; 4.x wrote `torch_dtype`.
  const char* key = f.Get("dtype") != nullptr ? "dtype" : "torch_dtype";
  ASSIGN_OR_RETURN(std::string name, f.String(key, "float32"));
  if (name == "float32") return DType::kF32;
  if (name == "bfloat16") return DType::kBF16;
  if (name == "float16") return DType::kF16;
  return f.Invalid(
      key,
      absl::StrFormat("has unsupported dtype '%s' (supported: float32, bfloat16, float16)", name));
}

// Rotary parameters. transformers 5 (RotaryEmbeddingConfigMixin.convert_rope_params_to_dict
// and standardize_rope_params, as of 5.17): a non-empty `rope_scaling` wins over
// `rope_parameters`; the dict's rope_theta and partial_rotary_factor win over the
// top-level ones; `rope_type` wins over `type`; a top-level
// original_max_position_embeddings wins over the dict's (the Phi3 exception).
absl::Status ParseRope(const Fields& f, const ArchInfo& arch, ModelConfig& out) {
  RopeParams& rope = out.rope;
  rope.max_position_embeddings = out.max_position_embeddings;
  const char* dict_key = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const json* v = f.Get(key);
    if (v == nullptr) continue;
    if (!v->is_object()) return f.WrongType(key, "an object", *v);
    if (!v->empty()) {
      dict_key = key;
      break;
    }
  }
  static const json kEmpty = json::object();
  const json& dict = dict_key != nullptr ? *f.Get(dict_key) : kEmpty;
  Fields r(dict, absl::StrCat(f.where(), " ", dict_key != nullptr ? dict_key : "rope_parameters"));
  if (r.Contains("full_attention") || r.Contains("sliding_attention")) {
    return r.Invalid("full_attention",
                     "is a per-layer-type rope dict, which these architectures do not use");
  }

  ASSIGN_OR_RETURN(rope.theta, r.Get("rope_theta") != nullptr
                                   ? r.Double("rope_theta")
                                   : f.Double("rope_theta", arch.rope_theta));
  if (!(rope.theta > 1.0)) {
    return f.Invalid("rope_theta", absl::StrCat("must be > 1, got ", rope.theta));
  }

  const char* type_key = r.Get("rope_type") != nullptr ? "rope_type" : "type";
  ASSIGN_OR_RETURN(rope.type, r.String(type_key, "default"));
  const bool is_default = rope.type == "default", is_linear = rope.type == "linear",
             is_dynamic = rope.type == "dynamic", is_llama3 = rope.type == "llama3",
             is_yarn = rope.type == "yarn";
  if (!(is_default || is_linear || is_dynamic || is_llama3 || is_yarn)) {
    return r.Invalid(type_key,
                     absl::StrFormat("has unsupported rope type '%s' (supported: default, linear, "
                                     "dynamic, llama3, yarn)",
                                     rope.type));
  }

  double partial = 1.0;
  if (r.Get("partial_rotary_factor") != nullptr) {
    ASSIGN_OR_RETURN(partial, r.Double("partial_rotary_factor"));
  } else {
    ASSIGN_OR_RETURN(partial, f.Double("partial_rotary_factor", 1.0));
  }
  if (!(partial > 0.0 && partial <= 1.0)) {
    return f.Invalid("partial_rotary_factor", absl::StrCat("must be in (0, 1], got ", partial));
  }
  rope.rotary_dim =
      static_cast<int64_t>(static_cast<double>(out.head_dim) * partial);  // Python int()
  if (rope.rotary_dim <= 0 || rope.rotary_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rotary dimension head_dim %d * partial_rotary_factor %g = %d must be "
                        "positive and even",
                        f.where(), out.head_dim, partial, rope.rotary_dim));
  }

  if (f.Get("original_max_position_embeddings") != nullptr) {
    ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                     f.Int("original_max_position_embeddings"));
  } else if (r.Get("original_max_position_embeddings") != nullptr) {
    ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                     r.Int("original_max_position_embeddings"));
  } else if (is_llama3) {
    return r.Invalid("original_max_position_embeddings", "is required for rope type 'llama3'");
  } else {
    rope.original_max_position_embeddings = out.max_position_embeddings;
  }
  ASSIGN_OR_RETURN(
      rope.original_max_position_embeddings,
      r.CheckRange("original_max_position_embeddings", rope.original_max_position_embeddings, 1,
                   std::numeric_limits<int64_t>::max()));
  if (is_default) return absl::OkStatus();

  if (r.Get("factor") != nullptr) {
    ASSIGN_OR_RETURN(rope.factor, r.Double("factor"));
  } else if (is_yarn) {
    // transformers 5 _compute_yarn_parameters: a null factor is implied by the two lengths.
    rope.factor = static_cast<double>(out.max_position_embeddings) /
                  static_cast<double>(rope.original_max_position_embeddings);
  } else {
    return r.Invalid("factor", absl::StrFormat("is required for rope type '%s'", rope.type));
  }
  // Current transformers 5 _compute_yarn_parameters uses the explicit yarn factor even
  // when it differs from max_position_embeddings / original_max_position_embeddings (it
  // only warns). transformers 4.4x-4.57 replaced it by that ratio whenever the dict had
  // original_max_position_embeddings; our fixtures come from 5.x, so the explicit one stays.
  if (!(rope.factor > 0.0)) {
    return r.Invalid("factor", absl::StrCat("must be positive, got ", rope.factor));
  }

  if (is_llama3) {
    ASSIGN_OR_RETURN(rope.low_freq_factor, r.Double("low_freq_factor"));
    ASSIGN_OR_RETURN(rope.high_freq_factor, r.Double("high_freq_factor"));
    if (!(rope.low_freq_factor > 0.0 && rope.high_freq_factor > rope.low_freq_factor)) {
      return r.Invalid("high_freq_factor",
                       absl::StrFormat("must exceed low_freq_factor > 0, got %g and %g",
                                       rope.high_freq_factor, rope.low_freq_factor));
    }
  }
  if (is_yarn) {
    // `rope_parameters.get("beta_fast") or 32`: null and 0 both mean the default.
    ASSIGN_OR_RETURN(rope.beta_fast, r.Double("beta_fast", 32.0));
    if (rope.beta_fast == 0.0) rope.beta_fast = 32.0;
    ASSIGN_OR_RETURN(rope.beta_slow, r.Double("beta_slow", 1.0));
    if (rope.beta_slow == 0.0) rope.beta_slow = 1.0;
    if (!(rope.beta_fast > 0.0 && rope.beta_slow > 0.0)) {
      return r.Invalid("beta_fast", "and beta_slow must be positive");
    }
    ASSIGN_OR_RETURN(rope.attention_factor, r.OptionalDouble("attention_factor"));
    ASSIGN_OR_RETURN(rope.mscale, r.OptionalDouble("mscale"));
    ASSIGN_OR_RETURN(rope.mscale_all_dim, r.OptionalDouble("mscale_all_dim"));
    ASSIGN_OR_RETURN(rope.truncate, r.Bool("truncate", true));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Window(const Fields& f, int64_t default_when_absent) {
  if (!f.Contains("sliding_window")) return default_when_absent;
  if (f.Get("sliding_window") == nullptr) return 0;  // null: no sliding window
  ASSIGN_OR_RETURN(int64_t window, f.Int("sliding_window"));
  return f.CheckRange("sliding_window", window, 0, kMaxDim);
}

// `layer_types` as written by transformers >= 4.53: true where a layer slides.
absl::StatusOr<std::optional<std::vector<bool>>> LayerTypes(const Fields& f, int64_t num_layers) {
  const json* v = f.Get("layer_types");
  if (v == nullptr) return std::optional<std::vector<bool>>();
  if (!v->is_array() || static_cast<int64_t>(v->size()) != num_layers) {
    return f.WrongType("layer_types", absl::StrCat("a list of ", num_layers, " layer types"), *v);
  }
  std::vector<bool> sliding;
  for (const json& type : *v) {
    if (type == "sliding_attention") {
      sliding.push_back(true);
    } else if (type == "full_attention") {
      sliding.push_back(false);
    } else {
      return f.Invalid("layer_types",
                       absl::StrCat("has unsupported layer type ", DescribeJson(type),
                                    " (supported: full_attention, sliding_attention)"));
    }
  }
  return std::optional<std::vector<bool>>(std::move(sliding));
}

absl::Status ParseSlidingWindows(const Fields& f, const ArchInfo& arch, ModelConfig& out) {
  const int64_t n = out.num_hidden_layers;
  out.sliding_window.assign(n, 0);
  switch (arch.architecture) {
    case Architecture::kLlama:
      return absl::OkStatus();
    case Architecture::kMistral:
    case Architecture::kMixtral: {  // every layer; MistralConfig defaults to 4096, Mixtral to None
      ASSIGN_OR_RETURN(int64_t window,
                       Window(f, arch.architecture == Architecture::kMistral ? 4096 : 0));
      out.sliding_window.assign(n, static_cast<int32_t>(window));
      return absl::OkStatus();
    }
    default:
      break;
  }
  // Qwen*: `sliding_window = sliding_window if use_sliding_window else None`.
  ASSIGN_OR_RETURN(bool use_sliding_window, f.Bool("use_sliding_window", false));
  ASSIGN_OR_RETURN(int64_t window, Window(f, 4096));
  if (!use_sliding_window) window = 0;
  if (arch.architecture == Architecture::kQwen3Moe) {
    // Qwen3MoeAttention uses config.sliding_window in every layer (no layer_types).
    out.sliding_window.assign(n, static_cast<int32_t>(window));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::optional<std::vector<bool>> sliding, LayerTypes(f, n));
  ASSIGN_OR_RETURN(int64_t max_window_layers, f.Int("max_window_layers", 28));
  for (int64_t i = 0; i < n; ++i) {
    bool slides;
    if (sliding.has_value()) {
      slides = (*sliding)[i];
    } else if (arch.architecture == Architecture::kQwen2Moe) {
      // Qwen2MoeConfig (transformers 5): `bool((i + 1) % 2) and i < max_window_layers`.
      slides = i % 2 == 0 && i < max_window_layers;
    } else {
      // Qwen2Config, Qwen3Config (transformers 5): `i >= max_window_layers`.
      slides = i >= max_window_layers;
    }
    out.sliding_window[i] = slides ? static_cast<int32_t>(window) : 0;
  }
  return absl::OkStatus();
}

// The expert count under its canonical name or its alias (transformers' attribute_map).
absl::StatusOr<int64_t> NumExperts(const Fields& f, const char* name, const char* alias) {
  if (f.Get(name) == nullptr && f.Get(alias) == nullptr) return f.Missing(name);
  if (f.Get(name) == nullptr) return f.Positive(alias, 1 << 20);
  ASSIGN_OR_RETURN(int64_t experts, f.Positive(name, 1 << 20));
  if (f.Get(alias) != nullptr) {
    ASSIGN_OR_RETURN(int64_t other, f.Int(alias));
    if (other != experts) {
      return f.Invalid(name,
                       absl::StrFormat("(%d) disagrees with '%s' (%d)", experts, alias, other));
    }
  }
  return experts;
}

absl::Status ParseMoe(const Fields& f, const ArchInfo& arch, ModelConfig& out) {
  const int64_t n = out.num_hidden_layers;
  out.layer_is_moe.assign(n, false);
  if (arch.architecture == Architecture::kMixtral) {
    ASSIGN_OR_RETURN(out.num_experts, NumExperts(f, "num_local_experts", "num_experts"));
    ASSIGN_OR_RETURN(out.num_experts_per_tok, f.Int("num_experts_per_tok", 2));
    out.moe_intermediate_size = out.intermediate_size;
    out.norm_topk_prob = true;  // MixtralSparseMoeBlock always renormalises the top-k
    out.layer_is_moe.assign(n, true);
  } else {
    const bool qwen2 = arch.architecture == Architecture::kQwen2Moe;
    ASSIGN_OR_RETURN(out.num_experts, NumExperts(f, "num_experts", "num_local_experts"));
    ASSIGN_OR_RETURN(out.num_experts_per_tok, f.Int("num_experts_per_tok", qwen2 ? 4 : 8));
    ASSIGN_OR_RETURN(out.moe_intermediate_size, f.Positive("moe_intermediate_size"));
    if (qwen2) {
      ASSIGN_OR_RETURN(out.shared_expert_intermediate_size,
                       f.Positive("shared_expert_intermediate_size"));
    }
    ASSIGN_OR_RETURN(out.norm_topk_prob, f.Bool("norm_topk_prob", false));
    ASSIGN_OR_RETURN(int64_t step, f.Int("decoder_sparse_step", 1));
    RETURN_IF_ERROR(f.CheckRange("decoder_sparse_step", step, 1, kMaxLayers).status());
    std::vector<bool> mlp_only(n, false);
    if (const json* v = f.Get("mlp_only_layers")) {
      if (!v->is_array()) return f.WrongType("mlp_only_layers", "a list of layer indices", *v);
      for (const json& index : *v) {
        ASSIGN_OR_RETURN(int64_t i, f.ToInt("mlp_only_layers", index));
        RETURN_IF_ERROR(f.CheckRange("mlp_only_layers", i, 0, n - 1).status());
        mlp_only[i] = true;
      }
    }
    // Qwen2MoeDecoderLayer / Qwen3MoeDecoderLayer.
    for (int64_t i = 0; i < n; ++i) out.layer_is_moe[i] = !mlp_only[i] && (i + 1) % step == 0;
  }
  RETURN_IF_ERROR(
      f.CheckRange("num_experts_per_tok", out.num_experts_per_tok, 1, out.num_experts).status());
  return absl::OkStatus();
}

// An int or list of ints (eos_token_id) as int32 token ids.
absl::StatusOr<std::vector<int32_t>> TokenIds(const Fields& f, const char* key) {
  const json* v = f.Get(key);
  std::vector<int32_t> ids;
  if (v == nullptr) return ids;
  if (v->is_array()) {
    for (const json& id : *v) {
      ASSIGN_OR_RETURN(int64_t value, f.ToInt(key, id));
      ASSIGN_OR_RETURN(value, f.CheckRange(key, value, 0, kMaxDim));
      ids.push_back(static_cast<int32_t>(value));
    }
    return ids;
  }
  ASSIGN_OR_RETURN(int64_t value, f.ToInt(key, *v));
  ASSIGN_OR_RETURN(value, f.CheckRange(key, value, 0, kMaxDim));
  ids.push_back(static_cast<int32_t>(value));
  return ids;
}

absl::Status ParseSpecialTokens(const Fields& f, const json* generation,
                                const std::string& generation_where, const ArchInfo& arch,
                                ModelConfig& out) {
  // generation_config.json wins where it has the field (non-null), as in GenerationConfig.
  static const json kEmpty = json::object();
  Fields g(generation != nullptr ? *generation : kEmpty, generation_where);
  const Fields& eos_source = g.Get("eos_token_id") != nullptr ? g : f;
  ASSIGN_OR_RETURN(out.eos_token_ids, TokenIds(eos_source, "eos_token_id"));
  if (!eos_source.Contains("eos_token_id") && arch.eos_token_id) {
    out.eos_token_ids = {*arch.eos_token_id};
  }
  const Fields& bos_source = g.Get("bos_token_id") != nullptr ? g : f;
  if (bos_source.Get("bos_token_id") != nullptr) {
    ASSIGN_OR_RETURN(int64_t bos, bos_source.Int("bos_token_id"));
    ASSIGN_OR_RETURN(bos, bos_source.CheckRange("bos_token_id", bos, 0, kMaxDim));
    out.bos_token_id = static_cast<int32_t>(bos);
  } else if (!bos_source.Contains("bos_token_id")) {
    out.bos_token_id = arch.bos_token_id;
  }
  return absl::OkStatus();
}

// `config_where` and `generation_where` name the two sources in error messages.
absl::StatusOr<ModelConfig> Parse(const json& config, const std::string& config_where,
                                  const json* generation, const std::string& generation_where) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_where, " is not a JSON object: ", DescribeJson(config)));
  }
  if (generation != nullptr && !generation->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(generation_where, " is not a JSON object: ", DescribeJson(*generation)));
  }
  Fields f(config, config_where);
  ASSIGN_OR_RETURN(const ArchInfo* arch, FindArchitecture(f));
  ModelConfig out;
  out.architecture = arch->architecture;
  out.architecture_name = std::string(arch->name);

  if (f.Get("quantization_config") != nullptr) {
    return f.Invalid("quantization_config",
                     "is an unsupported setting: quantized checkpoints are not supported");
  }
  ASSIGN_OR_RETURN(std::string act, f.String("hidden_act", "silu"));
  if (act != "silu") {
    return f.Invalid("hidden_act", absl::StrFormat("has unsupported value '%s' (only silu)", act));
  }

  ASSIGN_OR_RETURN(out.vocab_size, f.Positive("vocab_size"));
  ASSIGN_OR_RETURN(out.hidden_size, f.Positive("hidden_size"));
  ASSIGN_OR_RETURN(out.intermediate_size, f.Positive("intermediate_size"));
  ASSIGN_OR_RETURN(out.num_hidden_layers, f.Positive("num_hidden_layers", kMaxLayers));
  ASSIGN_OR_RETURN(out.num_attention_heads, f.Positive("num_attention_heads"));
  ASSIGN_OR_RETURN(out.num_key_value_heads, f.Int("num_key_value_heads", out.num_attention_heads));
  ASSIGN_OR_RETURN(out.num_key_value_heads,
                   f.CheckRange("num_key_value_heads", out.num_key_value_heads, 1, kMaxDim));
  if (out.num_attention_heads % out.num_key_value_heads != 0) {
    return f.Invalid("num_attention_heads",
                     absl::StrFormat("(%d) must be divisible by num_key_value_heads (%d)",
                                     out.num_attention_heads, out.num_key_value_heads));
  }
  if (f.Get("head_dim") != nullptr) {
    ASSIGN_OR_RETURN(out.head_dim, f.Positive("head_dim"));
  } else if (arch->architecture == Architecture::kQwen3) {
    out.head_dim = 128;  // Qwen3Config.head_dim defaults to 128, not hidden_size / heads
  } else if (out.hidden_size % out.num_attention_heads != 0) {
    return f.Invalid("hidden_size",
                     absl::StrFormat("(%d) must be divisible by num_attention_heads (%d) when "
                                     "head_dim is not given",
                                     out.hidden_size, out.num_attention_heads));
  } else {
    out.head_dim = out.hidden_size / out.num_attention_heads;
  }
  ASSIGN_OR_RETURN(out.rms_norm_eps, f.Double("rms_norm_eps", arch->rms_norm_eps));
  if (!(out.rms_norm_eps > 0.0)) return f.Invalid("rms_norm_eps", "must be positive");
  ASSIGN_OR_RETURN(out.max_position_embeddings,
                   f.Int("max_position_embeddings", arch->max_position_embeddings));
  ASSIGN_OR_RETURN(out.max_position_embeddings,
                   f.CheckRange("max_position_embeddings", out.max_position_embeddings, 1,
                                std::numeric_limits<int64_t>::max()));
  ASSIGN_OR_RETURN(out.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(out.dtype, ParseDType(f));

  switch (arch->architecture) {
    case Architecture::kLlama: {
      ASSIGN_OR_RETURN(out.qkv_bias, f.Bool("attention_bias", false));
      out.o_bias = out.qkv_bias;
      ASSIGN_OR_RETURN(out.mlp_bias, f.Bool("mlp_bias", false));
      break;
    }
    case Architecture::kMistral:
    case Architecture::kMixtral:
      break;
    case Architecture::kQwen2:
      out.qkv_bias = true;  // Qwen2Attention: q/k/v bias=True, o_proj bias=False
      break;
    case Architecture::kQwen2Moe: {
      ASSIGN_OR_RETURN(out.qkv_bias, f.Bool("qkv_bias", true));  // Qwen2MoeConfig.qkv_bias (5.x)
      break;
    }
    case Architecture::kQwen3:
    case Architecture::kQwen3Moe: {
      ASSIGN_OR_RETURN(out.qkv_bias, f.Bool("attention_bias", false));
      out.o_bias = out.qkv_bias;
      out.qk_norm = true;
      break;
    }
  }

  RETURN_IF_ERROR(ParseRope(f, *arch, out));
  RETURN_IF_ERROR(ParseSlidingWindows(f, *arch, out));
  const bool moe = arch->architecture == Architecture::kMixtral ||
                   arch->architecture == Architecture::kQwen2Moe ||
                   arch->architecture == Architecture::kQwen3Moe;
  if (moe) {
    RETURN_IF_ERROR(ParseMoe(f, *arch, out));
  } else {
    out.layer_is_moe.assign(out.num_hidden_layers, false);
  }
  RETURN_IF_ERROR(ParseSpecialTokens(f, generation, generation_where, *arch, out));
  return out;
}

}  // namespace

std::string_view ArchitectureName(Architecture architecture) {
  for (const ArchInfo& info : kArchitectures) {
    if (info.architecture == architecture) return info.name;
  }
  return "unknown";
}

absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& config) {
  try {
    return Parse(config, "config", nullptr, "generation_config");
  } catch (const json::exception& e) {  // not expected: every access is type-checked
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
  const std::string generation_path =
      (std::filesystem::path(dir) / "generation_config.json").string();
  ASSIGN_OR_RETURN(json config, ReadJsonFile(config_path, kMaxConfigFileBytes));
  std::optional<json> generation;
  if (absl::StatusOr<json> g = ReadJsonFile(generation_path, kMaxConfigFileBytes); g.ok()) {
    generation = std::move(*g);
  } else if (!absl::IsNotFound(g.status())) {
    return g.status();
  }
  try {
    return Parse(config, config_path, generation ? &*generation : nullptr, generation_path);
  } catch (const json::exception& e) {  // not expected: every access is type-checked
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", e.what()));
  }
}

int64_t DefaultMaxModelLen(const ModelConfig& config) {
  if (config.rope.type == "dynamic" && config.rope.factor > 1.0) {
    return static_cast<int64_t>(static_cast<double>(config.max_position_embeddings) * config.rope.factor);
  }
  return config.max_position_embeddings;
}

}  // namespace lattice
