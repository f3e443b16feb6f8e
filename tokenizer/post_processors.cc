// Post-processors of tokenizer.json (`tokenizers/src/processors`) for single
// sequences: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (which
// changes only offsets, so no ids) and Sequence.
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tokenizer/components.h"
#include "tokenizer/json_fields.h"

namespace lattice::text {
namespace {

// The ids to put before and after the sequence.
class AffixProcessor final : public PostProcessor {
 public:
  AffixProcessor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  std::vector<int32_t> Process(std::vector<int32_t> ids) const override {
    if (before_.empty() && after_.empty()) return ids;
    std::vector<int32_t> out;
    out.reserve(before_.size() + ids.size() + after_.size());
    out.insert(out.end(), before_.begin(), before_.end());
    out.insert(out.end(), ids.begin(), ids.end());
    out.insert(out.end(), after_.begin(), after_.end());
    return out;
  }

 private:
  std::vector<int32_t> before_, after_;
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  std::vector<int32_t> Process(std::vector<int32_t> ids) const override {
    for (const auto& p : parts_) ids = p->Process(std::move(ids));
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

absl::StatusOr<std::unique_ptr<PostProcessor>> MakeTemplate(const nlohmann::json& j, const std::string& where) {
  const auto* single = FindArray(j, "single");
  if (single == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, ": TemplateProcessing without single"));
  const auto specials = j.find("special_tokens");
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (const auto& piece : *single) {
    if (piece.contains("Sequence")) {
      if (seen_sequence) return absl::InvalidArgumentError(absl::StrCat(where, ": single has two sequences"));
      seen_sequence = true;
      continue;
    }
    auto it = piece.find("SpecialToken");
    if (it == piece.end() || !it->contains("id")) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported template piece ", piece.dump()));
    }
    const std::string name = (*it)["id"].get<std::string>();
    if (specials == j.end() || !specials->contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": special token '", name, "' missing from special_tokens"));
    }
    const auto& ids = (*specials)[name]["ids"];
    auto& target = seen_sequence ? after : before;
    for (const auto& id : ids) target.push_back(id.get<int32_t>());
  }
  if (!seen_sequence) return absl::InvalidArgumentError(absl::StrCat(where, ": single has no sequence"));
  return std::unique_ptr<PostProcessor>(new AffixProcessor(std::move(before), std::move(after)));
}

// BertProcessing / RobertaProcessing: "cls": [token, id], "sep": [token, id].
absl::StatusOr<std::unique_ptr<PostProcessor>> MakeClsSep(const nlohmann::json& j, const std::string& where) {
  const auto cls = j.find("cls"), sep = j.find("sep");
  if (cls == j.end() || sep == j.end() || !cls->is_array() || !sep->is_array() || cls->size() != 2 || sep->size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing cls/sep"));
  }
  return std::unique_ptr<PostProcessor>(
      new AffixProcessor({(*cls)[1].get<int32_t>()}, {(*sep)[1].get<int32_t>()}));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> MakePostProcessor(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  auto type = GetType(j, where);
  if (!type.ok()) return type.status();
  if (*type == "TemplateProcessing") return MakeTemplate(j, where);
  if (*type == "BertProcessing" || *type == "RobertaProcessing") return MakeClsSep(j, where);
  if (*type == "ByteLevel") return std::unique_ptr<PostProcessor>(new AffixProcessor({}, {}));
  if (*type == "Sequence") {
    auto parts = MakeParts<PostProcessor>(j, "processors", where, MakePostProcessor);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<PostProcessor>(new SequenceProcessor(std::move(*parts)));
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported post_processor type '", *type, "'"));
}

// A template of bos/eos around the sequence, as transformers' Llama and Gemma fast
// tokenizers rebuild it from add_bos_token/add_eos_token.
std::unique_ptr<PostProcessor> MakeAffixPostProcessor(std::vector<int32_t> before, std::vector<int32_t> after) {
  return std::make_unique<AffixProcessor>(std::move(before), std::move(after));
}

}  // namespace lattice::text
