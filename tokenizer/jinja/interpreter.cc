// Statement execution and expression evaluation (see interpreter.h).
#include "tokenizer/jinja/interpreter.h"

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/loop.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

// Python's default recursion limit allows a few hundred nested jinja2 macro calls.
constexpr int kMaxMacroDepth = 200;

// A macro, or the `caller` of a call block: the definition plus the scope it closes over.
class Macro : public Function {
 public:
  Macro(const Stmt* def, std::shared_ptr<Scope> closure, bool is_caller)
      : def_(def), closure_(std::move(closure)), is_caller_(is_caller) {}
  std::string name() const override { return is_caller_ ? "caller" : def_->text; }
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override {
    return interp.CallMacro(*def_, closure_, std::move(args), is_caller_);
  }

 private:
  const Stmt* def_;
  std::shared_ptr<Scope> closure_;
  bool is_caller_;
};

absl::Status UnpackError(size_t expected, size_t got) {
  if (got < expected) {
    return absl::InvalidArgumentError(
        Cat("not enough values to unpack (expected ", expected, ", got ", got, ")"));
  }
  return absl::InvalidArgumentError(Cat("too many values to unpack (expected ", expected, ")"));
}

}  // namespace

const Value* Scope::Find(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
    auto it = s->vars_.find(AbslView(name));
    if (it != s->vars_.end()) return &it->second;
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) { vars_[std::string(name)] = std::move(value); }

absl::Status Interpreter::Render(const Body& body, std::string* out) {
  auto root = std::make_shared<Scope>(globals_);
  return Exec(body, root, out).status();
}

absl::StatusOr<std::string> Interpreter::RenderToString(const Body& body,
                                                        const std::shared_ptr<Scope>& scope) {
  std::string out;
  JINJA_RETURN_IF_ERROR(Exec(body, scope, &out).status());
  return out;
}

