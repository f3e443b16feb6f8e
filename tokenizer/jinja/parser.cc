// Recursive-descent parser following jinja2/parser.py (see parser.h).
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_join.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/parser_internal.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

constexpr std::string_view kFilterNames[] = {
    "abs",       "attr",       "batch",       "capitalize", "center",  "count",
    "d",         "default",    "dictsort",    "e",          "escape",  "filesizeformat",
    "first",     "float",      "forceescape", "format",     "groupby", "indent",
    "int",       "join",       "last",        "length",     "list",    "lower",
    "items",     "map",        "min",         "max",        "pprint",  "random",
    "reject",    "rejectattr", "replace",     "reverse",    "round",   "safe",
    "select",    "selectattr", "slice",       "sort",       "string",  "striptags",
    "sum",       "title",      "trim",        "truncate",   "unique",  "upper",
    "urlencode", "urlize",     "wordcount",   "wordwrap",   "xmlattr", "tojson"};

constexpr std::string_view kTestNames[] = {
    "odd",     "even",   "divisibleby", "defined",  "undefined", "filter", "test",    "none",
    "boolean", "false",  "true",        "integer",  "float",     "lower",  "upper",   "string",
    "mapping", "number", "sequence",    "iterable", "callable",  "sameas", "escaped", "in",
    "==",      "eq",     "equalto",     "!=",       "ne",        ">",      "gt",      "greaterthan",
    "ge",      ">=",     "<",           "lt",       "lessthan",  "<=",     "le"};

// Tags jinja2 knows that chat templates have no use for (no loader, no inheritance).
constexpr std::string_view kUnsupportedTags[] = {"extends", "include",    "import", "from",
                                                 "block",   "autoescape", "do"};

bool ExprMentions(const Expr* e, std::string_view name);

bool BodyMentions(const Body& body, std::string_view name) {
  for (const StmtPtr& s : body) {
    if (ExprMentions(s->target.get(), name) || ExprMentions(s->expr.get(), name) ||
        ExprMentions(s->cond.get(), name) || BodyMentions(s->body, name) ||
        BodyMentions(s->else_body, name)) {
      return true;
    }
    for (const auto& [test, b] : s->branches) {
      if (ExprMentions(test.get(), name) || BodyMentions(b, name)) return true;
    }
    for (const auto& d : s->defaults) {
      if (ExprMentions(d.get(), name)) return true;
    }
    for (const auto& [t, v] : s->assignments) {
      if (ExprMentions(v.get(), name)) return true;
    }
  }
  return false;
}

bool ExprMentions(const Expr* e, std::string_view name) {
  if (e == nullptr) return false;
  if (e->kind == ExprKind::kName && e->name == name) return true;
  for (const ExprPtr& c : e->children) {
    if (ExprMentions(c.get(), name)) return true;
  }
  for (const auto& [k, v] : e->kwargs) {
    if (ExprMentions(v.get(), name)) return true;
  }
  return ExprMentions(e->dyn_args.get(), name) || ExprMentions(e->dyn_kwargs.get(), name);
}

// jinja2 rejects unknown filter and test names when it compiles a template, except
// inside if statements and conditional expressions, where it defers the error to the
// moment the filter runs (so `{% if 'x' is filter %}{{ v|x }}{% endif %}` works). Bodies
// of loops, macros, call/filter/set blocks start afresh, as jinja2's inner frames do.
absl::Status CheckNames(const Expr* e, bool soft) {
  if (e == nullptr) return absl::OkStatus();
  if (e->kind == ExprKind::kCondExpr) soft = true;
  if (!soft && e->kind == ExprKind::kFilter && !IsJinjaFilterName(e->name)) {
    return TemplateError(e->line, Cat("unknown filter '", e->name, "'"));
  }
  if (!soft && e->kind == ExprKind::kTest && !IsJinjaTestName(e->name)) {
    return TemplateError(e->line, Cat("unknown test '", e->name, "'"));
  }
  for (const ExprPtr& c : e->children) JINJA_RETURN_IF_ERROR(CheckNames(c.get(), soft));
  for (const auto& [k, v] : e->kwargs) JINJA_RETURN_IF_ERROR(CheckNames(v.get(), soft));
  JINJA_RETURN_IF_ERROR(CheckNames(e->dyn_args.get(), soft));
  return CheckNames(e->dyn_kwargs.get(), soft);
}

