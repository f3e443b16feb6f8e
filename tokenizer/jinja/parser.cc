// Recursive-descent parser following jinja2/parser.py (see parser.h).
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_join.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/errors.h"
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

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseTemplate() {
    JINJA_ASSIGN_OR_RETURN(Body body, Subparse({}));
    if (cur().type != TokenType::kEof) {
      return Error(Cat("unexpected tag '", cur().text, "'"));
    }
    return body;
  }

 private:
  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t n = 1) const { return tokens_[std::min(pos_ + n, tokens_.size() - 1)]; }
  void Next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const {
    return cur().type == TokenType::kOperator && cur().text == op;
  }
  bool IsName(std::string_view name) const {
    return cur().type == TokenType::kName && cur().text == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  absl::Status Error(std::string_view message) const { return TemplateError(cur().line, message); }

  static std::string Describe(const Token& t) {
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

  absl::Status ExpectOp(std::string_view op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Error(Cat("expected '", op, "', got '", Describe(cur()), "'"));
  }
  absl::Status ExpectType(TokenType type, std::string_view what) {
    if (cur().type == type) {
      Next();
      return absl::OkStatus();
    }
    return Error(Cat("expected ", what, ", got '", Describe(cur()), "'"));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (cur().type != TokenType::kName) {
      return Error(Cat("expected a name, got '", Describe(cur()), "'"));
    }
    std::string name = cur().text;
    Next();
    return name;
  }

  // Statements and text until a `{% <one of end_tags> %}`; leaves the current token on
  // that tag name.
  absl::StatusOr<Body> Subparse(std::initializer_list<std::string_view> end_tags) {
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
  absl::StatusOr<Body> ParseStatements(std::initializer_list<std::string_view> end_tags,
                                       bool drop_needle) {
    SkipOp(":");
    JINJA_RETURN_IF_ERROR(ExpectType(TokenType::kBlockEnd, "'%}'"));
    JINJA_ASSIGN_OR_RETURN(Body body, Subparse(end_tags));
    if (drop_needle) Next();
    return body;
  }

  absl::StatusOr<StmtPtr> ParseStatement() {
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

  absl::StatusOr<StmtPtr> ParseIf() {
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

  absl::StatusOr<StmtPtr> ParseFor() {
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

  absl::StatusOr<StmtPtr> ParseSet() {
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

  absl::Status ParseSignature(Stmt* s) {
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

  absl::StatusOr<StmtPtr> ParseMacro() {
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

  absl::StatusOr<StmtPtr> ParseCallBlock() {
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

  absl::StatusOr<StmtPtr> ParseFilterBlock() {
    auto s = MakeStmt(StmtKind::kFilterBlock, cur().line);
    Next();
    JINJA_ASSIGN_OR_RETURN(s->expr, ParseFilter(nullptr, /*start_inline=*/true));
    JINJA_ASSIGN_OR_RETURN(s->body, ParseStatements({"endfilter"}, true));
    return s;
  }

  absl::StatusOr<StmtPtr> ParseWith() {
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

  static absl::Status CheckAssignable(const Expr& e) {
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

  absl::StatusOr<ExprPtr> ParseAssignTarget(std::initializer_list<std::string_view> end_names,
                                            bool with_namespace) {
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

  bool IsTupleEnd(std::initializer_list<std::string_view> end_names) const {
    if (cur().type == TokenType::kVarEnd || cur().type == TokenType::kBlockEnd || IsOp(")")) {
      return true;
    }
    if (cur().type == TokenType::kName) {
      return std::find(end_names.begin(), end_names.end(), cur().text) != end_names.end();
    }
    return false;
  }

  absl::StatusOr<ExprPtr> ParseTuple(bool simplified, bool with_condexpr,
                                     std::initializer_list<std::string_view> end_names,
                                     bool explicit_parentheses = false) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(end_names)) break;
      ExprPtr item;
      if (simplified) {
        JINJA_ASSIGN_OR_RETURN(item, ParsePrimary());
      } else {
        JINJA_ASSIGN_OR_RETURN(item, ParseExpression(with_condexpr));
      }
      items.push_back(std::move(item));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) {
        return Error(Cat("expected an expression, got '", Describe(cur()), "'"));
      }
    }
    auto e = MakeExpr(ExprKind::kTuple, line);
    e->children = std::move(items);
    return e;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    if (!with_condexpr) return ParseOr();
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (SkipName("if")) {
      auto cond = MakeExpr(ExprKind::kCondExpr, line);
      JINJA_ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        JINJA_ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
      }
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      cond->children.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> Binary(ExprKind kind, ExprPtr left, ExprPtr right, int line,
                                 std::string op = {}) {
    auto e = MakeExpr(kind, line);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (SkipName("or")) {
      JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      JINJA_ASSIGN_OR_RETURN(left, Binary(ExprKind::kOr, std::move(left), std::move(right), line));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (SkipName("and")) {
      JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      JINJA_ASSIGN_OR_RETURN(left, Binary(ExprKind::kAnd, std::move(left), std::move(right), line));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      auto e = MakeExpr(ExprKind::kNot, cur().line);
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      e->children.push_back(std::move(operand));
      return e;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr expr, ParseMath1());
    auto cmp = MakeExpr(ExprKind::kCompare, line);
    cmp->children.push_back(std::move(expr));
    while (true) {
      std::string op;
      if (cur().type == TokenType::kOperator &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        Next();
      } else if (SkipName("in")) {
        op = "in";
      } else if (IsName("not") && peek().type == TokenType::kName && peek().text == "in") {
        Next();
        Next();
        op = "notin";
      } else {
        break;
      }
      JINJA_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      cmp->ops.push_back(std::move(op));
      cmp->children.push_back(std::move(operand));
    }
    if (cmp->ops.empty()) return std::move(cmp->children[0]);
    return cmp;
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      std::string op = cur().text;
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
      JINJA_ASSIGN_OR_RETURN(
          left, Binary(ExprKind::kBinary, std::move(left), std::move(right), line, op));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
    if (!IsOp("~")) return first;
    auto e = MakeExpr(ExprKind::kConcat, line);
    e->children.push_back(std::move(first));
    while (SkipOp("~")) {
      JINJA_ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
      e->children.push_back(std::move(next));
    }
    return e;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = cur().text;
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
      JINJA_ASSIGN_OR_RETURN(
          left, Binary(ExprKind::kBinary, std::move(left), std::move(right), line, op));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (SkipOp("**")) {
      JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      JINJA_ASSIGN_OR_RETURN(
          left, Binary(ExprKind::kBinary, std::move(left), std::move(right), line, "**"));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      auto e = MakeExpr(IsOp("-") ? ExprKind::kNeg : ExprKind::kPos, cur().line);
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      e->children.push_back(std::move(operand));
      node = std::move(e);
    } else {
      JINJA_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    JINJA_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      JINJA_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = cur();
    if (t.type == TokenType::kName) {
      ExprPtr e;
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        e = MakeExpr(ExprKind::kConst, t.line);
        e->constant = Value(t.text == "true" || t.text == "True");
      } else if (t.text == "none" || t.text == "None") {
        e = MakeExpr(ExprKind::kConst, t.line);
        e->constant = Value::None();
      } else {
        e = MakeExpr(ExprKind::kName, t.line);
        e->name = t.text;
      }
      Next();
      return e;
    }
    if (t.type == TokenType::kString) {
      auto e = MakeExpr(ExprKind::kConst, t.line);
      std::string s;
      while (cur().type == TokenType::kString) {  // adjacent literals concatenate
        s += cur().text;
        Next();
      }
      e->constant = Value(std::move(s));
      return e;
    }
    if (t.type == TokenType::kInteger || t.type == TokenType::kFloat) {
      auto e = MakeExpr(ExprKind::kConst, t.line);
      e->constant = t.type == TokenType::kInteger ? Value(t.int_value) : Value(t.float_value);
      Next();
      return e;
    }
    if (IsOp("(")) {
      Next();
      JINJA_ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(false, true, {}, /*explicit_parentheses=*/true));
      JINJA_RETURN_IF_ERROR(ExpectOp(")"));
      return e;
    }
    if (IsOp("[")) {
      auto e = MakeExpr(ExprKind::kList, t.line);
      Next();
      while (!IsOp("]")) {
        if (!e->children.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("]")) break;
        JINJA_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
        e->children.push_back(std::move(item));
      }
      JINJA_RETURN_IF_ERROR(ExpectOp("]"));
      return e;
    }
    if (IsOp("{")) {
      auto e = MakeExpr(ExprKind::kDict, t.line);
      Next();
      while (!IsOp("}")) {
        if (!e->children.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("}")) break;
        JINJA_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
        JINJA_RETURN_IF_ERROR(ExpectOp(":"));
        JINJA_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        e->children.push_back(std::move(key));
        e->children.push_back(std::move(value));
      }
      JINJA_RETURN_IF_ERROR(ExpectOp("}"));
      return e;
    }
    return Error(Cat("unexpected '", Describe(t), "'"));
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        JINJA_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOp("(")) {
        JINJA_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        JINJA_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
      } else if (IsName("is")) {
        JINJA_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        JINJA_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    const Token t = cur();
    Next();
    if (t.text == ".") {
      const Token attr = cur();
      Next();
      if (attr.type == TokenType::kName) {
        auto e = MakeExpr(ExprKind::kGetattr, t.line);
        e->name = attr.text;
        e->children.push_back(std::move(node));
        return e;
      }
      if (attr.type != TokenType::kInteger)
        return TemplateError(attr.line, "expected name or number");
      auto e = MakeExpr(ExprKind::kGetitem, t.line);
      e->children.push_back(std::move(node));
      auto index = MakeExpr(ExprKind::kConst, attr.line);
      index->constant = Value(attr.int_value);
      e->children.push_back(std::move(index));
      return e;
    }
    std::vector<ExprPtr> args;
    while (!IsOp("]")) {
      if (!args.empty()) JINJA_RETURN_IF_ERROR(ExpectOp(","));
      JINJA_ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
      args.push_back(std::move(arg));
    }
    JINJA_RETURN_IF_ERROR(ExpectOp("]"));
    auto e = MakeExpr(ExprKind::kGetitem, t.line);
    e->children.push_back(std::move(node));
    if (args.size() == 1) {
      e->children.push_back(std::move(args[0]));
    } else {
      auto tuple = MakeExpr(ExprKind::kTuple, t.line);
      tuple->children = std::move(args);
      e->children.push_back(std::move(tuple));
    }
    return e;
  }

  absl::StatusOr<ExprPtr> ParseSubscribed() {
    const int line = cur().line;
    auto slice = MakeExpr(ExprKind::kSlice, line);
    if (IsOp(":")) {
      Next();
      slice->children.push_back(nullptr);
    } else {
      JINJA_ASSIGN_OR_RETURN(ExprPtr node, ParseExpression(true));
      if (!IsOp(":")) return node;
      Next();
      slice->children.push_back(std::move(node));
    }
    if (IsOp(":") || IsOp("]") || IsOp(",")) {
      slice->children.push_back(nullptr);
    } else {
      JINJA_ASSIGN_OR_RETURN(ExprPtr stop, ParseExpression(true));
      slice->children.push_back(std::move(stop));
    }
    if (SkipOp(":")) {
      if (IsOp("]") || IsOp(",")) {
        slice->children.push_back(nullptr);
      } else {
        JINJA_ASSIGN_OR_RETURN(ExprPtr step, ParseExpression(true));
        slice->children.push_back(std::move(step));
      }
    } else {
      slice->children.push_back(nullptr);
    }
    return slice;
  }

  absl::Status ParseCallArgs(Expr* e) {
    JINJA_RETURN_IF_ERROR(ExpectOp("("));
    bool require_comma = false;
    while (!IsOp(")")) {
      if (require_comma) {
        JINJA_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
      }
      if (SkipOp("*")) {
        if (e->dyn_args || e->dyn_kwargs)
          return Error("invalid syntax for function call expression");
        JINJA_ASSIGN_OR_RETURN(e->dyn_args, ParseExpression(true));
      } else if (SkipOp("**")) {
        if (e->dyn_kwargs) return Error("invalid syntax for function call expression");
        JINJA_ASSIGN_OR_RETURN(e->dyn_kwargs, ParseExpression(true));
      } else if (cur().type == TokenType::kName && peek().type == TokenType::kOperator &&
                 peek().text == "=") {
        if (e->dyn_kwargs) return Error("invalid syntax for function call expression");
        std::string key = cur().text;
        Next();
        Next();
        JINJA_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        e->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (e->dyn_args || e->dyn_kwargs || !e->kwargs.empty()) {
          return Error("invalid syntax for function call expression");
        }
        JINJA_ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression(true));
        e->children.push_back(std::move(arg));
      }
      require_comma = true;
    }
    return ExpectOp(")");
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr node) {
    auto e = MakeExpr(ExprKind::kCall, cur().line);
    e->children.push_back(std::move(node));
    JINJA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
    return e;
  }

  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Next();
      start_inline = false;
      const int line = cur().line;
      JINJA_ASSIGN_OR_RETURN(std::string name, ExpectName());
      while (SkipOp(".")) {
        JINJA_ASSIGN_OR_RETURN(std::string part, ExpectName());
        Append(&name, ".", part);
      }
      if (!IsJinjaFilterName(name)) {
        return TemplateError(line, Cat("unknown filter '", name, "'"));
      }
      auto e = MakeExpr(ExprKind::kFilter, line);
      e->name = std::move(name);
      e->children.push_back(std::move(node));
      if (IsOp("(")) JINJA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
      node = std::move(e);
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node) {
    const int line = cur().line;
    Next();  // is
    const bool negated = SkipName("not");
    JINJA_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (SkipOp(".")) {
      JINJA_ASSIGN_OR_RETURN(std::string part, ExpectName());
      Append(&name, ".", part);
    }
    if (!IsJinjaTestName(name)) return TemplateError(line, Cat("unknown test '", name, "'"));
    auto e = MakeExpr(ExprKind::kTest, line);
    e->name = std::move(name);
    e->children.push_back(std::move(node));
    if (IsOp("(")) {
      JINJA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
    } else if ((cur().type == TokenType::kName || cur().type == TokenType::kString ||
                cur().type == TokenType::kInteger || cur().type == TokenType::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) return Error("you cannot chain multiple tests with is");
      JINJA_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      JINJA_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      e->children.push_back(std::move(arg));
    }
    if (!negated) return e;
    auto n = MakeExpr(ExprKind::kNot, line);
    n->children.push_back(std::move(e));
    return n;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

bool IsJinjaFilterName(std::string_view name) {
  return std::find(std::begin(kFilterNames), std::end(kFilterNames), name) !=
         std::end(kFilterNames);
}

bool IsJinjaTestName(std::string_view name) {
  return std::find(std::begin(kTestNames), std::end(kTestNames), name) != std::end(kTestNames);
}

absl::StatusOr<Body> ParseTokens(std::vector<Token> tokens) {
  return Parser(std::move(tokens)).ParseTemplate();
}

}  // namespace lattice::jinja
