// Streaming detokenization of one sequence: token ids in, text out, piece by piece.
//
// Each step decodes a short window of recent ids and emits what it adds beyond the
// text of the window's already-emitted part (the `tokenizers` DecodeStream rule), so
// decoders that treat the first token specially (Strip, Metaspace) see the same
// context for both and the difference is exact. Text is held back while it could still
// change: when it ends in U+FFFD (a multi-byte character split across tokens) and
// while the last token is a byte-fallback piece (<0xNN>, whose run may still turn out
// invalid and decode differently). Every piece is valid UTF-8, and the pieces of a
// sequence concatenate to its full decode (Finish emits what is left; past
// kMaxHeldTokens of one held byte run, see below, exactness is given up for bounded
// work, and Finish then emits what it can rather than fail). Ids the
// tokenizer does not know (padded vocabulary rows a model can sample) have no text.
//
// One owner; not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace lattice::text {

class IncrementalDetokenizer {
 public:
  // `context`: the ids before the first new one (the prompt); its last few ids are
  // decoded with the first new tokens so that, for example, a leading "▁" becomes a
  // space as it does in the middle of a text.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens, std::span<const int32_t> context);

  // Adds one id; returns the text that became final (possibly empty).
  absl::StatusOr<std::string> Push(int32_t id);
  // The end of the sequence: the text held back so far.
  absl::StatusOr<std::string> Finish();

  // The text of the new ids in context: what all pieces together must equal.
  static absl::StatusOr<std::string> FullDecode(const Tokenizer& tokenizer, bool skip_special_tokens,
                                                std::span<const int32_t> context, std::span<const int32_t> ids);

  // How many prompt ids serve as context.
  static constexpr size_t kContextTokens = 5;
  // A byte-fallback run held longer than this is emitted anyway (each Push re-decodes the
  // held window): only a run that later turns invalid could then decode differently.
  static constexpr size_t kMaxHeldTokens = 64;

 private:
  bool HoldsBack(const std::string& text) const;

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> window_;  // ids being decoded together
  size_t emitted_ = 0;           // window_[0, emitted_) is emitted text (or context)
  std::string prefix_;           // the decode of window_[0, emitted_)
  std::vector<int32_t> all_;     // context + every id, for Finish
  size_t num_context_ = 0;
  std::string emitted_text_;     // everything emitted so far
};

}  // namespace lattice::text