absl::Status CheckNames(const Body& body, bool soft) {
  for (const StmtPtr& s : body) {
    switch (s->kind) {
      case StmtKind::kIf:
        for (const auto& [test, branch] : s->branches) {
          JINJA_RETURN_IF_ERROR(CheckNames(test.get(), true));
          JINJA_RETURN_IF_ERROR(CheckNames(branch, true));
        }
        JINJA_RETURN_IF_ERROR(CheckNames(s->else_body, true));
        break;
      case StmtKind::kFor:
        JINJA_RETURN_IF_ERROR(CheckNames(s->expr.get(), soft));
        JINJA_RETURN_IF_ERROR(CheckNames(s->cond.get(), false));
        JINJA_RETURN_IF_ERROR(CheckNames(s->body, false));
        JINJA_RETURN_IF_ERROR(CheckNames(s->else_body, false));
        break;
      case StmtKind::kMacro:
      case StmtKind::kCallBlock:
        for (const ExprPtr& d : s->defaults) JINJA_RETURN_IF_ERROR(CheckNames(d.get(), false));
        if (s->kind == StmtKind::kCallBlock) JINJA_RETURN_IF_ERROR(CheckNames(s->expr.get(), soft));
        JINJA_RETURN_IF_ERROR(CheckNames(s->body, false));
        break;
      case StmtKind::kFilterBlock:
      case StmtKind::kSetBlock:
        JINJA_RETURN_IF_ERROR(CheckNames(s->expr.get(), false));
        JINJA_RETURN_IF_ERROR(CheckNames(s->body, false));
        break;
      case StmtKind::kWith:
        for (const auto& [target, value] : s->assignments) {
          JINJA_RETURN_IF_ERROR(CheckNames(value.get(), soft));
        }
        JINJA_RETURN_IF_ERROR(CheckNames(s->body, false));
        break;
      case StmtKind::kScope:
        JINJA_RETURN_IF_ERROR(CheckNames(s->body, false));
        break;
      default:
        JINJA_RETURN_IF_ERROR(CheckNames(s->expr.get(), soft));
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace parser_internal {

ExprPtr MakeExpr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

StmtPtr MakeStmt(StmtKind kind, int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->line = line;
  return s;
}

absl::StatusOr<Body> Parser::ParseTemplate() {
  JINJA_ASSIGN_OR_RETURN(Body body, Subparse({}));
  if (cur().type != TokenType::kEof) {
    return Error(Cat("unexpected tag '", cur().text, "'"));
  }
  JINJA_RETURN_IF_ERROR(CheckNames(body, /*soft=*/false));
  return body;
}

std::string Parser::Describe(const Token& t) {
  switch (t.type) {
    case TokenType::kData:
      return "template data";
    case TokenType::kVarBegin:
      return "begin of print statement";
    case TokenType::kVarEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "begin of statement block";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kEof:
      return "end of template";
    case TokenType::kString:
      return "string";
    default:
      return t.text;
  }
}

absl::Status Parser::ExpectOp(std::string_view op) {
  if (SkipOp(op)) return absl::OkStatus();
  return Error(Cat("expected '", op, "', got '", Describe(cur()), "'"));
}

absl::Status Parser::ExpectType(TokenType type, std::string_view what) {
  if (cur().type == type) {
    Next();
    return absl::OkStatus();
  }
  return Error(Cat("expected ", what, ", got '", Describe(cur()), "'"));
}

absl::StatusOr<std::string> Parser::ExpectName() {
  if (cur().type != TokenType::kName) {
    return Error(Cat("expected a name, got '", Describe(cur()), "'"));
  }
  std::string name = cur().text;
  Next();
  return name;
}

// Statements and text until a `{% <one of end_tags> %}`; leaves the current token on
// that tag name.
absl::StatusOr<Body> Parser::Subparse(Names end_tags) {
  Body body;
  while (cur().type != TokenType::kEof) {
    const Token& t = cur();
    if (t.type == TokenType::kData) {
      auto s = MakeStmt(StmtKind::kText, t.line);
      s->text = t.text;
      body.push_back(std::move(s));
      Next();
    } else if (t.type == TokenType::kVarBegin) {
      const int line = t.line;
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr e,
                             ParseTuple(/*simplified=*/false, /*with_condexpr=*/true, {}));
      JINJA_RETURN_IF_ERROR(ExpectType(TokenType::kVarEnd, "'}}'"));
      auto s = MakeStmt(StmtKind::kPrint, line);
      s->expr = std::move(e);
      body.push_back(std::move(s));
    } else if (t.type == TokenType::kBlockBegin) {
      Next();
      if (cur().type == TokenType::kName &&
          std::find(end_tags.begin(), end_tags.end(), cur().text) != end_tags.end()) {
        return body;
      }
      JINJA_ASSIGN_OR_RETURN(StmtPtr s, ParseStatement());
      if (s != nullptr) body.push_back(std::move(s));
      JINJA_RETURN_IF_ERROR(ExpectType(TokenType::kBlockEnd, "'%}'"));
    } else {
      return Error(Cat("unexpected '", Describe(t), "'"));
    }
  }
  if (end_tags.size() > 0) {
    std::vector<std::string> names(end_tags.begin(), end_tags.end());
    return Error(
        Cat("unexpected end of template, expected '", absl::StrJoin(names, "' or '"), "'"));
  }
  return body;
}

// The body of a block statement: `%}` then statements up to one of end_tags. With
// drop_needle the end tag's name is consumed (its `%}` is left to the caller).
absl::StatusOr<Body> Parser::ParseStatements(Names end_tags, bool drop_needle) {
  SkipOp(":");
  JINJA_RETURN_IF_ERROR(ExpectType(TokenType::kBlockEnd, "'%}'"));
  JINJA_ASSIGN_OR_RETURN(Body body, Subparse(end_tags));
  if (drop_needle) Next();
  return body;
}

absl::StatusOr<StmtPtr> Parser::ParseStatement() {
  DepthGuard guard(this);
  if (guard.too_deep()) return TooDeep();
  if (cur().type != TokenType::kName) return Error("tag name expected");
  const std::string tag = cur().text;
  const int line = cur().line;
  if (tag == "if") return ParseIf();
  if (tag == "for") return ParseFor();
  if (tag == "set") return ParseSet();
  if (tag == "macro") return ParseMacro();
  if (tag == "call") return ParseCallBlock();
  if (tag == "filter") return ParseFilterBlock();
  if (tag == "with") return ParseWith();
  if (tag == "print") {
    Next();
    auto s = MakeStmt(StmtKind::kPrint, line);
    JINJA_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, true, {}));
    return s;
  }
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) return Error(Cat("'", tag, "' outside of a for loop"));
    Next();
    return MakeStmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
  }
  if (tag == "generation") {  // transformers' AssistantTracker extension: renders its body
    Next();
    auto s = MakeStmt(StmtKind::kScope, line);
    JINJA_ASSIGN_OR_RETURN(s->body, ParseStatements({"endgeneration"}, true));
    return s;
  }
  if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), tag) !=
      std::end(kUnsupportedTags)) {
    return Error(Cat("unsupported tag '", tag, "'"));
  }
  return Error(Cat("unknown tag '", tag, "'"));
}

