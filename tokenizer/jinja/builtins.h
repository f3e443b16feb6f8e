// The interpreter's built-ins: operators, filters, tests, methods of str/dict/list, and
// globals (range, namespace, dict, raise_exception, strftime_now), each with jinja2's
// (and Python's) semantics. Internal to the jinja module.
#ifndef LATTICE_TOKENIZER_JINJA_BUILTINS_H_
#define LATTICE_TOKENIZER_JINJA_BUILTINS_H_

#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

// --- arguments ---------------------------------------------------------------------

struct Param {
  std::string_view name;
  std::optional<Value> default_value;  // unset: required
};

// Binds a call's arguments to a Python-like signature; returns the values in parameter
// order. `what` names the callee in errors ("filter 'join'").
absl::StatusOr<std::vector<Value>> BindArgs(std::string_view what, CallArgs args,
                                            std::initializer_list<Param> params);

// The error using an undefined value raises: its hint ("'foo' is undefined").
absl::Status UndefinedError(const Value& v);

// --- operators (operators.cc) --------------------------------------------------------

// + - * / // % ** with Python semantics (ints are 64-bit: overflow is an error).
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b);
absl::StatusOr<Value> Negate(const Value& v, bool negative);
// == != < <= > >= in notin.
absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b);
// Python's `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// Python's printf-style `format % args`.
absl::StatusOr<std::string> PercentFormat(std::string_view format, const Value& args);
// markupsafe.escape.
std::string HtmlEscape(std::string_view s);

// --- filters and tests (filters.cc, filters_seq.cc, tests.cc) -------------------------

absl::StatusOr<Value> ApplyFilter(Interpreter& interp, std::string_view name, const Value& operand,
                                  CallArgs args);
absl::StatusOr<bool> ApplyTest(Interpreter& interp, std::string_view name, const Value& operand,
                               CallArgs args);
// Filters on sequences (filters_seq.cc); nullopt when `name` is not one of them.
std::optional<absl::StatusOr<Value>> ApplySequenceFilter(Interpreter& interp, std::string_view name,
                                                         const Value& operand, CallArgs& args);
// jinja2's make_attrgetter: "a.b.0" looked up item-first at each step.
absl::StatusOr<Value> GetAttributePath(Interpreter& interp, const Value& item,
                                       const Value& attribute);

// --- methods (methods.cc) -----------------------------------------------------------

// The bound method `obj.name` for str, dict and list receivers; nullopt if Python has
// no such method (then jinja2 falls back to item lookup / undefined).
std::optional<Value> GetMethod(const Value& obj, std::string_view name);

// --- globals (globals.cc) -----------------------------------------------------------

// range, dict, namespace, raise_exception, strftime_now, joiner, and jinja2's other
// globals (which fail when called).
void AddGlobals(Scope& scope);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_BUILTINS_H_
