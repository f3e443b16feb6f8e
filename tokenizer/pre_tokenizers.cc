// Pre-tokenizers of tokenizer.json (`tokenizers/src/pre_tokenizers`): Sequence, Split
// (regex or string, every delimiter behaviour, invert), ByteLevel, Digits, Metaspace,
// Whitespace, WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer.
#include <functional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tokenizer/components.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<Behavior> ParseBehavior(const nlohmann::json& j, const std::string& where, Behavior fallback) {
  auto it = j.find("behavior");
  if (it == j.end() || it->is_null()) return fallback;
  const std::string b = it->is_string() ? it->get<std::string>() : "";
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported split behavior '", b, "'"));
}

using Ranges = std::vector<std::pair<std::pair<size_t, size_t>, bool>>;

// NormalizedString::split: turns (range, is_match) pairs into the kept ranges.
std::vector<std::pair<size_t, size_t>> ApplyBehavior(const Ranges& matches, Behavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& m : matches) out.push_back(m.first);
      break;
    case Behavior::kRemoved:
      for (const auto& m : matches) {
        if (!m.second) out.push_back(m.first);
      }
      break;
    case Behavior::kContiguous: {
      bool previous_match = false;
      for (const auto& [range, is_match] : matches) {
        if (is_match == previous_match && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& [range, is_match] : matches) {
        if (is_match && !previous_match && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        const auto& [range, is_match] = *it;
        if (is_match && !previous_match && !out.empty()) {
          out.back().first = range.first;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

// Replaces every non-token split by the pieces `fn` makes of its text; empty pieces
// are dropped, and only the first piece of a split that started the input keeps
// at_start.
void SplitEach(std::vector<Split>* splits, const std::function<std::vector<std::string>(Split&)>& fn) {
  std::vector<Split> out;
  out.reserve(splits->size());
  for (auto& split : *splits) {
    if (split.token_id >= 0) {
      out.push_back(std::move(split));
      continue;
    }
    bool first = true;
    const bool at_start = split.at_start;
    for (auto& piece : fn(split)) {
      if (piece.empty()) continue;
      out.push_back(Split{std::move(piece), -1, at_start && first});
      first = false;
    }
  }
  *splits = std::move(out);
}

std::vector<std::string> Slice(const std::string& text, const std::vector<std::pair<size_t, size_t>>& ranges) {
  std::vector<std::string> out;
  out.reserve(ranges.size());
  for (const auto& [s, e] : ranges) out.push_back(text.substr(s, e - s));
  return out;
}

// Ranges flagging each character for which `pred` holds as its own match.
Ranges CharMatches(const std::string& text, const std::function<bool(char32_t)>& pred) {
  Ranges out;
  size_t pos = 0, last = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = DecodeUtf8(text, &pos);
    if (pred(c)) {
      if (last < start) out.push_back({{last, start}, false});
      out.push_back({{start, pos}, true});
      last = pos;
    }
  }
  if (last < text.size()) out.push_back({{last, text.size()}, false});
  return out;
}

Ranges Invert(Ranges ranges) {
  for (auto& r : ranges) r.second = !r.second;
  return ranges;
}

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    for (const auto& p : parts_) p->PreTokenize(splits);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitEach(splits, [this](Split& s) {
      Ranges matches = FindMatches(regex_, s.text);
      if (invert_) matches = Invert(std::move(matches));
      return Slice(s.text, ApplyBehavior(matches, behavior_));
    });
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

// GPT-2's pattern, what ByteLevel splits with when use_regex is set.
constexpr char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitEach(splits, [this](Split& s) {
      if (add_prefix_space_ && (s.text.empty() || s.text[0] != ' ')) s.text.insert(0, " ");
      std::vector<std::string> pieces;
      if (regex_ != nullptr) {
        Ranges matches = FindMatches(*regex_, s.text);
        pieces = Slice(s.text, ApplyBehavior(matches, Behavior::kIsolated));
      } else {
        pieces.push_back(std::move(s.text));
      }
      for (auto& p : pieces) p = ByteLevelEncode(p);
      return pieces;
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitEach(splits, [this](Split& s) {
      Ranges matches = CharMatches(s.text, IsNumeric);
      return Slice(s.text, ApplyBehavior(matches, individual_ ? Behavior::kIsolated : Behavior::kContiguous));
    });
  }

 private:
  bool individual_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    size_t pos = 0;
    const char32_t replacement_char = DecodeUtf8(replacement_, &pos);
    SplitEach(splits, [&](Split& s) {
      std::string text;
      text.reserve(s.text.size() + replacement_.size());
      for (char c : s.text) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text += c;
        }
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && s.at_start))) {
        text.insert(0, replacement_);
      }
      if (!split_) return std::vector<std::string>{std::move(text)};
      Ranges matches = CharMatches(text, [&](char32_t c) { return c == replacement_char; });
      return Slice(text, ApplyBehavior(matches, Behavior::kMergedWithNext));
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class CharPredicatePreTokenizer final : public PreTokenizer {
 public:
  CharPredicatePreTokenizer(std::function<bool(char32_t)> pred, Behavior behavior)
      : pred_(std::move(pred)), behavior_(behavior) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitEach(splits, [this](Split& s) { return Slice(s.text, ApplyBehavior(CharMatches(s.text, pred_), behavior_)); });
  }

 private:
  std::function<bool(char32_t)> pred_;
  Behavior behavior_;
};

// Whitespace: \w+|[^\w\s]+ kept, the rest removed (Oniguruma's classes, as upstream).
class WhitespacePreTokenizer final : public PreTokenizer {
 public:
  explicit WhitespacePreTokenizer(Regex regex) : regex_(std::move(regex)) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitEach(splits, [this](Split& s) {
      return Slice(s.text, ApplyBehavior(Invert(FindMatches(regex_, s.text)), Behavior::kRemoved));
    });
  }

 private:
  Regex regex_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  auto type = GetType(j, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    auto parts = MakeParts<PreTokenizer>(j, "pretokenizers", where, MakePreTokenizer);
    if (!parts.ok()) return parts.status();
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(*parts)));
  }
  if (*type == "Split") {
    auto regex = GetPattern(j, where);
    if (!regex.ok()) return regex.status();
    auto behavior = ParseBehavior(j, where, Behavior::kIsolated);
    if (!behavior.ok()) return behavior.status();
    return std::unique_ptr<PreTokenizer>(
        new SplitPreTokenizer(std::move(*regex), *behavior, GetBool(j, "invert", false)));
  }
  if (*type == "ByteLevel") {
    std::unique_ptr<Regex> regex;
    if (GetBool(j, "use_regex", true)) {
      auto r = Regex::Compile(kGpt2Pattern);
      if (!r.ok()) return r.status();
      regex = std::make_unique<Regex>(std::move(*r));
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(GetBool(j, "add_prefix_space", true), std::move(regex)));
  }
  if (*type == "Digits") {
    return std::unique_ptr<PreTokenizer>(new DigitsPreTokenizer(GetBool(j, "individual_digits", false)));
  }
  if (*type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto it = j.find("replacement"); it != j.end() && it->is_string()) replacement = it->get<std::string>();
    PrependScheme scheme = GetBool(j, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
    if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
      const auto s = it->get<std::string>();
      if (s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported prepend_scheme '", s, "'"));
      }
    }
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(replacement, scheme, GetBool(j, "split", true)));
  }
  if (*type == "Whitespace") {
    auto regex = Regex::Compile(R"(\w+|[^\w\s]+)");
    if (!regex.ok()) return regex.status();
    return std::unique_ptr<PreTokenizer>(new WhitespacePreTokenizer(std::move(*regex)));
  }
  if (*type == "WhitespaceSplit") {
    return std::unique_ptr<PreTokenizer>(new CharPredicatePreTokenizer(IsWhitespace, Behavior::kRemoved));
  }
  if (*type == "Punctuation") {
    auto behavior = ParseBehavior(j, where, Behavior::kIsolated);
    if (!behavior.ok()) return behavior.status();
    return std::unique_ptr<PreTokenizer>(new CharPredicatePreTokenizer(IsPunctuation, *behavior));
  }
  if (*type == "CharDelimiterSplit") {
    auto delimiter = GetString(j, "delimiter", where);
    if (!delimiter.ok()) return delimiter.status();
    size_t pos = 0;
    const char32_t d = DecodeUtf8(*delimiter, &pos);
    return std::unique_ptr<PreTokenizer>(
        new CharPredicatePreTokenizer([d](char32_t c) { return c == d; }, Behavior::kRemoved));
  }
  if (*type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(std::make_unique<CharPredicatePreTokenizer>(IsWhitespace, Behavior::kRemoved));
    parts.push_back(std::make_unique<CharPredicatePreTokenizer>(IsPunctuation, Behavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": unsupported pre_tokenizer type '", *type, "'"));
}

}  // namespace lattice::text
