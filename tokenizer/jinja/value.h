// The values a Jinja template computes with, modelled on the Python objects jinja2 sees
// when transformers renders a chat template: undefined, None, bool, int, float, str,
// list/tuple (and the lazy sequences filters return), dict (insertion-ordered), callables
// (built-ins, bound methods, macros) and objects (namespace, loop). Printing follows
// Python's str()/repr() so that `{{ [1, 'a'] }}` renders as jinja2 renders it.
#ifndef LATTICE_TOKENIZER_JINJA_VALUE_H_
#define LATTICE_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace lattice::jinja {

class Value;
class Interpreter;

// How deep values may nest for conversion, printing and comparison. Python raises
// RecursionError near 1000 levels; we fail (or, for ==, compare unequal) past this so
// that hostile input cannot overflow the stack.
inline constexpr int kMaxNesting = 512;

// What kind of Python sequence a list stands for. Python prints each differently and
// some (generators) have no len() and cannot be indexed; keeping the kind lets us fail
// where jinja2 fails instead of silently succeeding.
enum class SeqKind : uint8_t {
  kList,
  kTuple,
  kGenerator,   // what select/map/reverse/items/... return
  kDictKeys,    // dict.keys()
  kDictValues,  // dict.values()
  kDictItems,   // dict.items()
  kRange,       // range(...)
};

struct List {
  std::vector<Value> items;
  SeqKind kind = SeqKind::kList;
  int64_t range_start = 0, range_stop = 0, range_step = 1;  // kRange only, for repr
};

// An insertion-ordered dict. Chat-template dicts are small (message fields, JSON
// schemas), so lookups scan linearly.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Inserts or replaces, keeping the first insertion's position (as Python does).
  void Set(Value key, Value value);
};

// Positional and keyword arguments of a call, already evaluated.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// Anything callable from a template: built-in globals, bound methods, macros.
class Function {
 public:
  virtual ~Function() = default;
  virtual std::string name() const = 0;
  virtual absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) const = 0;
};

// Attribute-bearing objects that are not dicts: namespace() and the loop variable.
class Object {
 public:
  virtual ~Object() = default;
  virtual std::string_view type_name() const = 0;
  // Missing attributes are undefined, as in jinja2.
  virtual Value GetAttr(std::string_view name) const;
  virtual absl::Status SetAttr(std::string_view name, Value value);
  virtual absl::StatusOr<std::string> Repr() const = 0;
};

class Value {
 public:
  enum class Type : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kFunction,
    kObject
  };

  Value() : data_(Undef{}) {}
  static Value Undefined(std::string hint = {}) { return Value(Data(Undef{std::move(hint)})); }
  static Value None() { return Value(Data(NoneT{})); }
  Value(bool b) : data_(b) {}          // NOLINT: literals convert like Python's
  Value(int i) : data_(int64_t{i}) {}  // NOLINT
  Value(int64_t i) : data_(i) {}       // NOLINT
  Value(double d) : data_(d) {}        // NOLINT
  Value(std::string s) : data_(Str{std::move(s), false}) {}         // NOLINT
  Value(std::string_view s) : data_(Str{std::string(s), false}) {}  // NOLINT
  Value(const char* s) : data_(Str{std::string(s), false}) {}       // NOLINT
  static Value Markup(std::string s) { return Value(Data(Str{std::move(s), true})); }
  static Value MakeList(std::vector<Value> items, SeqKind kind = SeqKind::kList);
  static Value MakeList(List list);
  static Value MakeTuple(std::vector<Value> items) {
    return MakeList(std::move(items), SeqKind::kTuple);
  }
  static Value MakeDict(Dict dict = {});
  static Value MakeFunction(std::shared_ptr<const Function> fn) {
    return Value(Data(std::move(fn)));
  }
  static Value MakeObject(std::shared_ptr<Object> obj) { return Value(Data(std::move(obj))); }
  // Fails for JSON nested deeper than kMaxNesting.
  static absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json);

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_undefined() const { return type() == Type::kUndefined; }
  bool is_none() const { return type() == Type::kNone; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_float() const { return type() == Type::kFloat; }
  // Python's numbers.Number, which includes bool.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_list() const { return type() == Type::kList; }
  bool is_dict() const { return type() == Type::kDict; }
  bool is_function() const { return type() == Type::kFunction; }
  bool is_object() const { return type() == Type::kObject; }
  bool is_markup() const { return is_string() && std::get<Str>(data_).markup; }
  // A list or tuple that supports len() and indexing (not a generator or dict view).
  bool is_indexable_list() const;
  SeqKind seq_kind() const { return list().kind; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  // bool and int as an integer (Python's bool is an int).
  int64_t as_integer() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  double as_double() const { return is_float() ? as_float() : static_cast<double>(as_integer()); }
  const std::string& str() const { return std::get<Str>(data_).s; }
  const std::string& undefined_hint() const { return std::get<Undef>(data_).hint; }
  const List& list() const { return *std::get<std::shared_ptr<List>>(data_); }
  const Dict& dict() const { return *std::get<std::shared_ptr<Dict>>(data_); }
  const std::shared_ptr<const Function>& function() const {
    return std::get<std::shared_ptr<const Function>>(data_);
  }
  const std::shared_ptr<Object>& object() const { return std::get<std::shared_ptr<Object>>(data_); }

  // Python truthiness (generators are always true, as in Python).
  bool Truthy() const;
  // The Python type name used in error messages: 'str', 'dict', 'NoneType', ...
  std::string TypeName() const;
  // Identity of the underlying list/dict/function/object, for `is sameas`.
  const void* identity() const;

 private:
  struct Undef {
    std::string hint;
  };
  struct NoneT {};
  struct Str {
    std::string s;
    bool markup;  // a markupsafe.Markup (from `safe`/`escape`): `+` escapes the other side
  };
  using Data =
      std::variant<Undef, NoneT, bool, int64_t, double, Str, std::shared_ptr<List>,
                   std::shared_ptr<Dict>, std::shared_ptr<const Function>, std::shared_ptr<Object>>;
  explicit Value(Data data) : data_(std::move(data)) {}

  Data data_;
};

// Python `==` (numbers compare across int/float/bool; list != tuple; undefined == undefined).
bool PyEquals(const Value& a, const Value& b);
// Python `<`; TypeError (as a status) for unorderable types.
absl::StatusOr<bool> PyLess(const Value& a, const Value& b);

// TypeError for values Python cannot hash (lists, dicts, dict views, tuples holding
// them): they cannot be dict keys, set members or `in dict` operands.
absl::Status CheckHashable(const Value& v);

// Python str() and repr(). Fail for values whose Python text is an address
// (generators, functions), which no template can depend on.
absl::StatusOr<std::string> PyStr(const Value& v);
absl::StatusOr<std::string> PyRepr(const Value& v);
absl::Status AppendPyStr(const Value& v, std::string* out);
absl::Status AppendPyRepr(const Value& v, std::string* out);

// Python repr() of a float: shortest round-trip digits, '1.0', '1e+16', 'inf', 'nan'.
std::string PyFloatRepr(double d);
// Python repr() of a str.
std::string PyStringRepr(std::string_view s);

// Iterating a value as Python's iter() would: list items, dict keys, string characters,
// nothing for undefined. TypeError for numbers, None, functions.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// Python len(); TypeError for values without one (generators, numbers).
absl::StatusOr<int64_t> PyLen(const Value& v);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_VALUE_H_
