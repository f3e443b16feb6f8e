// Expression parsing with jinja2's precedence, lowest first: conditional expression,
// or, and, not, comparisons (with in / not in), + -, ~, * / // %, **, unary - +, then
// postfix access and calls, filters and tests (see parser_internal.h).
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/parser_internal.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja::parser_internal {

bool Parser::IsTupleEnd(Names end_names) const {
  if (cur().type == TokenType::kVarEnd || cur().type == TokenType::kBlockEnd || IsOp(")")) {
    return true;
  }
  if (cur().type == TokenType::kName) {
    return std::find(end_names.begin(), end_names.end(), cur().text) != end_names.end();
  }
  return false;
}

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool simplified, bool with_condexpr, Names end_names,
                                           bool explicit_parentheses) {
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

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  DepthGuard guard(this);
  if (guard.too_deep()) return TooDeep();
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

absl::StatusOr<ExprPtr> Parser::Binary(ExprKind kind, ExprPtr left, ExprPtr right, int line,
                                       std::string op) {
  auto e = MakeExpr(kind, line);
  e->name = std::move(op);
  e->children.push_back(std::move(left));
  e->children.push_back(std::move(right));
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  const int line = cur().line;
  JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (SkipName("or")) {
    JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    JINJA_ASSIGN_OR_RETURN(left, Binary(ExprKind::kOr, std::move(left), std::move(right), line));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  const int line = cur().line;
  JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (SkipName("and")) {
    JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    JINJA_ASSIGN_OR_RETURN(left, Binary(ExprKind::kAnd, std::move(left), std::move(right), line));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  DepthGuard guard(this);
  if (guard.too_deep()) return TooDeep();
  if (IsName("not")) {
    auto e = MakeExpr(ExprKind::kNot, cur().line);
    Next();
    JINJA_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    e->children.push_back(std::move(operand));
    return e;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
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

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  const int line = cur().line;
  JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    std::string op = cur().text;
    Next();
    JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    JINJA_ASSIGN_OR_RETURN(left,
                           Binary(ExprKind::kBinary, std::move(left), std::move(right), line, op));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
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

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  const int line = cur().line;
  JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    std::string op = cur().text;
    Next();
    JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    JINJA_ASSIGN_OR_RETURN(left,
                           Binary(ExprKind::kBinary, std::move(left), std::move(right), line, op));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  const int line = cur().line;
  JINJA_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (SkipOp("**")) {
    JINJA_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    JINJA_ASSIGN_OR_RETURN(
        left, Binary(ExprKind::kBinary, std::move(left), std::move(right), line, "**"));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  DepthGuard guard(this);
  if (guard.too_deep()) return TooDeep();
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

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
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

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
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

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
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

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
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

absl::StatusOr<ExprPtr> Parser::ParseSubscribed() {
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

absl::Status Parser::ParseCallArgs(Expr* e) {
  JINJA_RETURN_IF_ERROR(ExpectOp("("));
  bool require_comma = false;
  while (!IsOp(")")) {
    if (require_comma) {
      JINJA_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
    }
    if (SkipOp("*")) {
      if (e->dyn_args || e->dyn_kwargs) return Error("invalid syntax for function call expression");
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

absl::StatusOr<ExprPtr> Parser::ParseCall(ExprPtr node) {
  auto e = MakeExpr(ExprKind::kCall, cur().line);
  e->children.push_back(std::move(node));
  JINJA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp("|") || start_inline) {
    if (!start_inline) Next();
    start_inline = false;
    const int line = cur().line;
    JINJA_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (SkipOp(".")) {
      JINJA_ASSIGN_OR_RETURN(std::string part, ExpectName());
      Append(&name, ".", part);
    }
    auto e = MakeExpr(ExprKind::kFilter, line);
    e->name = std::move(name);
    e->children.push_back(std::move(node));
    if (IsOp("(")) JINJA_RETURN_IF_ERROR(ParseCallArgs(e.get()));
    node = std::move(e);
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr node) {
  const int line = cur().line;
  Next();  // is
  const bool negated = SkipName("not");
  JINJA_ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (SkipOp(".")) {
    JINJA_ASSIGN_OR_RETURN(std::string part, ExpectName());
    Append(&name, ".", part);
  }
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

}  // namespace lattice::jinja::parser_internal
