// Tokenizer loading: which files a model directory has, and tokenizer_config.json.
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tokenizer/hf_tokenizer.h"

namespace lattice::text {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special-token field: a string, or an AddedToken object with "content"; null or
// absent is none.
std::optional<std::string> TokenField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<bool> BoolField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

}  // namespace

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view json) {
  TokenizerConfig config;
  if (json.empty()) return config;
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  config.tokenizer_class = j.value("tokenizer_class", std::string());
  config.bos_token = TokenField(j, "bos_token");
  config.eos_token = TokenField(j, "eos_token");
  config.unk_token = TokenField(j, "unk_token");
  config.pad_token = TokenField(j, "pad_token");
  config.add_bos_token = BoolField(j, "add_bos_token");
  config.add_eos_token = BoolField(j, "add_eos_token");
  return config;
}

bool Tokenizer::HasTokenizerFiles(const std::string& dir) {
  namespace fs = std::filesystem;
  return fs::exists(fs::path(dir) / "tokenizer.json") || fs::exists(fs::path(dir) / "tokenizer.model");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                                std::string_view tokenizer_config_json) {
  auto config = ParseTokenizerConfig(tokenizer_config_json);
  if (!config.ok()) return config.status();
  return MakeHfTokenizer(tokenizer_json, std::move(*config));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string config_text;
  if (fs::exists(fs::path(dir) / "tokenizer_config.json")) {
    auto text = ReadFile((fs::path(dir) / "tokenizer_config.json").string());
    if (!text.ok()) return text.status();
    config_text = std::move(*text);
  }
  auto config = ParseTokenizerConfig(config_text);
  if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(dir, ": ", config.status().message()));
  const fs::path json_path = fs::path(dir) / "tokenizer.json";
  if (fs::exists(json_path)) {
    auto text = ReadFile(json_path.string());
    if (!text.ok()) return text.status();
    auto t = MakeHfTokenizer(*text, std::move(*config));
    if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(dir, "/", t.status().message()));
    return t;
  }
  const fs::path sp_path = fs::path(dir) / "tokenizer.model";
  if (fs::exists(sp_path)) return MakeSentencePieceTokenizer(sp_path.string(), std::move(*config));
  return absl::NotFoundError(absl::StrCat(dir, " has no tokenizer.json or tokenizer.model"));
}

std::optional<int32_t> Tokenizer::bos_token_id() const {
  return config_.bos_token ? TokenToId(*config_.bos_token) : std::nullopt;
}

std::optional<int32_t> Tokenizer::eos_token_id() const {
  return config_.eos_token ? TokenToId(*config_.eos_token) : std::nullopt;
}

}  // namespace lattice::text
