// See incremental_detokenizer.h.
#include "tokenizer/incremental_detokenizer.h"

#include "absl/strings/str_cat.h"

namespace lattice::text {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsBytePiece(const std::optional<std::string>& token) {
  return token && token->size() == 6 && token->compare(0, 3, "<0x") == 0 && (*token)[5] == '>';
}

// The last few context ids, or none where they end inside a character (their text
// would change once the new ids complete it).
// Ids the tokenizer does not know (a model's padded vocabulary rows) have no text; the
// `tokenizers` library's decode skips them too.
std::vector<int32_t> KnownIds(const Tokenizer& tokenizer, std::span<const int32_t> ids) {
  std::vector<int32_t> known;
  known.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id < tokenizer.vocab_size() && tokenizer.IdToToken(id)) known.push_back(id);
  }
  return known;
}

std::vector<int32_t> ContextIds(const Tokenizer& tokenizer, bool skip_special_tokens,
                                std::span<const int32_t> context) {
  const std::vector<int32_t> known = KnownIds(tokenizer, context);
  const size_t n = std::min(known.size(), IncrementalDetokenizer::kContextTokens);
  std::vector<int32_t> ids(known.end() - n, known.end());
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (skip_special_tokens && tokenizer.IsSpecialId(*it)) continue;
    if (IsBytePiece(tokenizer.IdToToken(*it))) return {};
    break;
  }
  auto text = tokenizer.Decode(ids, skip_special_tokens);
  if (!text.ok() || EndsWith(*text, kReplacement)) return {};
  return ids;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens,
                                               std::span<const int32_t> context)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {
  window_ = ContextIds(tokenizer, skip_special_tokens, context);
  all_ = window_;
  num_context_ = window_.size();
  emitted_ = window_.size();
  auto prefix = tokenizer_.Decode(window_, skip_special_tokens_);
  prefix_ = prefix.ok() ? *prefix : std::string();
}

bool IncrementalDetokenizer::HoldsBack(const std::string& text) const {
  if (text.size() <= prefix_.size() || EndsWith(text, kReplacement)) return true;
  if (text.compare(0, prefix_.size(), prefix_) != 0) return true;  // an earlier piece changed: wait
  if (window_.size() - emitted_ > kMaxHeldTokens) return false;
  // The last token the decoder sees (skipped special tokens are invisible to it: byte
  // runs on both sides of one join).
  for (auto it = window_.rbegin(); it != window_.rend(); ++it) {
    if (skip_special_tokens_ && tokenizer_.IsSpecialId(*it)) continue;
    return IsBytePiece(tokenizer_.IdToToken(*it));
  }
  return false;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size() || !tokenizer_.IdToToken(id)) return std::string();
  window_.push_back(id);
  all_.push_back(id);
  auto text = tokenizer_.Decode(window_, skip_special_tokens_);
  if (!text.ok()) return text.status();
  if (HoldsBack(*text)) return std::string();
  std::string piece = text->substr(prefix_.size());
  // The emitted tokens stay as the context of the next window; older ones go.
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(emitted_));
  emitted_ = window_.size();
  auto prefix = tokenizer_.Decode(window_, skip_special_tokens_);
  if (!prefix.ok()) return prefix.status();
  prefix_ = std::move(*prefix);
  emitted_text_ += piece;
  return piece;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Finish() {
  auto full = FullDecode(tokenizer_, skip_special_tokens_,
                         std::span<const int32_t>(all_.data(), num_context_),
                         std::span<const int32_t>(all_.data() + num_context_, all_.size() - num_context_));
  if (!full.ok()) return full.status();
  std::string rest;
  if (full->compare(0, emitted_text_.size(), emitted_text_) == 0) {
    rest = full->substr(emitted_text_.size());
  } else {
    // Only after a forced emission (kMaxHeldTokens): what the window adds.
    auto text = tokenizer_.Decode(window_, skip_special_tokens_);
    if (!text.ok()) return text.status();
    if (text->compare(0, prefix_.size(), prefix_) == 0) rest = text->substr(prefix_.size());
  }
  emitted_text_ += rest;
  window_.clear();
  return rest;
}

absl::StatusOr<std::string> IncrementalDetokenizer::FullDecode(const Tokenizer& tokenizer, bool skip_special_tokens,
                                                               std::span<const int32_t> context,
                                                               std::span<const int32_t> ids) {
  std::vector<int32_t> all = ContextIds(tokenizer, skip_special_tokens, context);
  auto context_text = tokenizer.Decode(all, skip_special_tokens);
  if (!context_text.ok()) return context_text.status();
  const std::vector<int32_t> known = KnownIds(tokenizer, ids);
  all.insert(all.end(), known.begin(), known.end());
  auto text = tokenizer.Decode(all, skip_special_tokens);
  if (!text.ok()) return text.status();
  if (text->compare(0, context_text->size(), *context_text) != 0) {
    // A decoder that rewrites earlier text (not one of the library's): no context.
    return tokenizer.Decode(known, skip_special_tokens);
  }
  return text->substr(context_text->size());
}

}  // namespace lattice::text