absl::StatusOr<Interpreter::Flow> Interpreter::Exec(const Body& body,
                                                    const std::shared_ptr<Scope>& scope,
                                                    std::string* out) {
  for (const StmtPtr& stmt : body) {
    absl::StatusOr<Flow> flow = ExecStmt(*stmt, scope, out);
    if (!flow.ok()) return WithLine(flow.status(), stmt->line);
    if (*flow != Flow::kNormal) return *flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecStmt(const Stmt& stmt,
                                                        const std::shared_ptr<Scope>& scope,
                                                        std::string* out) {
  switch (stmt.kind) {
    case StmtKind::kText:
      out->append(stmt.text);
      return Flow::kNormal;
    case StmtKind::kPrint: {
      JINJA_ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      JINJA_RETURN_IF_ERROR(WithLine(AppendPyStr(v, out), stmt.line));
      return Flow::kNormal;
    }
    case StmtKind::kIf:
      for (const auto& [test, body] : stmt.branches) {
        JINJA_ASSIGN_OR_RETURN(Value v, Eval(*test, scope));
        if (v.Truthy()) return Exec(body, scope, out);
      }
      return Exec(stmt.else_body, scope, out);
    case StmtKind::kFor:
      return ExecFor(stmt, scope, out);
    case StmtKind::kSet: {
      JINJA_ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      JINJA_RETURN_IF_ERROR(Assign(*stmt.target, std::move(v), *scope));
      return Flow::kNormal;
    }
    case StmtKind::kSetBlock: {
      JINJA_ASSIGN_OR_RETURN(std::string text,
                             RenderToString(stmt.body, std::make_shared<Scope>(scope)));
      Value v(std::move(text));
      if (stmt.expr != nullptr) {
        JINJA_ASSIGN_OR_RETURN(v, ApplyFilterChain(*stmt.expr, std::move(v), scope));
      }
      JINJA_RETURN_IF_ERROR(Assign(*stmt.target, std::move(v), *scope));
      return Flow::kNormal;
    }
    case StmtKind::kMacro:
      scope->Set(stmt.text, Value::MakeFunction(std::make_shared<Macro>(&stmt, scope, false)));
      return Flow::kNormal;
    case StmtKind::kCallBlock: {
      const Expr& call = *stmt.expr;
      JINJA_ASSIGN_OR_RETURN(Value callee, Eval(*call.children[0], scope));
      JINJA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, scope));
      args.kwargs.emplace_back("caller",
                               Value::MakeFunction(std::make_shared<Macro>(&stmt, scope, true)));
      JINJA_ASSIGN_OR_RETURN(Value result, Call(callee, std::move(args)));
      JINJA_RETURN_IF_ERROR(AppendPyStr(result, out));
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock: {
      JINJA_ASSIGN_OR_RETURN(std::string text,
                             RenderToString(stmt.body, std::make_shared<Scope>(scope)));
      JINJA_ASSIGN_OR_RETURN(Value v, ApplyFilterChain(*stmt.expr, Value(std::move(text)), scope));
      JINJA_RETURN_IF_ERROR(AppendPyStr(v, out));
      return Flow::kNormal;
    }
    case StmtKind::kWith: {
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [target, value] : stmt.assignments) {
        JINJA_ASSIGN_OR_RETURN(Value v, Eval(*value, scope));
        JINJA_RETURN_IF_ERROR(Assign(*target, std::move(v), *inner));
      }
      return Exec(stmt.body, inner, out);
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kScope:
      return Exec(stmt.body, std::make_shared<Scope>(scope), out);
  }
  return Flow::kNormal;
}

absl::StatusOr<Interpreter::Flow> Interpreter::ExecFor(const Stmt& stmt,
                                                       const std::shared_ptr<Scope>& scope,
                                                       std::string* out) {
  JINJA_ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr, scope));
  absl::StatusOr<std::vector<Value>> items = Iterate(iterable);
  if (!items.ok()) return WithLine(items.status(), stmt.expr->line);
  if (stmt.cond != nullptr) {
    // `for x in xs if cond`: the filter sees the loop target, not `loop`.
    std::vector<Value> kept;
    for (Value& item : *items) {
      auto probe = std::make_shared<Scope>(scope);
      JINJA_RETURN_IF_ERROR(Assign(*stmt.target, item, *probe));
      JINJA_ASSIGN_OR_RETURN(Value keep, Eval(*stmt.cond, probe));
      if (keep.Truthy()) kept.push_back(std::move(item));
    }
    *items = std::move(kept);
  }
  // jinja2 runs the else block unless some iteration reached the end of the body: an
  // empty loop, or one whose iterations all ended in break or continue.
  bool completed_iteration = false;
  auto shared_items = std::make_shared<const std::vector<Value>>(*std::move(items));
  auto loop = std::make_shared<LoopObject>(shared_items);
  const Value loop_value = Value::MakeObject(loop);
  for (size_t i = 0; i < shared_items->size(); ++i) {
    loop->set_index0(static_cast<int64_t>(i));
    auto iteration = std::make_shared<Scope>(scope);
    iteration->Set("loop", loop_value);
    JINJA_RETURN_IF_ERROR(
        WithLine(Assign(*stmt.target, (*shared_items)[i], *iteration), stmt.line));
    JINJA_ASSIGN_OR_RETURN(Flow flow, Exec(stmt.body, iteration, out));
    if (flow == Flow::kBreak) break;
    if (flow == Flow::kNormal) completed_iteration = true;
  }
  if (!completed_iteration && !stmt.else_body.empty()) {
    return Exec(stmt.else_body, std::make_shared<Scope>(scope), out);
  }
  return Flow::kNormal;
}

absl::Status Interpreter::Assign(const Expr& target, Value value, Scope& scope) {
  switch (target.kind) {
    case ExprKind::kName:
      scope.Set(target.name, std::move(value));
      return absl::OkStatus();
    case ExprKind::kTuple: {
      JINJA_ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(value));
      if (value.is_undefined()) return UndefinedError(value);
      if (parts.size() != target.children.size()) {
        return UnpackError(target.children.size(), parts.size());
      }
      for (size_t i = 0; i < parts.size(); ++i) {
        JINJA_RETURN_IF_ERROR(Assign(*target.children[i], std::move(parts[i]), scope));
      }
      return absl::OkStatus();
    }
    case ExprKind::kNsRef: {
      const Value* ns = scope.Find(target.children[0]->name);
      if (ns == nullptr || !ns->is_object() || ns->object()->type_name() != "Namespace") {
        return TemplateError(target.line, "cannot assign attribute on non-namespace object");
      }
      return ns->object()->SetAttr(target.name, std::move(value));
    }
    default:
      return TemplateError(target.line, "cannot assign to this expression");
  }
}

