// The tokenizer.json pipeline (`tokenizers/src/tokenizer/mod.rs`): added tokens are
// split out of the raw text, the rest is normalized, normalized added tokens are split
// out, pre-tokenized, run through the model, and the post-processor adds the special
// tokens. Decoding maps ids to token strings (special ones skipped on request) and runs
// the decoder chain.
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/components.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

class HfTokenizer final : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const override {
    if (absl::Status status = CheckUtf8(text); !status.ok()) return status;
    std::vector<Split> splits = added_.ExtractAndNormalize(text, normalizer_.get());
    if (pre_tokenizer_ != nullptr) pre_tokenizer_->PreTokenize(&splits);
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const auto& s : splits) {
      if (s.token_id >= 0) {
        ids.push_back(s.token_id);
      } else {
        model_->Tokenize(s.text, &ids);
      }
    }
    if (add_special_tokens && post_processor_ != nullptr) ids = post_processor_->Process(std::move(ids));
    return ids;
  }

  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      if (const AddedToken* added = added_.FindById(id)) {
        if (skip_special_tokens && added->special) continue;
        tokens.push_back(added->content);
        continue;
      }
      const std::string* token = model_->IdToToken(id);
      if (token == nullptr) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is not in the vocabulary"));
      if (skip_special_tokens && added_.IsSpecialContent(*token)) continue;
      tokens.push_back(*token);
    }
    if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
    return absl::StrJoin(decoder_->DecodeChain(std::move(tokens)), "");
  }

  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> TokenToId(std::string_view token) const override {
    if (auto id = added_.TokenToId(token)) return id;
    return model_->TokenToId(token);
  }
  std::optional<std::string> IdToToken(int32_t id) const override {
    if (const AddedToken* added = added_.FindById(id)) return added->content;
    if (const std::string* token = model_->IdToToken(id)) return *token;
    return std::nullopt;
  }
  bool IsSpecialId(int32_t id) const override {
    const AddedToken* added = added_.FindById(id);
    return added != nullptr && added->special;
  }
  TokenizerConfig& mutable_config() { return config_; }

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
  int32_t vocab_size_ = 0;
};

// transformers' Llama and Gemma fast tokenizers rebuild the post-processor from
// add_bos_token / add_eos_token (LlamaTokenizerFast.update_post_processor).
bool RebuildsPostProcessor(const std::string& tokenizer_class) {
  for (const char* name : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
                           "GemmaTokenizer", "GemmaTokenizerFast"}) {
    if (tokenizer_class == name) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeHfTokenizer(std::string_view tokenizer_json, TokenizerConfig config) {
  nlohmann::json j = nlohmann::json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("tokenizer.json: not a JSON object");
  auto t = std::make_unique<HfTokenizer>();
  t->mutable_config() = std::move(config);
  for (const char* unsupported : {"truncation", "padding"}) {
    if (j.contains(unsupported) && !j[unsupported].is_null()) {
      // Serving decides lengths itself; a tokenizer that truncates or pads would change ids.
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: '", unsupported, "' is set; not supported"));
    }
  }
  const auto& model = j.value("model", nlohmann::json());
  const std::string model_type = model.is_object() ? model.value("type", std::string("BPE")) : "";
  if (model_type != "BPE") {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: model: unsupported model type '", model_type, "'"));
  }
  // Each component from its place in the file; a null one is absent.
  auto assign = [&j](auto make, const char* key, auto& out) -> absl::Status {
    auto made = make(j.value(key, nlohmann::json()), absl::StrCat("tokenizer.json: ", key));
    if (!made.ok()) return made.status();
    out = std::move(*made);
    return absl::OkStatus();
  };
  if (auto s = assign(MakeNormalizer, "normalizer", t->normalizer_); !s.ok()) return s;
  if (auto s = assign(MakePreTokenizer, "pre_tokenizer", t->pre_tokenizer_); !s.ok()) return s;
  if (auto s = assign(BpeModel::FromJson, "model", t->model_); !s.ok()) return s;
  if (auto s = assign(MakePostProcessor, "post_processor", t->post_processor_); !s.ok()) return s;
  if (auto s = assign(MakeDecoder, "decoder", t->decoder_); !s.ok()) return s;

  std::vector<AddedToken> added;
  int32_t max_id = t->model_->vocab_size() - 1;
  if (const auto it = j.find("added_tokens"); it != j.end() && it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& a = (*it)[i];
      if (!a.is_object() || !a.contains("id") || !a.contains("content")) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: added_tokens[", i, "] lacks id or content"));
      }
      AddedToken token;
      token.id = a["id"].get<int32_t>();
      token.content = a["content"].get<std::string>();
      token.single_word = a.value("single_word", false);
      token.lstrip = a.value("lstrip", false);
      token.rstrip = a.value("rstrip", false);
      token.special = a.value("special", false);
      token.normalized = a.value("normalized", !token.special);
      max_id = std::max(max_id, token.id);
      added.push_back(std::move(token));
    }
  }
  t->added_ = AddedVocabulary(std::move(added), t->normalizer_.get());
  t->vocab_size_ = max_id + 1;

  if (RebuildsPostProcessor(t->mutable_config().tokenizer_class)) {
    std::vector<int32_t> before, after;
    if (t->mutable_config().add_bos_token.value_or(true) && t->mutable_config().bos_token) {
      auto id = t->TokenToId(*t->mutable_config().bos_token);
      if (!id) return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: bos_token '", *t->mutable_config().bos_token, "' is not a token"));
      before.push_back(*id);
    }
    if (t->mutable_config().add_eos_token.value_or(false) && t->mutable_config().eos_token) {
      auto id = t->TokenToId(*t->mutable_config().eos_token);
      if (!id) return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: eos_token '", *t->mutable_config().eos_token, "' is not a token"));
      after.push_back(*id);
    }
    t->post_processor_ = MakeAffixPostProcessor(std::move(before), std::move(after));
  }
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace lattice::text
