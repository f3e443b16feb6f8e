// UTF-8 and Unicode helpers for the tokenizer: decoding and encoding code points,
// Rust's `String::from_utf8_lossy` (what the `tokenizers` library uses to turn decoded
// bytes into text), Unicode normalization forms through utf8proc, and the character
// classes the `tokenizers` library tests with Rust's `char` methods.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/utf8.h"

namespace lattice::text {

// Debian's Abseil has its own string_view type (not std::string_view): heterogeneous
// lookups in absl containers take this conversion.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The code point at s[*pos] and advances *pos past it. Invalid bytes decode as U+FFFD
// and advance by one byte (callers that need validity check IsValidUtf8 first).
char32_t DecodeUtf8(std::string_view s, size_t* pos);

// Byte length of the UTF-8 sequence that starts with `lead` (1 for invalid leads).
int Utf8SequenceLength(unsigned char lead);

bool IsValidUtf8(std::string_view s);

// The offset of the first byte that does not belong to a complete, valid UTF-8
// sequence, or s.size() when the whole string is valid.
size_t ValidUtf8Prefix(std::string_view s);

// OK, or INVALID_ARGUMENT "text is not valid UTF-8 (at byte N)".
absl::Status CheckUtf8(std::string_view text);

// Rust's String::from_utf8_lossy: every maximal invalid subsequence (the WHATWG
// "substitution of maximal subparts" rule) becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

// The text in the given normalization form. `s` must be valid UTF-8.
std::string Normalize(std::string_view s, NormalizationForm form);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool IsWhitespace(char32_t c);
// Rust's char::is_alphabetic (approximated by the letter categories, Nl and the marks
// utf8proc classifies as alphabetic).
bool IsAlphabetic(char32_t c);
// Rust's char::is_numeric (categories Nd, Nl, No).
bool IsNumeric(char32_t c);
// Unicode punctuation (categories Pc, Pd, Pe, Pf, Pi, Po, Ps) or ASCII punctuation.
bool IsPunctuation(char32_t c);
// The regex crate's \w: alphabetic, marks, decimal digits, connector punctuation,
// join controls.
bool IsWordCharacter(char32_t c);

// Full lowercase mapping (Rust's str::to_lowercase for the cases utf8proc maps).
std::string ToLower(std::string_view s);

}  // namespace lattice::text