absl::StatusOr<Value> Interpreter::CallMacro(const Stmt& def, const std::shared_ptr<Scope>& closure,
                                             CallArgs args, bool is_caller) {
  const std::string name = is_caller ? "caller" : def.text;
  if (depth_ >= kMaxMacroDepth) {
    return absl::InvalidArgumentError("maximum recursion depth exceeded in macro calls");
  }
  auto scope = std::make_shared<Scope>(closure);
  std::vector<bool> bound(def.params.size(), false);
  std::vector<Value> varargs;
  Dict kwargs;
  for (size_t i = 0; i < args.args.size(); ++i) {
    if (i < def.params.size()) {
      scope->Set(def.params[i], std::move(args.args[i]));
      bound[i] = true;
    } else if (def.uses_varargs) {
      varargs.push_back(std::move(args.args[i]));
    } else {
      return absl::InvalidArgumentError(
          Cat("macro '", name, "' takes not more than ", def.params.size(), " argument(s)"));
    }
  }
  for (auto& [key, value] : args.kwargs) {
    bool matched = false;
    for (size_t i = 0; i < def.params.size(); ++i) {
      if (def.params[i] != key) continue;
      if (bound[i]) {
        return absl::InvalidArgumentError(
            Cat("macro '", name, "' got multiple values for argument '", key, "'"));
      }
      scope->Set(key, std::move(value));
      bound[i] = true;
      matched = true;
      break;
    }
    if (matched) continue;
    if (key == "caller" && (def.uses_caller || is_caller)) {
      scope->Set("caller", std::move(value));
    } else if (def.uses_kwargs) {
      kwargs.Set(Value(key), std::move(value));
    } else {
      return absl::InvalidArgumentError(
          Cat("macro '", name, "' takes no keyword argument '", key, "'"));
    }
  }
  // Defaults are evaluated in the macro's scope, after the parameters before them.
  for (size_t i = 0; i < def.params.size(); ++i) {
    if (bound[i]) continue;
    if (def.defaults[i] != nullptr) {
      JINJA_ASSIGN_OR_RETURN(Value v, Eval(*def.defaults[i], scope));
      scope->Set(def.params[i], std::move(v));
    } else {
      scope->Set(def.params[i],
                 Value::Undefined(Cat("parameter '", def.params[i], "' was not provided")));
    }
  }
  if (def.uses_varargs) scope->Set("varargs", Value::MakeTuple(std::move(varargs)));
  if (def.uses_kwargs) scope->Set("kwargs", Value::MakeDict(std::move(kwargs)));
  ++depth_;
  absl::StatusOr<std::string> text = RenderToString(def.body, scope);
  --depth_;
  if (!text.ok()) return text.status();
  return Value(*std::move(text));
}

absl::StatusOr<Value> Interpreter::Call(const Value& callee, CallArgs args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (!callee.is_function()) {
    return absl::InvalidArgumentError(Cat("'", callee.TypeName(), "' object is not callable"));
  }
  return callee.function()->Call(*this, std::move(args));
}

