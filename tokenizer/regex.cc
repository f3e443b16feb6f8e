// Oniguruma wrapper; see regex.h.
//
// libonig is loaded with dlopen(RTLD_LOCAL) rather than linked: Debian's libonig.so.5
// also exports POSIX `regcomp`/`regexec` under those very names, which, linked into a
// binary, take the place of glibc's for every other user of POSIX regexes in the
// process (GoogleTest's death tests were the first to notice). Loaded privately, its
// symbols stay out of the global scope. oniguruma.h gives the types only.
#include "tokenizer/regex.h"

#include <dlfcn.h>
#include <oniguruma.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "tokenizer/unicode.h"

namespace lattice::text {

namespace {

// The Oniguruma functions and data we use, resolved from the privately loaded library.
struct Onig {
  decltype(&::onig_initialize) initialize;
  decltype(&::onig_new) create;
  decltype(&::onig_free) free;
  decltype(&::onig_error_code_to_str) error_code_to_str;
  decltype(&::onig_region_new) region_new;
  decltype(&::onig_region_clear) region_clear;
  decltype(&::onig_region_free) region_free;
  decltype(&::onig_search) search;
  OnigEncoding utf8;
  OnigSyntaxType* syntax;
};

template <typename T>
void Resolve(void* handle, const char* name, T* out) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "lattice: libonig.so.5 lacks %s\n", name);
    std::abort();
  }
  *out = reinterpret_cast<T>(symbol);
}

// Loaded once; a missing library is fatal (it is a declared dependency).
const Onig& Api() {
  static const Onig api = [] {
    Onig o;
    void* handle = dlopen("libonig.so.5", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      std::fprintf(stderr, "lattice: cannot load Oniguruma (libonig.so.5, Debian's libonig5): %s\n", dlerror());
      std::abort();
    }
    Resolve(handle, "onig_initialize", &o.initialize);
    Resolve(handle, "onig_new", &o.create);
    Resolve(handle, "onig_free", &o.free);
    Resolve(handle, "onig_error_code_to_str", &o.error_code_to_str);
    Resolve(handle, "onig_region_new", &o.region_new);
    Resolve(handle, "onig_region_clear", &o.region_clear);
    Resolve(handle, "onig_region_free", &o.region_free);
    Resolve(handle, "onig_search", &o.search);
    Resolve(handle, "OnigEncodingUTF8", &o.utf8);
    OnigSyntaxType** default_syntax = nullptr;
    Resolve(handle, "OnigDefaultSyntax", &default_syntax);
    o.syntax = *default_syntax;
    OnigEncoding encodings[] = {o.utf8};
    o.initialize(encodings, 1);
    return o;
  }();
  return api;
}

}  // namespace

struct Regex::Impl {
  OnigRegex regex = nullptr;
  ~Impl() {
    if (regex != nullptr) Api().free(regex);
  }
};

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  const Onig& onig = Api();
  Regex out;
  out.impl_ = std::make_unique<Impl>();
  out.pattern_ = std::string(pattern);
  OnigErrorInfo error_info;
  const auto* begin = reinterpret_cast<const OnigUChar*>(out.pattern_.data());
  const int rc = onig.create(&out.impl_->regex, begin, begin + out.pattern_.size(), ONIG_OPTION_NONE, onig.utf8,
                             onig.syntax, &error_info);
  if (rc != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig.error_code_to_str(message, rc, &error_info);
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
  const Onig& onig = Api();
  OnigRegion* region = onig.region_new();
  size_t last_end = 0;
  bool have_last_match = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    onig.region_clear(region);
    const int r = onig.search(impl_->regex, start, end, start + last_end, end, region, ONIG_OPTION_NONE);
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
  onig.region_free(region, 1);
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
