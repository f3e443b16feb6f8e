// Python str semantics over UTF-8 (see pystr.h).
#include "tokenizer/jinja/pystr.h"

#include "base/utf8.h"

#include <algorithm>

#include "utf8proc.h"

namespace lattice::jinja::pystr {
namespace {

utf8proc_category_t Category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// Python's full case mappings that expand to several code points; utf8proc only has the
// simple (one-to-one) mappings. These are the ones text in the wild actually contains.
bool FullUpper(char32_t c, std::u32string* out) {
  switch (c) {
    case U'\u00DF':
      *out += U"SS";
      return true;  // ß
    case U'\uFB00':
      *out += U"FF";
      return true;  // ﬀ
    case U'\uFB01':
      *out += U"FI";
      return true;  // ﬁ
    case U'\uFB02':
      *out += U"FL";
      return true;  // ﬂ
    case U'\uFB03':
      *out += U"FFI";
      return true;  // ﬃ
    case U'\uFB04':
      *out += U"FFL";
      return true;  // ﬄ
    case U'\uFB05':
    case U'\uFB06':
      *out += U"ST";
      return true;
    case U'\u0149':
      *out += U"\u02BCN";
      return true;  // ŉ
    default:
      return false;
  }
}

char32_t ToUpper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(c)); }
char32_t ToLower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(c)); }
char32_t ToTitle(char32_t c) { return static_cast<char32_t>(utf8proc_totitle(c)); }

void AppendUpper(char32_t c, std::u32string* out) {
  if (!FullUpper(c, out)) out->push_back(ToUpper(c));
}
void AppendLower(char32_t c, std::u32string* out) {
  if (c == U'\u0130') {  // İ lowers to i + combining dot above
    *out += U"i\u0307";
    return;
  }
  out->push_back(ToLower(c));
}
void AppendTitle(char32_t c, std::u32string* out) {
  if (c == U'\u00DF') {
    *out += U"Ss";
    return;
  }
  out->push_back(ToTitle(c));
}

bool InChars(char32_t c, const std::u32string& chars) {
  return chars.find(c) != std::u32string::npos;
}

}  // namespace

void AppendCodePoint(char32_t c, std::string* out) { AppendUtf8(c, out); }

std::u32string Decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    const int n = b >= 0xF8 ? -1 : b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t c = b & (0x3F >> n);
    bool ok = true;
    for (int k = 1; k <= n; ++k) {
      const auto cb = static_cast<unsigned char>(s[i + k]);
      if ((cb & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      c = (c << 6) | (cb & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(c);
    i += n + 1;
  }
  return out;
}

std::string Encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendCodePoint(c, &out);
  return out;
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

int64_t Length(std::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool IsSpace(char32_t c) {
  switch (c) {
    case ' ':
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case 0x1C:
    case 0x1D:
    case 0x1E:
    case 0x1F:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool IsPrintable(char32_t c) {
  if (c == ' ') return true;
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return false;
    default:
      return true;
  }
}

bool IsAlpha(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  const auto cat = Category(c);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}
bool IsDecimal(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return Category(c) == UTF8PROC_CATEGORY_ND;
}
bool IsDigit(char32_t c) {
  return IsDecimal(c) || (c >= 0x2070 && c <= 0x2079) || c == 0xB2 || c == 0xB3 || c == 0xB9;
}
bool IsNumeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto cat = Category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}
bool IsWordChar(char32_t c) { return c == '_' || IsAlpha(c) || IsNumeric(c); }
bool IsCased(char32_t c) {
  const auto cat = Category(c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
         cat == UTF8PROC_CATEGORY_LT || ToUpper(c) != c || ToLower(c) != c;
}
bool IsLower(char32_t c) { return utf8proc_islower(c) != 0; }
bool IsUpper(char32_t c) { return utf8proc_isupper(c) != 0; }

std::string Upper(std::string_view s) {
  std::u32string out;
  for (char32_t c : Decode(s)) AppendUpper(c, &out);
  return Encode(out);
}

std::string Lower(std::string_view s) {
  std::u32string out;
  for (char32_t c : Decode(s)) AppendLower(c, &out);
  return Encode(out);
}

std::string SwapCase(std::string_view s) {
  std::u32string out;
  for (char32_t c : Decode(s)) {
    if (IsUpper(c)) {
      AppendLower(c, &out);
    } else if (IsLower(c)) {
      AppendUpper(c, &out);
    } else {
      out.push_back(c);
    }
  }
  return Encode(out);
}

std::string Title(std::string_view s) {
  // A cased character starts a word when the previous character is not cased.
  std::u32string out;
  bool previous_cased = false;
  for (char32_t c : Decode(s)) {
    if (previous_cased) {
      AppendLower(c, &out);
    } else {
      AppendTitle(c, &out);
    }
    previous_cased = IsCased(c);
  }
  return Encode(out);
}

std::string Capitalize(std::string_view s) {
  std::u32string in = Decode(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0) {
      AppendTitle(in[i], &out);
    } else {
      AppendLower(in[i], &out);
    }
  }
  return Encode(out);
}

std::string Strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right) {
  std::u32string in = Decode(s);
  std::u32string set;
  if (chars) set = Decode(*chars);
  auto strip = [&](char32_t c) { return chars ? InChars(c, set) : IsSpace(c); };
  size_t begin = 0, end = in.size();
  if (left) {
    while (begin < end && strip(in[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip(in[end - 1])) --end;
  }
  return Encode(std::u32string_view(in).substr(begin, end - begin));
}

bool Split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
           bool from_right, std::vector<std::string>* out) {
  out->clear();
  if (sep && sep->empty()) return false;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep) {
    std::vector<std::string> parts;
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit-- > 0) {
        const size_t hit = s.find(*sep, pos);
        if (hit == std::string_view::npos) break;
        parts.emplace_back(s.substr(pos, hit - pos));
        pos = hit + sep->size();
      }
      parts.emplace_back(s.substr(pos));
    } else {
      size_t end = s.size();
      while (maxsplit-- > 0 && end >= sep->size()) {
        const size_t hit = s.rfind(*sep, end - sep->size());
        if (hit == std::string_view::npos) break;
        parts.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
        end = hit;
      }
      parts.emplace_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
    *out = std::move(parts);
    return true;
  }
  // Whitespace runs; leading/trailing whitespace yields no empty strings.
  std::u32string in = Decode(s);
  std::vector<std::u32string> parts;
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < in.size() && IsSpace(in[i])) ++i;
      if (i >= in.size()) break;
      if (maxsplit == 0) {
        size_t end = in.size();
        while (end > i && IsSpace(in[end - 1])) --end;
        parts.push_back(in.substr(i, end - i));
        break;
      }
      size_t j = i;
      while (j < in.size() && !IsSpace(in[j])) ++j;
      parts.push_back(in.substr(i, j - i));
      --maxsplit;
      i = j;
    }
  } else {
    int64_t i = static_cast<int64_t>(in.size());
    while (true) {
      while (i > 0 && IsSpace(in[i - 1])) --i;
      if (i <= 0) break;
      if (maxsplit == 0) {
        size_t begin = 0;
        while (begin < static_cast<size_t>(i) && IsSpace(in[begin])) ++begin;
        parts.push_back(in.substr(begin, i - begin));
        break;
      }
      int64_t j = i;
      while (j > 0 && !IsSpace(in[j - 1])) --j;
      parts.push_back(in.substr(j, i - j));
      --maxsplit;
      i = j;
    }
    std::reverse(parts.begin(), parts.end());
  }
  for (const auto& p : parts) out->push_back(Encode(p));
  return true;
}