absl::StatusOr<Value> Interpreter::GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_object()) return obj.object()->GetAttr(name);
  if (std::optional<Value> method = GetMethod(obj, name)) return *std::move(method);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().Find(name)) return *v;
  }
  return Value::Undefined(Cat("'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> Interpreter::GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().Find(key)) return *v;
  } else if ((obj.is_indexable_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    const int64_t n =
        obj.is_string() ? pystr::Length(obj.str()) : static_cast<int64_t>(obj.list().items.size());
    int64_t i = key.as_integer();
    if (i < 0) i += n;
    if (i >= 0 && i < n) {
      if (!obj.is_string()) return obj.list().items[i];
      if (pystr::IsAscii(obj.str())) return Value(obj.str().substr(i, 1));
      return Value(pystr::Encode(pystr::Decode(obj.str()).substr(i, 1)));
    }
    return Value::Undefined(Cat("'", obj.TypeName(), " object' has no element ", key.as_integer()));
  }
  if (key.is_string()) return GetAttr(obj, key.str());
  std::string key_text = PyRepr(key).value_or("?");
  return Value::Undefined(Cat("'", obj.TypeName(), " object' has no element ", key_text));
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  absl::StatusOr<Value> v = EvalUnlocated(expr, scope);
  if (!v.ok()) return WithLine(v.status(), expr.line);
  return v;
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& expr, size_t first,
                                               const std::shared_ptr<Scope>& scope) {
  CallArgs args;
  for (size_t i = first; i < expr.children.size(); ++i) {
    JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[i], scope));
    args.args.push_back(std::move(v));
  }
  for (const auto& [key, value] : expr.kwargs) {
    JINJA_ASSIGN_OR_RETURN(Value v, Eval(*value, scope));
    args.kwargs.emplace_back(key, std::move(v));
  }
  if (expr.dyn_args != nullptr) {
    JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.dyn_args, scope));
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> extra, Iterate(v));
    for (Value& e : extra) args.args.push_back(std::move(e));
  }
  if (expr.dyn_kwargs != nullptr) {
    JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.dyn_kwargs, scope));
    if (!v.is_dict()) return absl::InvalidArgumentError("argument after ** must be a mapping");
    for (const auto& [k, val] : v.dict().entries) {
      if (!k.is_string()) return absl::InvalidArgumentError("keywords must be strings");
      args.kwargs.emplace_back(k.str(), val);
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::EvalGetitem(const Expr& expr,
                                               const std::shared_ptr<Scope>& scope) {
  JINJA_ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
  const Expr& index = *expr.children[1];
  if (index.kind != ExprKind::kSlice) {
    JINJA_ASSIGN_OR_RETURN(Value key, Eval(index, scope));
    return GetItem(obj, key);
  }
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (index.children[i] == nullptr) continue;
    JINJA_ASSIGN_OR_RETURN(Value b, Eval(*index.children[i], scope));
    if (b.is_none()) continue;
    if (!b.is_int() && !b.is_bool()) {
      return absl::InvalidArgumentError(
          "slice indices must be integers or None or have an __index__ method");
    }
    bounds[i] = b.as_integer();
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_string()) {
    const bool ascii = pystr::IsAscii(obj.str());
    const std::u32string chars = ascii ? std::u32string() : pystr::Decode(obj.str());
    const int64_t n =
        ascii ? static_cast<int64_t>(obj.str().size()) : static_cast<int64_t>(chars.size());
    std::string out;
    for (int64_t i : pystr::SliceIndices(n, bounds[0], bounds[1], step)) {
      if (ascii) {
        out.push_back(obj.str()[i]);
      } else {
        pystr::AppendCodePoint(chars[i], &out);
      }
    }
    return Value(std::move(out));
  }
  if (obj.is_indexable_list()) {
    const auto& items = obj.list().items;
    std::vector<Value> out;
    for (int64_t i :
         pystr::SliceIndices(static_cast<int64_t>(items.size()), bounds[0], bounds[1], step)) {
      out.push_back(items[i]);
    }
    return Value::MakeList(std::move(out),
                           obj.seq_kind() == SeqKind::kTuple ? SeqKind::kTuple : SeqKind::kList);
  }
  return Value::Undefined(Cat("'", obj.TypeName(), " object' cannot be sliced"));
}

absl::StatusOr<Value> Interpreter::EvalCompare(const Expr& expr,
                                               const std::shared_ptr<Scope>& scope) {
  JINJA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    JINJA_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], scope));
    JINJA_ASSIGN_OR_RETURN(bool result, CompareOp(expr.ops[i], left, right));
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

