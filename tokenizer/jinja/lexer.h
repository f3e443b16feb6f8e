// Splits template source into tokens the way jinja2's lexer does with transformers'
// settings (trim_blocks=True, lstrip_blocks=True): text, `{{ }}`, `{% %}` with their
// whitespace control (`-`, `+`), comments dropped, `{% raw %}` kept verbatim. Whitespace
// handling decides every byte between tags, so it follows jinja2's rules exactly.
#ifndef LATTICE_TOKENIZER_JINJA_LEXER_H_
#define LATTICE_TOKENIZER_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice::jinja {

enum class TokenType : uint8_t {
  kData,        // template text between tags
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text: the decoded value
  kInteger,
  kFloat,
  kOperator,  // text: the operator, e.g. "//"
  kEof,
};

struct Token {
  TokenType type;
  int line;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

absl::StatusOr<std::vector<Token>> Lex(std::string_view source, const LexerOptions& options = {});

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_LEXER_H_
