// Python str semantics over UTF-8 strings: Python indexes, measures and cases strings by
// code point and has its own notion of whitespace, so templates that slice, strip, split
// or upper-case message text need these to match jinja2 byte for byte. Case mapping and
// character categories come from utf8proc.
#ifndef LATTICE_TOKENIZER_JINJA_PYSTR_H_
#define LATTICE_TOKENIZER_JINJA_PYSTR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lattice::jinja::pystr {

// UTF-8 <-> code points. Invalid bytes decode as U+FFFD.
std::u32string Decode(std::string_view s);
std::string Encode(std::u32string_view s);
void AppendCodePoint(char32_t c, std::string* out);
bool IsAscii(std::string_view s);
// len(s) in code points.
int64_t Length(std::string_view s);

// str.isspace() for one code point (Python's whitespace, wider than C's).
bool IsSpace(char32_t c);
// str.isprintable() for one code point (what repr() leaves unescaped).
bool IsPrintable(char32_t c);
// \w in Python's re (letters, digits, underscore).
bool IsWordChar(char32_t c);
bool IsAlpha(char32_t c);
bool IsDecimal(char32_t c);
bool IsDigit(char32_t c);
bool IsNumeric(char32_t c);
bool IsCased(char32_t c);
bool IsLower(char32_t c);
bool IsUpper(char32_t c);

std::string Upper(std::string_view s);
std::string Lower(std::string_view s);
std::string Title(std::string_view s);       // str.title()
std::string Capitalize(std::string_view s);  // str.capitalize()
std::string SwapCase(std::string_view s);

// str.strip/lstrip/rstrip: `chars` empty-optional means whitespace.
std::string Strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right);
// str.split / str.rsplit; `sep` unset splits on whitespace runs. maxsplit < 0: no limit.
// Returns false (and nothing) for an empty separator, which Python rejects.
bool Split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
           bool from_right, std::vector<std::string>* out);
// str.splitlines(keepends).
std::vector<std::string> SplitLines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0 replaces all.
std::string Replace(std::string_view s, std::string_view old_sub, std::string_view new_sub,
                    int64_t count);
// Non-overlapping occurrences, as str.count (an empty needle counts len + 1).
int64_t Count(std::string_view s, std::string_view sub);
// str.find / str.rfind as code point indexes (-1 when absent).
int64_t Find(std::string_view s, std::string_view sub, bool from_right);
// str.center / ljust / rjust with a one-character fill.
std::string Pad(std::string_view s, int64_t width, char32_t fill, int align /* -1 0 1 */);

// Python slice index arithmetic (PySlice_AdjustIndices): the indexes a[start:stop:step]
// visits for a sequence of `length`.
std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step);

}  // namespace lattice::jinja::pystr

#endif  // LATTICE_TOKENIZER_JINJA_PYSTR_H_
