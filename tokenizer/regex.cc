// Oniguruma wrapper; see regex.h.
#include "tokenizer/regex.h"

#include <oniguruma.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace lattice::text {

struct Regex::Impl {
  OnigRegex regex = nullptr;
  ~Impl() {
    if (regex != nullptr) onig_free(regex);
  }
};

namespace {
void InitOnigurumaOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}
}  // namespace

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  InitOnigurumaOnce();
  Regex out;
  out.impl_ = std::make_unique<Impl>();
  out.pattern_ = std::string(pattern);
  OnigErrorInfo error_info;
  const auto* begin = reinterpret_cast<const OnigUChar*>(out.pattern_.data());
  const int rc = onig_new(&out.impl_->regex, begin, begin + out.pattern_.size(), ONIG_OPTION_NONE,
                          ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &error_info);
  if (rc != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, rc, &error_info);
    return absl::InvalidArgumentError(
        absl::StrCat("bad regex '", std::string(pattern), "': ", reinterpret_cast<const char*>(message)));
  }
  return out;
}

absl::StatusOr<Regex> Regex::Literal(std::string_view literal) {
  std::string escaped;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) escaped += '\\';
    escaped += c;
  }
  return Compile(escaped);
}

void Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  matches->clear();
  const auto* start = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = start + text.size();
  OnigRegion* region = onig_region_new();
  size_t last_end = 0;
  bool have_last_match = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    onig_region_clear(region);
    const int r = onig_search(impl_->regex, start, end, start + last_end, end, region, ONIG_OPTION_NONE);
    if (r < 0) break;  // ONIG_MISMATCH (or an error: no further matches)
    const auto s = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last_match && last_match_end == e) {
      // An empty match right after the previous one: move one character on.
      last_end += last_end < text.size() ? Utf8SequenceLength(static_cast<unsigned char>(text[last_end])) : 1;
      continue;
    }
    matches->emplace_back(s, e);
    have_last_match = true;
    last_match_end = e;
    last_end = e;
    if (s == e) {
      last_end += last_end < text.size() ? Utf8SequenceLength(static_cast<unsigned char>(text[last_end])) : 1;
    }
  }
  onig_region_free(region, 1);
}

std::vector<std::pair<std::pair<size_t, size_t>, bool>> FindMatches(const Regex& regex, std::string_view text) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> splits;
  if (text.empty()) {
    splits.push_back({{0, 0}, false});
    return splits;
  }
  std::vector<std::pair<size_t, size_t>> matches;
  regex.FindAll(text, &matches);
  size_t prev = 0;
  for (const auto& [s, e] : matches) {
    if (prev != s) splits.push_back({{prev, s}, false});
    splits.push_back({{s, e}, true});
    prev = e;
  }
  if (prev != text.size()) splits.push_back({{prev, text.size()}, false});
  return splits;
}

}  // namespace lattice::text
