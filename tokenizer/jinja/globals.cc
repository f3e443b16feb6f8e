// The global functions a chat template sees: jinja2's (range, dict, namespace, joiner;
// cycler and lipsum fail when called) and transformers' (raise_exception,
// strftime_now).
#include "absl/time/time.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/errors.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

// jinja2's sandbox refuses bigger ranges.
constexpr int64_t kMaxRange = 100000;

class NamespaceObject : public Object {
 public:
  explicit NamespaceObject(Dict attrs) : attrs_(std::move(attrs)) {}
  std::string_view type_name() const override { return "Namespace"; }
  Value GetAttr(std::string_view name) const override {
    if (const Value* v = attrs_.Find(name)) return *v;
    return Object::GetAttr(name);
  }
  absl::Status SetAttr(std::string_view name, Value value) override {
    attrs_.Set(Value(name), std::move(value));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Repr() const override {
    JINJA_ASSIGN_OR_RETURN(std::string dict, PyRepr(Value::MakeDict(attrs_)));
    return Cat("<Namespace ", dict, ">");
  }

 private:
  Dict attrs_;
};

// Python's dict(*args, **kwargs).
absl::StatusOr<Dict> DictFromArgs(std::string_view what, CallArgs args) {
  Dict d;
  if (args.args.size() > 1) {
    return absl::InvalidArgumentError(
        Cat(what, " expected at most 1 argument, got ", args.args.size()));
  }
  if (args.args.size() == 1) {
    const Value& src = args.args[0];
    if (src.is_dict()) {
      d = src.dict();
    } else {
      JINJA_ASSIGN_OR_RETURN(std::vector<Value> pairs, Iterate(src));
      for (const Value& pair : pairs) {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> kv, Iterate(pair));
        if (kv.size() != 2) {
          return absl::InvalidArgumentError(
              "dictionary update sequence element has the wrong length");
        }
        JINJA_RETURN_IF_ERROR(CheckHashable(kv[0]));
        d.Set(kv[0], kv[1]);
      }
    }
  }
  for (auto& [k, v] : args.kwargs) d.Set(Value(k), std::move(v));
  return d;
}

class Builtin : public Function {
 public:
  using Fn = absl::StatusOr<Value> (*)(Interpreter&, CallArgs);
  Builtin(std::string name, Fn fn) : name_(std::move(name)), fn_(fn) {}
  std::string name() const override { return name_; }
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const override {
    return fn_(interp, std::move(args));
  }

 private:
  std::string name_;
  Fn fn_;
};

absl::StatusOr<Value> Range(Interpreter&, CallArgs args) {
  if (!args.kwargs.empty()) return absl::InvalidArgumentError("range() takes no keyword arguments");
  if (args.args.empty() || args.args.size() > 3) {
    return absl::InvalidArgumentError(
        Cat("range expected 1 to 3 arguments, got ", args.args.size()));
  }
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < args.args.size(); ++i) {
    const Value& a = args.args[i];
    if (!a.is_int() && !a.is_bool()) {
      return absl::InvalidArgumentError(
          Cat("'", a.TypeName(), "' object cannot be interpreted as an integer"));
    }
  }
  if (args.args.size() == 1) {
    bounds[1] = args.args[0].as_integer();
  } else {
    bounds[0] = args.args[0].as_integer();
    bounds[1] = args.args[1].as_integer();
    if (args.args.size() == 3) bounds[2] = args.args[2].as_integer();
  }
  const int64_t start = bounds[0], stop = bounds[1], step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  const __int128 span =
      step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  const __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
  const __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
  if (count > kMaxRange) {
    return absl::InvalidArgumentError(
        Cat("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
  }
  List list;
  list.kind = SeqKind::kRange;
  list.range_start = start;
  list.range_stop = stop;
  list.range_step = step;
  list.items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i)
    list.items.emplace_back(static_cast<int64_t>(start + i * step));
  return Value::MakeList(std::move(list));
}

absl::StatusOr<Value> MakeDictGlobal(Interpreter&, CallArgs args) {
  JINJA_ASSIGN_OR_RETURN(Dict d, DictFromArgs("dict", std::move(args)));
  return Value::MakeDict(std::move(d));
}

absl::StatusOr<Value> MakeNamespace(Interpreter&, CallArgs args) {
  JINJA_ASSIGN_OR_RETURN(Dict d, DictFromArgs("namespace", std::move(args)));
  return Value::MakeObject(std::make_shared<NamespaceObject>(std::move(d)));
}

absl::StatusOr<Value> RaiseException(Interpreter&, CallArgs args) {
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                         BindArgs("raise_exception", std::move(args), {{"message", {}}}));
  JINJA_ASSIGN_OR_RETURN(std::string message, PyStr(a[0]));
  return RaisedError(message);
}

absl::StatusOr<Value> StrftimeNow(Interpreter& interp, CallArgs args) {
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                         BindArgs("strftime_now", std::move(args), {{"format", {}}}));
  if (!a[0].is_string()) return absl::InvalidArgumentError("strftime() argument 1 must be str");
  return Value(absl::FormatTime(a[0].str(), interp.env().now, interp.env().time_zone));
}

class Joiner : public Function {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  std::string name() const override { return "joiner"; }
  absl::StatusOr<Value> Call(Interpreter&, CallArgs args) const override {
    JINJA_RETURN_IF_ERROR(BindArgs("joiner()", std::move(args), {}).status());
    if (!used_) {
      used_ = true;
      return Value("");
    }
    return Value(sep_);
  }

 private:
  std::string sep_;
  mutable bool used_ = false;  // one render, one thread
};

absl::StatusOr<Value> MakeJoiner(Interpreter&, CallArgs args) {
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                         BindArgs("joiner", std::move(args), {{"sep", Value(", ")}}));
  JINJA_ASSIGN_OR_RETURN(std::string sep, PyStr(a[0]));
  return Value::MakeFunction(std::make_shared<Joiner>(std::move(sep)));
}

absl::StatusOr<Value> Unsupported(Interpreter&, CallArgs) {
  return absl::InvalidArgumentError("unsupported global function (cycler/lipsum)");
}

}  // namespace

void AddGlobals(Scope& scope) {
  auto add = [&](std::string name, Builtin::Fn fn) {
    scope.Set(name, Value::MakeFunction(std::make_shared<Builtin>(name, fn)));
  };
  add("range", Range);
  add("dict", MakeDictGlobal);
  add("namespace", MakeNamespace);
  add("raise_exception", RaiseException);
  add("strftime_now", StrftimeNow);
  add("joiner", MakeJoiner);
  add("cycler", Unsupported);
  add("lipsum", Unsupported);
}

}  // namespace lattice::jinja
