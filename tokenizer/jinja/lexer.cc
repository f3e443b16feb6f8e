// jinja2's lexer rules (see lexer.h), written as a scanner rather than regexes.
#include "tokenizer/jinja/lexer.h"

#include <charconv>

#include "absl/strings/ascii.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/pystr.h"

namespace lattice::jinja {
namespace {

enum class TagKind { kVariable, kBlock, kComment };

// Operators, longest first so that "//" wins over "/".
constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// Length of the Python-whitespace run (any Unicode space) starting at `pos`.
size_t SpaceRun(std::string_view s, size_t pos) {
  size_t i = pos;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (!pystr::IsSpace(b)) break;
      ++i;
      continue;
    }
    const size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    const std::u32string c = pystr::Decode(s.substr(i, n));
    if (c.size() != 1 || !pystr::IsSpace(c[0])) break;
    i += n;
  }
  return i - pos;
}

// Python str.rstrip() (whitespace).
std::string_view RStripSpace(std::string_view s) {
  // Whitespace is rare past ASCII; decode only the tail we strip.
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    const std::u32string c = pystr::Decode(s.substr(start, end - start));
    if (c.size() != 1 || !pystr::IsSpace(c[0])) break;
    end = start;
  }
  return s.substr(0, end);
}

int CountNewlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Python's unicode-escape decoding of a string literal's body.
absl::StatusOr<std::string> Unescape(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    auto hex = [&](int digits) -> absl::StatusOr<char32_t> {
      if (i + digits >= body.size()) {
        return absl::InvalidArgumentError("truncated escape in string literal");
      }
      uint32_t v = 0;
      for (int k = 1; k <= digits; ++k) {
        const char h = body[i + k];
        if (!absl::ascii_isxdigit(h)) {
          return absl::InvalidArgumentError("truncated escape in string literal");
        }
        v = v * 16 + (IsDigit(h) ? h - '0' : (absl::ascii_tolower(h) - 'a' + 10));
      }
      i += digits;
      if (v > 0x10FFFF) return absl::InvalidArgumentError("illegal Unicode character");
      return static_cast<char32_t>(v);
    };
    switch (c) {
      case '\n':
        break;  // line continuation
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        absl::StatusOr<char32_t> cp = hex(c == 'x' ? 2 : c == 'u' ? 4 : 8);
        if (!cp.ok()) return cp.status();
        pystr::AppendCodePoint(*cp, &out);
        break;
      }
      case 'N':
        return absl::InvalidArgumentError("named unicode escapes (\\N{...}) are unsupported");
      default:
        if (c >= '0' && c <= '7') {
          uint32_t v = c - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            v = v * 8 + (body[++i] - '0');
          }
          pystr::AppendCodePoint(v, &out);
        } else {
          out.push_back('\\');  // unknown escapes stay as written
          out.push_back(c);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexerOptions& options)
      : src_(std::move(source)), options_(options) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      size_t tag = pos_;
      TagKind kind = TagKind::kVariable;
      bool found = false;
      while ((tag = src_.find('{', tag)) != std::string::npos && tag + 1 < src_.size()) {
        const char next = src_[tag + 1];
        if (next == '{' || next == '%' || next == '#') {
          kind = next == '{'   ? TagKind::kVariable
                 : next == '%' ? TagKind::kBlock
                               : TagKind::kComment;
          found = true;
          break;
        }
        ++tag;
      }
      if (!found) {
        Emit(TokenType::kData, std::string(std::string_view(src_).substr(pos_)));
        break;
      }
      size_t after = tag + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
      const int text_lines = CountNewlines(text);
      text = StripBefore(text, sign, kind != TagKind::kVariable);
      if (!text.empty()) Emit(TokenType::kData, std::string(text));
      line_ += text_lines;
      pos_ = after;
      absl::Status status;
      if (kind == TagKind::kComment) {
        status = Comment();
      } else if (kind == TagKind::kBlock && RawBegins()) {
        status = Raw();
      } else {
        status = Tag(kind);
      }
      if (!status.ok()) return status;
    }
    Emit(TokenType::kEof, "");
    return std::move(tokens_);
  }

 private:
  void Emit(TokenType type, std::string text) {
    tokens_.push_back(Token{type, line_, std::move(text)});
  }

  // Whitespace control before a tag: `-` strips all whitespace; lstrip_blocks strips
  // the indentation of a block or comment tag that starts its line (unless `+`).
  std::string_view StripBefore(std::string_view text, char sign, bool lstrip_kind) const {
    if (sign == '-') return RStripSpace(text);
    if (sign == '+' || !options_.lstrip_blocks || !lstrip_kind) return text;
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting_) return text;
    const std::string_view tail = text.substr(l_pos);
    if (!tail.empty() && SpaceRun(tail, 0) == tail.size()) return text.substr(0, l_pos);
    return text;
  }

  // Advances past a tag's end marker at `end` (already matched, `len` bytes) and applies
  // its trailing whitespace control.
  void FinishTag(size_t end, size_t len, char sign, bool trim_newline) {
    size_t p = end + len;
    if (sign == '-') {
      p += SpaceRun(src_, p);
    } else if (sign == 0 && trim_newline && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    line_ += CountNewlines(std::string_view(src_).substr(pos_, p - pos_));
    line_starting_ = p > 0 && src_[p - 1] == '\n';
    pos_ = p;
  }

  absl::Status Comment() {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) return TemplateError(line_, "missing end of comment tag");
    size_t end = close;
    char sign = 0;
    if (close > pos_ && (src_[close - 1] == '-' || src_[close - 1] == '+')) {
      sign = src_[close - 1];
      end = close - 1;
    }
    FinishTag(end, sign ? 3 : 2, sign, options_.trim_blocks);
    return absl::OkStatus();
  }

  // `{% raw %}` (jinja2 matches it as one unit: optional sign, "raw", then `%}` or `-%}`).
  bool RawBegins() {
    size_t p = pos_ + SpaceRun(src_, pos_);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    p += SpaceRun(src_, p);
    if (src_.compare(p, 3, "-%}") == 0) {
      p += 3;
      p += SpaceRun(src_, p);
    } else if (src_.compare(p, 2, "%}") == 0) {
      p += 2;
    } else {
      return false;
    }
    line_ += CountNewlines(std::string_view(src_).substr(pos_, p - pos_));
    pos_ = p;
    return true;
  }

  absl::Status Raw() {
    // The body runs to the first `{%[-+]? endraw ... %}`.
    size_t search = pos_;
    while (true) {
      const size_t tag = src_.find("{%", search);
      if (tag == std::string::npos) return TemplateError(line_, "missing end of raw directive");
      size_t p = tag + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p += SpaceRun(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      p += 6;
      p += SpaceRun(src_, p);
      size_t end_len = 0;
      char end_sign = 0;
      if (src_.compare(p, 3, "+%}") == 0 || src_.compare(p, 3, "-%}") == 0) {
        end_sign = src_[p];
        end_len = 3;
      } else if (src_.compare(p, 2, "%}") == 0) {
        end_len = 2;
      } else {
        search = tag + 2;
        continue;
      }
      std::string_view body = std::string_view(src_).substr(pos_, tag - pos_);
      const int body_lines = CountNewlines(body);
      body = StripBefore(body, sign, true);
      if (!body.empty()) Emit(TokenType::kData, std::string(body));
      line_ += body_lines;
      pos_ = tag;
      FinishTag(p, end_len, end_sign, options_.trim_blocks);
      return absl::OkStatus();
    }
  }

  // The tokens inside `{{ }}` or `{% %}` up to the end marker (only matched while no
  // bracket is open, as in jinja2).
  absl::Status Tag(TagKind kind) {
    const bool block = kind == TagKind::kBlock;
    Emit(block ? TokenType::kBlockBegin : TokenType::kVarBegin, "");
    std::string brackets;
    while (true) {
      if (pos_ >= src_.size()) {
        return TemplateError(line_, block ? "unexpected end of template, expected '%}'"
                                          : "unexpected end of template, expected '}}'");
      }
      if (brackets.empty()) {
        const std::string_view rest = std::string_view(src_).substr(pos_);
        const std::string_view close = block ? "%}" : "}}";
        char sign = 0;
        size_t len = 0;
        if (rest.substr(0, 2) == close) {
          len = 2;
        } else if ((rest[0] == '-' || (block && rest[0] == '+')) && rest.substr(1, 2) == close) {
          sign = rest[0];
          len = 3;
        }
        if (len > 0) {
          Emit(block ? TokenType::kBlockEnd : TokenType::kVarEnd, "");
          FinishTag(pos_, len, sign, block && options_.trim_blocks);
          return absl::OkStatus();
        }
      }
      if (const size_t n = SpaceRun(src_, pos_); n > 0) {
        line_ += CountNewlines(std::string_view(src_).substr(pos_, n));
        pos_ += n;
        continue;
      }
      const char c = src_[pos_];
      if (IsDigit(c)) {
        if (absl::Status s = Number(); !s.ok()) return s;
      } else if (IsNameStart(c)) {
        size_t end = pos_;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Emit(TokenType::kName, src_.substr(pos_, end - pos_));
        pos_ = end;
      } else if (c == '\'' || c == '"') {
        if (absl::Status s = String(); !s.ok()) return s;
      } else {
        bool matched = false;
        for (std::string_view op : kOperators) {
          if (std::string_view(src_).substr(pos_, op.size()) != op) continue;
          if (op == "(" || op == "[" || op == "{") {
            brackets.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
          } else if (op == ")" || op == "]" || op == "}") {
            if (brackets.empty()) return TemplateError(line_, Cat("unexpected '", op, "'"));
            if (brackets.back() != op[0]) {
              return TemplateError(line_, Cat("unexpected '", op, "', expected '",
                                              std::string(1, brackets.back()), "'"));
            }
            brackets.pop_back();
          }
          Emit(TokenType::kOperator, std::string(op));
          pos_ += op.size();
          matched = true;
          break;
        }
        if (!matched) {
          return TemplateError(line_, Cat("unexpected character '", std::string(1, c), "'"));
        }
      }
    }
  }

  // jinja2's integer and float literals (underscores allowed between digits).
  absl::Status Number() {
    size_t p = pos_;
    auto digits = [&](auto accept) {
      const size_t start = p;
      while (p < src_.size() && (accept(src_[p]) || (src_[p] == '_' && p > start &&
                                                     p + 1 < src_.size() && accept(src_[p + 1]))))
        ++p;
      return p > start;
    };
    std::string clean;
    auto strip = [](std::string_view s) {
      std::string out;
      for (char ch : s) {
        if (ch != '_') out.push_back(ch);
      }
      return out;
    };
    // Prefixed integers.
    if (src_[p] == '0' && p + 1 < src_.size()) {
      const char x = absl::ascii_tolower(src_[p + 1]);
      int base = x == 'b' ? 2 : x == 'o' ? 8 : x == 'x' ? 16 : 0;
      if (base != 0) {
        p += 2;
        const size_t start = p;
        if (src_[p] == '_') ++p;
        digits([base](char ch) {
          return base == 16 ? absl::ascii_isxdigit(ch) : ch >= '0' && ch < '0' + base;
        });
        const std::string text = strip(std::string_view(src_).substr(start, p - start));
        uint64_t v = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
        if (text.empty() || ec != std::errc() || v > static_cast<uint64_t>(INT64_MAX)) {
          return TemplateError(line_, "invalid integer literal");
        }
        Token t{TokenType::kInteger, line_, src_.substr(pos_, p - pos_)};
        t.int_value = static_cast<int64_t>(v);
        tokens_.push_back(std::move(t));
        pos_ = p;
        return absl::OkStatus();
      }
    }
    digits(IsDigit);
    bool is_float = false;
    // jinja2's float rule does not match right after a dot, so `x.0.1` is x[0][1].
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    if (after_dot) {
      // fall through to the integer
    } else if (p + 1 < src_.size() && src_[p] == '.' && IsDigit(src_[p + 1])) {
      ++p;
      digits(IsDigit);
      is_float = true;
    }
    if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && IsDigit(src_[q])) {
        p = q;
        digits(IsDigit);
        is_float = true;
      }
    }
    const std::string text = strip(std::string_view(src_).substr(pos_, p - pos_));
    Token t{is_float ? TokenType::kFloat : TokenType::kInteger, line_, text};
    if (is_float) {
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), t.float_value);
      if (ec != std::errc() && ec != std::errc::result_out_of_range) {
        return TemplateError(line_, "invalid float literal");
      }
    } else {
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), t.int_value);
      if (ec != std::errc()) {
        return TemplateError(
            line_, "integer literal out of range (integers beyond 64 bits are unsupported)");
      }
    }
    tokens_.push_back(std::move(t));
    pos_ = p;
    return absl::OkStatus();
  }

  absl::Status String() {
    const char quote = src_[pos_];
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      p += src_[p] == '\\' ? 2 : 1;
    }
    if (p >= src_.size()) return TemplateError(line_, "unterminated string literal");
    absl::StatusOr<std::string> value =
        Unescape(std::string_view(src_).substr(pos_ + 1, p - pos_ - 1));
    if (!value.ok()) return TemplateError(line_, StdView(value.status().message()));
    Emit(TokenType::kString, *std::move(value));
    line_ += CountNewlines(std::string_view(src_).substr(pos_, p + 1 - pos_));
    pos_ = p + 1;
    return absl::OkStatus();
  }

  std::string src_;
  LexerOptions options_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source, const LexerOptions& options) {
  // jinja2 treats \r\n and \r as \n and drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src.push_back(source[i]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src), options).Run();
}

}  // namespace lattice::jinja
