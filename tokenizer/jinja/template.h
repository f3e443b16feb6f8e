// A compiled Jinja template and how to render it: the interpreter behind Hugging Face
// chat templates.
//
// No Debian package provides a C++ Jinja interpreter, so Lattice has its own, small and
// tested: lexer.h (jinja2's whitespace rules), parser.h (jinja2's grammar), value.h
// (Python values and their printing), interpreter.h (statements, scopes, macros),
// builtins.h (operators, filters, tests, methods, globals). It implements what chat
// templates use, configured as transformers configures jinja2
// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its own
// tojson, raise_exception and strftime_now); anything else fails with an error naming
// the construct and its line rather than rendering differently. Written from jinja2's
// documented behaviour and checked byte for byte against jinja2's output
// (tests/fixtures/jinja/make_expected.py).
#ifndef LATTICE_TOKENIZER_JINJA_TEMPLATE_H_
#define LATTICE_TOKENIZER_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace lattice::jinja {

struct Stmt;

// What a render may observe of the outside world: the clock behind strftime_now.
struct RenderEnvironment {
  absl::Time now = absl::Now();
  absl::TimeZone time_zone = absl::LocalTimeZone();
};

// Immutable once parsed; Render may be called from any number of threads at once.
class Template {
 public:
  // Fails (InvalidArgument, naming the line) on syntax errors and on constructs that
  // are not supported.
  static absl::StatusOr<Template> Parse(std::string_view source);

  // Renders with `context` (a JSON object) as the template's variables. Errors are
  // InvalidArgument naming the line, except a template's own raise_exception(msg),
  // which is InvalidArgument with exactly msg and IsRaisedException() (errors.h) true.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const RenderEnvironment& env = {}) const;

 private:
  explicit Template(std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body)
      : body_(std::move(body)) {}
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_TEMPLATE_H_