absl::StatusOr<StmtPtr> Parser::ParseIf() {
  auto s = MakeStmt(StmtKind::kIf, cur().line);
  Next();
  while (true) {
    JINJA_ASSIGN_OR_RETURN(ExprPtr test, ParseTuple(false, /*with_condexpr=*/false, {}));
    JINJA_ASSIGN_OR_RETURN(Body body, ParseStatements({"elif", "else", "endif"}, false));
    s->branches.emplace_back(std::move(test), std::move(body));
    const std::string tag = cur().text;
    Next();
    if (tag == "elif") continue;
    if (tag == "else") {
      JINJA_ASSIGN_OR_RETURN(s->else_body, ParseStatements({"endif"}, true));
    }
    break;
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseFor() {
  auto s = MakeStmt(StmtKind::kFor, cur().line);
  Next();
  JINJA_ASSIGN_OR_RETURN(s->target, ParseAssignTarget({"in"}, /*with_namespace=*/false));
  if (!SkipName("in")) return Error("expected 'in'");
  JINJA_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, /*with_condexpr=*/false, {"recursive"}));
  if (SkipName("if")) {
    JINJA_ASSIGN_OR_RETURN(s->cond, ParseExpression(true));
  }
  if (SkipName("recursive")) return Error("unsupported: recursive for loops");
  ++loop_depth_;
  absl::StatusOr<Body> body = ParseStatements({"endfor", "else"}, false);
  --loop_depth_;
  if (!body.ok()) return body.status();
  s->body = *std::move(body);
  const std::string tag = cur().text;
  Next();
  if (tag == "else") {
    // break/continue in a for's else refer to an enclosing loop, if any.
    const int saved = loop_depth_;
    JINJA_ASSIGN_OR_RETURN(s->else_body, ParseStatements({"endfor"}, true));
    loop_depth_ = saved;
  }
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseSet() {
  const int line = cur().line;
  Next();
  JINJA_ASSIGN_OR_RETURN(ExprPtr target, ParseAssignTarget({}, /*with_namespace=*/true));
  if (SkipOp("=")) {
    auto s = MakeStmt(StmtKind::kSet, line);
    s->target = std::move(target);
    JINJA_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, true, {}));
    return s;
  }
  auto s = MakeStmt(StmtKind::kSetBlock, line);
  s->target = std::move(target);
  if (IsOp("|")) {
    JINJA_ASSIGN_OR_RETURN(s->expr, ParseFilter(nullptr, /*start_inline=*/false));
  }
  JINJA_ASSIGN_OR_RETURN(s->body, ParseStatements({"endset"}, true));
  return s;
}