std::vector<std::string> SplitLines(std::string_view s, bool keepends) {
  std::u32string in = Decode(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
           c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
  };
  while (i < in.size()) {
    if (!is_break(in[i])) {
      ++i;
      continue;
    }
    size_t eol = i + 1;
    if (in[i] == '\r' && eol < in.size() && in[eol] == '\n') ++eol;
    out.push_back(Encode(std::u32string_view(in).substr(start, (keepends ? eol : i) - start)));
    start = i = eol;
  }
  if (start < in.size()) out.push_back(Encode(std::u32string_view(in).substr(start)));
  return out;
}

std::string Replace(std::string_view s, std::string_view old_sub, std::string_view new_sub,
                    int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (old_sub.empty()) {
    // Python inserts the replacement before every character and at the end.
    std::u32string in = Decode(s);
    for (size_t i = 0; i <= in.size(); ++i) {
      if (count > 0) {
        out += new_sub;
        --count;
      }
      if (i < in.size()) AppendCodePoint(in[i], &out);
    }
    return out;
  }
  size_t pos = 0;
  while (count > 0) {
    const size_t hit = s.find(old_sub, pos);
    if (hit == std::string_view::npos) break;
    out += s.substr(pos, hit - pos);
    out += new_sub;
    pos = hit + old_sub.size();
    --count;
  }
  out += s.substr(pos);
  return out;
}

int64_t Count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return Length(s) + 1;
  int64_t n = 0;
  size_t pos = 0;
  while ((pos = s.find(sub, pos)) != std::string_view::npos) {
    ++n;
    pos += sub.size();
  }
  return n;
}

int64_t Find(std::string_view s, std::string_view sub, bool from_right) {
  const size_t hit = from_right ? s.rfind(sub) : s.find(sub);
  if (hit == std::string_view::npos) return -1;
  return Length(s.substr(0, hit));
}

std::string Pad(std::string_view s, int64_t width, char32_t fill, int align) {
  const int64_t len = Length(s);
  if (width <= len) return std::string(s);
  const int64_t marg = width - len;
  int64_t left = 0;
  if (align == 0) {
    left = marg / 2 + (marg & width & 1);  // CPython's str.center split
  } else if (align > 0) {
    left = marg;
  }
  std::string pad_left, pad_right;
  for (int64_t i = 0; i < left; ++i) AppendCodePoint(fill, &pad_left);
  for (int64_t i = 0; i < marg - left; ++i) AppendCodePoint(fill, &pad_right);
  return pad_left + std::string(s) + pad_right;
}

std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step) {
  int64_t lo, hi;
  if (step > 0) {
    lo = start.value_or(0);
    hi = stop.value_or(length);
    if (lo < 0) lo = std::max<int64_t>(lo + length, 0);
    if (hi < 0) hi = std::max<int64_t>(hi + length, 0);
    lo = std::min(lo, length);
    hi = std::min(hi, length);
  } else {
    lo = start.value_or(length - 1);
    hi = stop.has_value() ? *stop : -1 - length;  // "before the first element"
    if (lo < 0) lo = std::max<int64_t>(lo + length, -1);
    if (lo >= length) lo = length - 1;
    if (stop.has_value()) {
      if (hi < 0) hi = std::max<int64_t>(hi + length, -1);
      if (hi >= length) hi = length - 1;
    } else {
      hi = -1;
    }
  }
  std::vector<int64_t> out;
  if (step > 0) {
    for (int64_t i = lo; i < hi; i += step) out.push_back(i);
  } else {
    for (int64_t i = lo; i > hi; i += step) out.push_back(i);
  }
  return out;
}

}  // namespace lattice::jinja::pystr
