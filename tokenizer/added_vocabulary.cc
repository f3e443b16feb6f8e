// See added_vocabulary.h. The matcher is a first-byte index over the patterns, longest
// first: leftmost-longest like the library's Aho-Corasick for the few hundred added
// tokens real models have.
#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace lattice::text {
namespace {

// The last character of `s` (U+FFFD-free input assumed: the text is valid UTF-8).
char32_t LastChar(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t pos = start;
  return DecodeUtf8(s, &pos);
}

bool EndsWithWord(std::string_view s) { return !s.empty() && IsWordCharacter(LastChar(s)); }
bool StartsWithWord(std::string_view s) {
  size_t pos = 0;
  return !s.empty() && IsWordCharacter(DecodeUtf8(s, &pos));
}

// Start of the run of whitespace that ends `s`.
size_t SpaceLeftmostAtEnd(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!IsWhitespace(DecodeUtf8(s, &pos))) break;
    end = start;
  }
  return end;
}

// Length of the run of whitespace that starts `s`.
size_t SpaceRightmostAtStart(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!IsWhitespace(DecodeUtf8(s, &next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (int32_t i = 0; i < static_cast<int32_t>(tokens_.size()); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = i;
    if (t.content.empty()) continue;
    if (t.normalized) {
      std::string pattern = t.content;
      if (normalizer != nullptr) normalizer->Normalize(&pattern);
      normalized_.patterns.push_back(std::move(pattern));
      normalized_.token_index.push_back(i);
    } else {
      raw_.patterns.push_back(t.content);
      raw_.token_index.push_back(i);
    }
  }
  BuildMatchSet(&raw_);
  BuildMatchSet(&normalized_);
}

void AddedVocabulary::BuildMatchSet(MatchSet* set) {
  for (int32_t p = 0; p < static_cast<int32_t>(set->patterns.size()); ++p) {
    if (set->patterns[p].empty()) continue;
    set->by_first_byte[static_cast<unsigned char>(set->patterns[p][0])].push_back(p);
  }
  for (auto& list : set->by_first_byte) {
    std::stable_sort(list.begin(), list.end(),
                     [&](int32_t a, int32_t b) { return set->patterns[a].size() > set->patterns[b].size(); });
  }
}

std::vector<std::pair<int32_t, std::pair<size_t, size_t>>> AddedVocabulary::FindMatches(
    std::string_view sentence, const MatchSet& set) const {
  std::vector<std::pair<int32_t, std::pair<size_t, size_t>>> splits;
  if (set.patterns.empty() || sentence.empty()) {
    splits.push_back({-1, {0, sentence.size()}});
    return splits;
  }
  size_t start_offset = 0;
  size_t cursor = 0;  // where the next leftmost-longest search begins (after the last match)
  while (cursor < sentence.size()) {
    int32_t found = -1;
    size_t at = cursor;
    for (; at < sentence.size(); ++at) {
      for (int32_t p : set.by_first_byte[static_cast<unsigned char>(sentence[at])]) {
        if (sentence.compare(at, set.patterns[p].size(), set.patterns[p]) == 0) {
          found = p;
          break;
        }
      }
      if (found >= 0) break;
    }
    if (found < 0) break;
    size_t start = at, stop = at + set.patterns[found].size();
    cursor = stop;
    const int32_t index = set.token_index[found];
    const AddedToken& token = tokens_[index];
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(sentence.substr(0, start));
      const bool stop_space = stop == sentence.size() || !StartsWithWord(sentence.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(SpaceLeftmostAtEnd(sentence.substr(0, start)), start_offset);
    if (token.rstrip) stop += SpaceRightmostAtStart(sentence.substr(stop));
    if (start_offset < start) splits.push_back({-1, {start_offset, start}});
    splits.push_back({index, {start, stop}});
    start_offset = stop;
  }
  if (start_offset != sentence.size()) splits.push_back({-1, {start_offset, sentence.size()}});
  return splits;
}

std::vector<Split> AddedVocabulary::ExtractAndNormalize(std::string_view text, const Normalizer* normalizer) const {
  std::vector<Split> out;
  for (const auto& [raw_index, raw_range] : FindMatches(text, raw_)) {
    const size_t len = raw_range.second - raw_range.first;
    if (len == 0) continue;
    std::string piece(text.substr(raw_range.first, len));
    if (raw_index >= 0) {
      out.push_back(Split{std::move(piece), tokens_[raw_index].id, raw_range.first == 0});
      continue;
    }
    if (normalizer != nullptr) normalizer->Normalize(&piece);
    bool first = true;
    for (const auto& [index, range] : FindMatches(piece, normalized_)) {
      const size_t n = range.second - range.first;
      if (n == 0) continue;
      out.push_back(Split{piece.substr(range.first, n), index >= 0 ? tokens_[index].id : -1,
                          raw_range.first == 0 && first});
      first = false;
    }
  }
  return out;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::TokenToId(std::string_view content) const {
  auto it = by_content_.find(Av(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

bool AddedVocabulary::IsSpecialContent(std::string_view content) const {
  auto it = by_content_.find(Av(content));
  return it != by_content_.end() && tokens_[it->second].special;
}

}  // namespace lattice::text
