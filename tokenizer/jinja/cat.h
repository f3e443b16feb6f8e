// String building over std::string_view. Debian's Abseil has its own absl::string_view
// (not std::string_view), so absl::StrCat cannot take the std::string_view this module
// uses throughout; Cat/Append accept both, plus strings and integers.
#ifndef LATTICE_TOKENIZER_JINJA_CAT_H_
#define LATTICE_TOKENIZER_JINJA_CAT_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lattice::jinja {

inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view StdView(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

namespace internal {
inline void AppendPiece(std::string* out, std::string_view s) { out->append(s); }
inline void AppendPiece(std::string* out, absl::string_view s) { out->append(s.data(), s.size()); }
inline void AppendPiece(std::string* out, const std::string& s) { out->append(s); }
inline void AppendPiece(std::string* out, const char* s) { out->append(s); }
template <typename T>
requires std::is_integral_v<T> &&
    (!std::is_same_v<T, bool>)&&(!std::is_same_v<T, char>)void AppendPiece(std::string* out, T v) {
  out->append(absl::StrCat(v));
}
}  // namespace internal

template <typename... Args>
void Append(std::string* out, const Args&... args) {
  (internal::AppendPiece(out, args), ...);
}

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  Append(&out, args...);
  return out;
}

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_CAT_H_
