// Regular expressions through Oniguruma, the engine the `tokenizers` library itself
// uses (its `onig` feature, on by default), so that the look-arounds, possessive
// forms and Unicode classes of tokenizer patterns (\p{L}, \p{N}, (?!\S), (?i:...)) mean
// exactly what they mean there.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice::text {

class Regex {
 public:
  // Compiles `pattern` (UTF-8, Oniguruma's default syntax, no options).
  static absl::StatusOr<Regex> Compile(std::string_view pattern);
  // A regex that matches `literal` exactly.
  static absl::StatusOr<Regex> Literal(std::string_view literal);

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Every match as [begin, end) byte offsets, in order, as the `onig` crate's
  // find_iter yields them (an empty match right after the previous match is skipped
  // and the search moves one character on). Safe to call from several threads.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
};

// The splits of `text` by `regex` as [begin, end) ranges covering all of it, each
// flagged as a match or not (the `tokenizers` Pattern::find_matches contract: an
// empty text is one non-matching empty range).
std::vector<std::pair<std::pair<size_t, size_t>, bool>> FindMatches(const Regex& regex, std::string_view text);

}  // namespace lattice::text