absl::Status Parser::ParseSignature(Stmt* s) {
  JINJA_RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    if (!s->params.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
    JINJA_ASSIGN_OR_RETURN(std::string name, ExpectName());
    ExprPtr def;
    if (SkipOp("=")) {
      JINJA_ASSIGN_OR_RETURN(def, ParseExpression(true));
    } else if (!s->defaults.empty() && s->defaults.back() != nullptr) {
      return Error("non-default argument follows default argument");
    }
    s->params.push_back(std::move(name));
    s->defaults.push_back(std::move(def));
  }
  return ExpectOp(")");
}

absl::StatusOr<StmtPtr> Parser::ParseMacro() {
  auto s = MakeStmt(StmtKind::kMacro, cur().line);
  Next();
  JINJA_ASSIGN_OR_RETURN(s->text, ExpectName());
  JINJA_RETURN_IF_ERROR(ParseSignature(s.get()));
  // Loop controls inside a macro cannot reach a loop around the definition.
  const int saved = loop_depth_;
  loop_depth_ = 0;
  absl::StatusOr<Body> body = ParseStatements({"endmacro"}, true);
  loop_depth_ = saved;
  if (!body.ok()) return body.status();
  s->body = *std::move(body);
  s->uses_varargs = BodyMentions(s->body, "varargs");
  s->uses_kwargs = BodyMentions(s->body, "kwargs");
  s->uses_caller = BodyMentions(s->body, "caller");
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseCallBlock() {
  auto s = MakeStmt(StmtKind::kCallBlock, cur().line);
  Next();
  if (IsOp("(")) JINJA_RETURN_IF_ERROR(ParseSignature(s.get()));
  JINJA_ASSIGN_OR_RETURN(s->expr, ParseExpression(true));
  if (s->expr->kind != ExprKind::kCall) return TemplateError(s->line, "expected call");
  const int saved = loop_depth_;
  loop_depth_ = 0;
  absl::StatusOr<Body> body = ParseStatements({"endcall"}, true);
  loop_depth_ = saved;
  if (!body.ok()) return body.status();
  s->body = *std::move(body);
  s->uses_varargs = BodyMentions(s->body, "varargs");
  s->uses_kwargs = BodyMentions(s->body, "kwargs");
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseFilterBlock() {
  auto s = MakeStmt(StmtKind::kFilterBlock, cur().line);
  Next();
  JINJA_ASSIGN_OR_RETURN(s->expr, ParseFilter(nullptr, /*start_inline=*/true));
  JINJA_ASSIGN_OR_RETURN(s->body, ParseStatements({"endfilter"}, true));
  return s;
}

absl::StatusOr<StmtPtr> Parser::ParseWith() {
  auto s = MakeStmt(StmtKind::kWith, cur().line);
  Next();
  while (cur().type != TokenType::kBlockEnd) {
    if (!s->assignments.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
    JINJA_ASSIGN_OR_RETURN(ExprPtr target, ParseAssignTarget({}, false));
    JINJA_RETURN_IF_ERROR(ExpectOp("="));
    JINJA_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
    s->assignments.emplace_back(std::move(target), std::move(value));
  }
  JINJA_ASSIGN_OR_RETURN(s->body, ParseStatements({"endwith"}, true));
  return s;
}

absl::Status Parser::CheckAssignable(const Expr& e) {
  if (e.kind == ExprKind::kName) {
    if (e.name == "true" || e.name == "false" || e.name == "none" || e.name == "True" ||
        e.name == "False" || e.name == "None") {
      return TemplateError(e.line, "can't assign to a constant");
    }
    return absl::OkStatus();
  }
  if (e.kind == ExprKind::kTuple) {
    for (const ExprPtr& c : e.children) JINJA_RETURN_IF_ERROR(CheckAssignable(*c));
    return absl::OkStatus();
  }
  return TemplateError(e.line, "can't assign to this expression");
}

absl::StatusOr<ExprPtr> Parser::ParseAssignTarget(Names end_names, bool with_namespace) {
  if (with_namespace && cur().type == TokenType::kName && peek().type == TokenType::kOperator &&
      peek().text == ".") {
    auto e = MakeExpr(ExprKind::kNsRef, cur().line);
    e->children.push_back(MakeExpr(ExprKind::kName, cur().line));
    e->children[0]->name = cur().text;
    Next();
    Next();
    JINJA_ASSIGN_OR_RETURN(e->name, ExpectName());
    return e;
  }
  JINJA_ASSIGN_OR_RETURN(ExprPtr target, ParseTuple(/*simplified=*/true, true, end_names));
  JINJA_RETURN_IF_ERROR(CheckAssignable(*target));
  return target;
}

}  // namespace parser_internal

bool IsJinjaFilterName(std::string_view name) {
  return std::find(std::begin(kFilterNames), std::end(kFilterNames), name) !=
         std::end(kFilterNames);
}

bool IsJinjaTestName(std::string_view name) {
  return std::find(std::begin(kTestNames), std::end(kTestNames), name) != std::end(kTestNames);
}

absl::StatusOr<Body> ParseTokens(std::vector<Token> tokens) {
  return parser_internal::Parser(std::move(tokens)).ParseTemplate();
}

}  // namespace lattice::jinja
