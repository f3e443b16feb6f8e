// jinja2's tests (`x is defined`, `x is divisibleby 3`, ...), as jinja2/tests.py defines
// them on Python values.
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

absl::StatusOr<bool> Modulo(const Value& v, const Value& divisor, int64_t expect) {
  JINJA_ASSIGN_OR_RETURN(Value rest, BinaryOp("%", v, divisor));
  return PyEquals(rest, Value(expect));
}

// str(value).islower() / isupper().
absl::StatusOr<bool> CaseTest(const Value& v, bool lower) {
  JINJA_ASSIGN_OR_RETURN(std::string s, PyStr(v));
  bool any_cased = false;
  for (char32_t c : pystr::Decode(s)) {
    if (lower ? pystr::IsUpper(c) : pystr::IsLower(c)) return false;
    any_cased |= lower ? pystr::IsLower(c) : pystr::IsUpper(c);
  }
  return any_cased;
}

}  // namespace

absl::StatusOr<bool> ApplyTest(Interpreter&, std::string_view name, const Value& v, CallArgs args) {
  const std::string what = Cat("test '", name, "'");
  auto no_args = [&]() { return BindArgs(what, std::move(args), {}).status(); };
  auto one_arg = [&](std::string_view param) -> absl::StatusOr<Value> {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, BindArgs(what, std::move(args), {{param, {}}}));
    return a[0];
  };
  if (name == "defined" || name == "undefined") {
    JINJA_RETURN_IF_ERROR(no_args());
    return v.is_undefined() == (name == "undefined");
  }
  if (name == "none") {
    JINJA_RETURN_IF_ERROR(no_args());
    return v.is_none();
  }
  if (name == "boolean" || name == "true" || name == "false") {
    JINJA_RETURN_IF_ERROR(no_args());
    if (!v.is_bool()) return false;
    return name == "boolean" || v.as_bool() == (name == "true");
  }
  if (name == "integer" || name == "float" || name == "number" || name == "string" ||
      name == "mapping" || name == "callable" || name == "iterable" || name == "sequence" ||
      name == "escaped") {
    JINJA_RETURN_IF_ERROR(no_args());
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "escaped") return v.is_markup();
    // Undefined has __call__, __iter__, __len__ and __getitem__ in jinja2.
    if (name == "callable") {
      return v.is_function() || v.is_undefined() ||
             (v.is_object() && v.object()->type_name() == "LoopContext");
    }
    if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
    return v.is_undefined() || v.is_string() || v.is_dict() ||
           (v.is_list() && v.seq_kind() != SeqKind::kGenerator);
  }
  if (name == "odd" || name == "even") {
    JINJA_RETURN_IF_ERROR(no_args());
    return Modulo(v, Value(2), name == "odd" ? 1 : 0);
  }
  if (name == "divisibleby") {
    JINJA_ASSIGN_OR_RETURN(Value num, one_arg("num"));
    return Modulo(v, num, 0);
  }
  if (name == "lower" || name == "upper") {
    JINJA_RETURN_IF_ERROR(no_args());
    return CaseTest(v, name == "lower");
  }
  if (name == "in") {
    JINJA_ASSIGN_OR_RETURN(Value seq, one_arg("seq"));
    return Contains(seq, v);
  }
  if (name == "sameas") {
    JINJA_ASSIGN_OR_RETURN(Value other, one_arg("other"));
    // Python identity: the singletons and small ints compare by value; containers by object.
    if (v.type() != other.type()) return false;
    if (v.is_none() || v.is_bool() || v.is_undefined()) return PyEquals(v, other);
    if (v.is_int()) return v.as_int() == other.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    if (v.identity() != nullptr) return v.identity() == other.identity();
    return absl::InvalidArgumentError(
        "unsupported: 'sameas' on strings and floats (Python object identity)");
  }
  static constexpr std::pair<std::string_view, std::string_view> kComparisons[] = {
      {"==", "=="}, {"eq", "=="}, {"equalto", "=="},    {"!=", "!="}, {"ne", "!="},
      {">", ">"},   {"gt", ">"},  {"greaterthan", ">"}, {">=", ">="}, {"ge", ">="},
      {"<", "<"},   {"lt", "<"},  {"lessthan", "<"},    {"<=", "<="}, {"le", "<="}};
  for (const auto& [test, op] : kComparisons) {
    if (name != test) continue;
    JINJA_ASSIGN_OR_RETURN(Value other, one_arg("other"));
    return CompareOp(op, v, other);
  }
  if (name == "filter" || name == "test") {
    // `'tojson' is filter`: whether jinja2 (as transformers sets it up) has that name.
    JINJA_RETURN_IF_ERROR(no_args());
    if (!v.is_string()) return false;
    return name == "filter" ? IsJinjaFilterName(v.str()) : IsJinjaTestName(v.str());
  }
  return absl::InvalidArgumentError(Cat("unknown test '", name, "'"));
}

}  // namespace lattice::jinja
