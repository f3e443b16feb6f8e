// Template parsing and rendering entry points (see template.h). Errors stay statuses;
// nothing below throws except nlohmann on malformed input, which is caught here.
#include "tokenizer/jinja/template.h"

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  JINJA_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  JINJA_ASSIGN_OR_RETURN(Body body, ParseTokens(std::move(tokens)));
  return Template(std::make_shared<const Body>(std::move(body)));
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context,
                                             const RenderEnvironment& env) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("template context must be a JSON object");
  }
  auto globals = std::make_shared<Scope>();
  AddGlobals(*globals);
  // The render's variables shadow the globals, as jinja2's context does.
  auto vars = std::make_shared<Scope>(globals);
  for (const auto& [key, value] : context.items()) {
    JINJA_ASSIGN_OR_RETURN(Value v, Value::FromJson(value));
    vars->Set(key, std::move(v));
  }
  Interpreter interp(env, vars);
  std::string out;
  JINJA_RETURN_IF_ERROR(interp.Render(*body_, &out));
  return out;
}

}  // namespace lattice::jinja