absl::StatusOr<Value> Interpreter::ApplyFilterChain(const Expr& filter, Value operand,
                                                    const std::shared_ptr<Scope>& scope) {
  if (filter.children[0] != nullptr) {
    JINJA_ASSIGN_OR_RETURN(operand,
                           ApplyFilterChain(*filter.children[0], std::move(operand), scope));
  }
  JINJA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(filter, 1, scope));
  absl::StatusOr<Value> v = ApplyFilter(*this, filter.name, operand, std::move(args));
  if (!v.ok()) return WithLine(v.status(), filter.line);
  return v;
}

absl::StatusOr<Value> Interpreter::EvalUnlocated(const Expr& expr,
                                                 const std::shared_ptr<Scope>& scope) {
  switch (expr.kind) {
    case ExprKind::kConst:
      return expr.constant;
    case ExprKind::kName: {
      if (const Value* v = scope->Find(expr.name)) return *v;
      return Value::Undefined(Cat("'", expr.name, "' is undefined"));
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(expr.children.size());
      for (const ExprPtr& c : expr.children) {
        JINJA_ASSIGN_OR_RETURN(Value v, Eval(*c, scope));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items),
                             expr.kind == ExprKind::kTuple ? SeqKind::kTuple : SeqKind::kList);
    }
    case ExprKind::kDict: {
      Dict dict;
      for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
        JINJA_ASSIGN_OR_RETURN(Value k, Eval(*expr.children[i], scope));
        JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[i + 1], scope));
        JINJA_RETURN_IF_ERROR(CheckHashable(k));
        dict.Set(std::move(k), std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
    case ExprKind::kGetattr: {
      JINJA_ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
      return GetAttr(obj, expr.name);
    }
    case ExprKind::kGetitem:
      return EvalGetitem(expr, scope);
    case ExprKind::kSlice:
      return absl::InvalidArgumentError("unsupported: slices inside tuple subscripts");
    case ExprKind::kCall: {
      JINJA_ASSIGN_OR_RETURN(Value callee, Eval(*expr.children[0], scope));
      JINJA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return Call(callee, std::move(args));
    }
    case ExprKind::kFilter: {
      JINJA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], scope));
      JINJA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return ApplyFilter(*this, expr.name, operand, std::move(args));
    }
    case ExprKind::kTest: {
      JINJA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], scope));
      JINJA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      JINJA_ASSIGN_OR_RETURN(bool result, ApplyTest(*this, expr.name, operand, std::move(args)));
      return Value(result);
    }
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[0], scope));
      return Negate(v, expr.kind == ExprKind::kNeg);
    }
    case ExprKind::kNot: {
      JINJA_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[0], scope));
      return Value(!v.Truthy());
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // Python's and/or yield an operand, not a bool.
      JINJA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
      if (left.Truthy() == (expr.kind == ExprKind::kOr)) return left;
      return Eval(*expr.children[1], scope);
    }
    case ExprKind::kBinary: {
      JINJA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
      JINJA_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[1], scope));
      return BinaryOp(expr.name, left, right);
    }
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& c : expr.children) {
        JINJA_ASSIGN_OR_RETURN(Value v, Eval(*c, scope));
        JINJA_RETURN_IF_ERROR(AppendPyStr(v, &out));
      }
      return Value(std::move(out));
    }
    case ExprKind::kCompare:
      return EvalCompare(expr, scope);
    case ExprKind::kCondExpr: {
      JINJA_ASSIGN_OR_RETURN(Value test, Eval(*expr.children[0], scope));
      if (test.Truthy()) return Eval(*expr.children[1], scope);
      if (expr.children[2] != nullptr) return Eval(*expr.children[2], scope);
      return Value::Undefined(Cat("the inline if-expression on line ", expr.line,
                                  " evaluated to false and no else section was defined."));
    }
    case ExprKind::kNsRef:
      return absl::InvalidArgumentError("namespace reference outside an assignment");
  }
  return absl::InternalError("unknown expression");
}

}  // namespace lattice::jinja
