// Added and special tokens (`tokenizers/src/tokenizer/added_vocabulary.rs`): found in
// the input before the model sees it, leftmost-longest, with their single_word, lstrip,
// rstrip and normalized flags; the non-normalized ones on the raw text, the normalized
// ones on each normalized piece.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenizer/components.h"

namespace lattice::text {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` (may be null) normalizes the contents of normalized tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits `text` into added tokens and normalized remainders (empty pieces dropped).
  std::vector<Split> ExtractAndNormalize(std::string_view text, const Normalizer* normalizer) const;

  const AddedToken* FindById(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view content) const;
  // Whether `content` is the content of a special token (decode skips those).
  bool IsSpecialContent(std::string_view content) const;

 private:
  struct MatchSet {
    std::vector<std::string> patterns;  // what to look for
    std::vector<int32_t> token_index;   // into tokens_
    // Pattern indices by first byte, longest first.
    std::vector<std::vector<int32_t>> by_first_byte = std::vector<std::vector<int32_t>>(256);
  };
  void BuildMatchSet(MatchSet* set);
  // find_matches: (token index or -1, [begin, end)) covering `sentence`.
  std::vector<std::pair<int32_t, std::pair<size_t, size_t>>> FindMatches(std::string_view sentence,
                                                                          const MatchSet& set) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, int32_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  MatchSet raw_;
  MatchSet normalized_;
};

}  // namespace lattice::text
