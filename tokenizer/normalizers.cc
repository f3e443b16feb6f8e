// Normalizers of tokenizer.json (`tokenizers/src/normalizers`): Sequence, NFC, NFD,
// NFKC, NFKD, Lowercase, Strip, Prepend, Replace (string or regex pattern).
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/components.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void Normalize(std::string* text) const override {
    for (const auto& p : parts_) p->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  void Normalize(std::string* text) const override { *text = lattice::text::Normalize(*text, form_); }

 private:
  NormalizationForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void Normalize(std::string* text) const override { *text = ToLower(*text); }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      size_t pos = 0;
      while (pos < end) {
        size_t next = pos;
        if (!IsWhitespace(DecodeUtf8(*text, &next))) break;
        pos = next;
      }
      begin = pos;
    }
    if (right_) {
      // Walk back over whitespace characters one code point at a time.
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!IsWhitespace(DecodeUtf8(*text, &pos))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex regex, std::string content) : regex_(std::move(regex)), content_(std::move(content)) {}
  void Normalize(std::string* text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    regex_.FindAll(*text, &matches);
    if (matches.empty()) return;
    std::string out;
    size_t prev = 0;
    for (const auto& [s, e] : matches) {
      out.append(*text, prev, s - prev);
      out += content_;
      prev = e;
    }
    out.append(*text, prev, std::string::npos);
    *text = std::move(out);
  }

 private:
  Regex regex_;
  std::string content_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  auto type = GetType(j, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    auto parts = MakeParts<Normalizer>(j, "normalizers", where, MakeNormalizer);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(*parts)));
  }
  if (*type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalizationForm::kNfc));
  if (*type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalizationForm::kNfd));
  if (*type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalizationForm::kNfkc));
  if (*type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalizationForm::kNfkd));
  if (*type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (*type == "Strip") {
    return std::unique_ptr<Normalizer>(
        new StripNormalizer(GetBool(j, "left", true), GetBool(j, "right", true)));
  }
  if (*type == "Prepend") {
    auto prepend = GetString(j, "prepend", where);
    if (!prepend.ok()) return prepend.status();
    return std::unique_ptr<Normalizer>(new PrependNormalizer(*prepend));
  }
  if (*type == "Replace") {
    auto regex = GetPattern(j, where);
    if (!regex.ok()) return regex.status();
    auto content = GetString(j, "content", where);
    if (!content.ok()) return content.status();
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(std::move(*regex), *content));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": unsupported normalizer type '", *type, "'"));
}

}  // namespace lattice::text
