// The parser's class, shared by parser.cc (statements, the template) and parser_expr.cc
// (expressions, with jinja2's precedence). Internal to the jinja module.
#ifndef LATTICE_TOKENIZER_JINJA_PARSER_INTERNAL_H_
#define LATTICE_TOKENIZER_JINJA_PARSER_INTERNAL_H_

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/lexer.h"

namespace lattice::jinja::parser_internal {

ExprPtr MakeExpr(ExprKind kind, int line);
StmtPtr MakeStmt(StmtKind kind, int line);

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}
  absl::StatusOr<Body> ParseTemplate();

 private:
  using Names = std::initializer_list<std::string_view>;

  // --- the token stream ---
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
  static std::string Describe(const Token& t);
  absl::Status ExpectOp(std::string_view op);
  absl::Status ExpectType(TokenType type, std::string_view what);
  absl::StatusOr<std::string> ExpectName();

  // --- statements (parser.cc) ---
  absl::StatusOr<Body> Subparse(Names end_tags);
  absl::StatusOr<Body> ParseStatements(Names end_tags, bool drop_needle);
  absl::StatusOr<StmtPtr> ParseStatement();
  absl::StatusOr<StmtPtr> ParseIf();
  absl::StatusOr<StmtPtr> ParseFor();
  absl::StatusOr<StmtPtr> ParseSet();
  absl::Status ParseSignature(Stmt* s);
  absl::StatusOr<StmtPtr> ParseMacro();
  absl::StatusOr<StmtPtr> ParseCallBlock();
  absl::StatusOr<StmtPtr> ParseFilterBlock();
  absl::StatusOr<StmtPtr> ParseWith();
  static absl::Status CheckAssignable(const Expr& e);
  absl::StatusOr<ExprPtr> ParseAssignTarget(Names end_names, bool with_namespace);

  // --- expressions (parser_expr.cc) ---
  bool IsTupleEnd(Names end_names) const;
  absl::StatusOr<ExprPtr> ParseTuple(bool simplified, bool with_condexpr, Names end_names,
                                     bool explicit_parentheses = false);
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  absl::StatusOr<ExprPtr> Binary(ExprKind kind, ExprPtr left, ExprPtr right, int line,
                                 std::string op = {});
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscribed();
  absl::Status ParseCallArgs(Expr* e);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node);

  // Bounds recursion on hostile input (jinja2 hits Python's recursion limit earlier).
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* p) : p_(p) { ++p_->depth_; }
    ~DepthGuard() { --p_->depth_; }
    bool too_deep() const { return p_->depth_ > kMaxDepth; }

   private:
    Parser* p_;
  };
  static constexpr int kMaxDepth = 256;
  absl::Status TooDeep() const { return Error("template nested too deeply"); }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;  // enclosing for loops (break/continue are allowed inside one)
};

}  // namespace lattice::jinja::parser_internal

#endif  // LATTICE_TOKENIZER_JINJA_PARSER_INTERNAL_H_
