// Parses jinja2 template tokens into statements and expressions with jinja2's grammar
// and operator precedence (jinja2/parser.py is the reference). Constructs jinja2 knows
// but we do not run (include, import, extends, block, recursive loops, ...) fail here,
// naming the construct and its line; filters and tests that jinja2 does not know fail
// here too, as they fail jinja2's compile step (except inside if statements and
// conditional expressions, where jinja2 defers that error to when they run).
#ifndef LATTICE_TOKENIZER_JINJA_PARSER_H_
#define LATTICE_TOKENIZER_JINJA_PARSER_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace lattice::jinja {

absl::StatusOr<Body> ParseTokens(std::vector<Token> tokens);

// Whether jinja2 (with transformers' setup) has a filter / test of this name. The
// parser rejects names jinja2 rejects; the interpreter reports the known ones it does
// not implement when a render reaches them.
bool IsJinjaFilterName(std::string_view name);
bool IsJinjaTestName(std::string_view name);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_PARSER_H_
