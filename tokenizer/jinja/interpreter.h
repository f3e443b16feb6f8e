// Runs a parsed template: statements write text, expressions evaluate to Values. Scoping
// follows jinja2: each for-loop iteration, macro call, `with` and block `set` body gets
// its own scope whose parent is the enclosing one, so `set` inside a loop does not leak
// out while namespace() objects (shared, mutable) do; `if` opens no scope. One
// Interpreter renders one template once, on one thread.
#ifndef LATTICE_TOKENIZER_JINJA_INTERPRETER_H_
#define LATTICE_TOKENIZER_JINJA_INTERPRETER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/template.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}
  // The innermost binding of `name`, or null.
  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  absl::flat_hash_map<std::string, Value> vars_;
  std::shared_ptr<Scope> parent_;
};

class Interpreter {
 public:
  Interpreter(const RenderEnvironment& env, std::shared_ptr<Scope> globals)
      : env_(env), globals_(std::move(globals)) {}

  absl::Status Render(const Body& body, std::string* out);

  // Used by filters, tests and callables.
  const RenderEnvironment& env() const { return env_; }
  absl::StatusOr<Value> Call(const Value& callee, CallArgs args);
  // jinja2's environment.getattr / getitem (sandboxed): attribute or method, then item;
  // item, then attribute. Missing ones are undefined; undefined receivers are errors.
  absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
  // Runs a macro (or a call block's caller) defined by `def` in scope `closure`.
  absl::StatusOr<Value> CallMacro(const Stmt& def, const std::shared_ptr<Scope>& closure,
                                  CallArgs args, bool is_caller);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Exec(const Body& body, const std::shared_ptr<Scope>& scope,
                            std::string* out);
  absl::StatusOr<Flow> ExecStmt(const Stmt& stmt, const std::shared_ptr<Scope>& scope,
                                std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, const std::shared_ptr<Scope>& scope,
                               std::string* out);
  absl::Status Assign(const Expr& target, Value value, Scope& scope);
  absl::StatusOr<std::string> RenderToString(const Body& body, const std::shared_ptr<Scope>& scope);

  absl::StatusOr<Value> Eval(const Expr& expr, const std::shared_ptr<Scope>& scope);
  absl::StatusOr<Value> EvalUnlocated(const Expr& expr, const std::shared_ptr<Scope>& scope);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first,
                                    const std::shared_ptr<Scope>& scope);
  absl::StatusOr<Value> EvalGetitem(const Expr& expr, const std::shared_ptr<Scope>& scope);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, const std::shared_ptr<Scope>& scope);
  // Applies a filter node (and the chain below it) to `operand` (filter blocks).
  absl::StatusOr<Value> ApplyFilterChain(const Expr& filter, Value operand,
                                         const std::shared_ptr<Scope>& scope);

  const RenderEnvironment& env_;
  std::shared_ptr<Scope> globals_;
  int depth_ = 0;  // nested macro calls, bounded as Python's recursion is
};

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_INTERPRETER_H_
