// A tokenizer backed by libsentencepiece (Debian's libsentencepiece-dev), for model
// directories that ship only tokenizer.model: what transformers' slow LlamaTokenizer
// does. Control pieces (<s>, </s>, ...) written in the text are recognised as tokens,
// the rest is encoded by sentencepiece (through its plugin, see sentencepiece_backend.h); BOS/EOS follow add_bos_token (default on) and
// add_eos_token (default off).
#include "absl/strings/str_cat.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_backend.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const override {
    if (absl::Status status = CheckUtf8(text); !status.ok()) return status;
    std::vector<int32_t> ids;
    if (add_special_tokens && config_.add_bos_token.value_or(true) && sp_->bos_id() >= 0) ids.push_back(sp_->bos_id());
    for (const auto& split : added_.ExtractAndNormalize(text, nullptr)) {
      if (split.token_id >= 0) {
        ids.push_back(split.token_id);
        continue;
      }
      std::vector<int> piece_ids;
      if (auto error = sp_->Encode(split.text, &piece_ids); !error.empty()) {
        return absl::InternalError(absl::StrCat("sentencepiece: ", error));
      }
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    if (add_special_tokens && config_.add_eos_token.value_or(false) && sp_->eos_id() >= 0) ids.push_back(sp_->eos_id());
    return ids;
  }

  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    std::vector<int> run;
    auto flush = [&]() -> absl::Status {
      if (run.empty()) return absl::OkStatus();
      std::string text;
      if (auto error = sp_->Decode(run, &text); !error.empty()) {
        return absl::InternalError(absl::StrCat("sentencepiece: ", error));
      }
      out += text;
      run.clear();
      return absl::OkStatus();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_->PieceSize()) return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is not in the vocabulary"));
      if (IsSpecialId(id)) {
        if (auto s = flush(); !s.ok()) return s;
        if (!skip_special_tokens) out += sp_->IdToPiece(id);
        continue;
      }
      run.push_back(id);
    }
    if (auto s = flush(); !s.ok()) return s;
    return out;
  }

  int32_t vocab_size() const override { return sp_->PieceSize(); }
  std::optional<int32_t> TokenToId(std::string_view token) const override {
    const int id = sp_->PieceToId(token);
    if (id == sp_->unk_id() && token != sp_->IdToPiece(id)) return std::nullopt;
    return id;
  }
  std::optional<std::string> IdToToken(int32_t id) const override {
    if (id < 0 || id >= sp_->PieceSize()) return std::nullopt;
    return sp_->IdToPiece(id);
  }
  bool IsSpecialId(int32_t id) const override { return sp_->IsControl(id) || sp_->IsUnknown(id); }
  TokenizerConfig& mutable_config() { return config_; }

  std::unique_ptr<SentencePieceModel> sp_;
  AddedVocabulary added_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeSentencePieceTokenizer(const std::string& model_path,
                                                                      TokenizerConfig config) {
  auto t = std::make_unique<SentencePieceTokenizer>();
  auto model = LoadSentencePieceModel(model_path);
  if (!model.ok()) return model.status();
  t->sp_ = std::move(*model);
  std::vector<AddedToken> specials;
  for (int id = 0; id < t->sp_->PieceSize(); ++id) {
    if (!t->sp_->IsControl(id) && !t->sp_->IsUnknown(id)) continue;
    AddedToken token;
    token.id = id;
    token.content = t->sp_->IdToPiece(id);
    token.normalized = false;
    token.special = true;
    specials.push_back(std::move(token));
  }
  t->added_ = AddedVocabulary(std::move(specials), nullptr);
  if (!config.bos_token && t->sp_->bos_id() >= 0) config.bos_token = t->sp_->IdToPiece(t->sp_->bos_id());
  if (!config.eos_token && t->sp_->eos_id() >= 0) config.eos_token = t->sp_->IdToPiece(t->sp_->eos_id());
  t->mutable_config() = std::move(config);
  return std::unique_ptr<Tokenizer>(std::move(t));
}

}  // namespace lattice::text
