// Value construction, JSON conversion, Python equality/ordering, iteration and len().
#include "tokenizer/jinja/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/nesting.h"
#include "tokenizer/jinja/pystr.h"

namespace lattice::jinja {

const Value* Dict::Find(const Value& key) const {
  if (key.is_string()) return Find(std::string_view(key.str()));
  for (const auto& [k, v] : entries) {
    if (PyEquals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (PyEquals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Object::GetAttr(std::string_view name) const {
  return Value::Undefined(Cat("'", type_name(), " object' has no attribute '", name, "'"));
}

absl::Status Object::SetAttr(std::string_view, Value) {
  return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
}

Value Value::MakeList(std::vector<Value> items, SeqKind kind) {
  auto list = std::make_shared<List>();
  list->items = std::move(items);
  list->kind = kind;
  return Value(Data(std::move(list)));
}

Value Value::MakeList(List list) { return Value(Data(std::make_shared<List>(std::move(list)))); }

Value Value::MakeDict(Dict dict) { return Value(Data(std::make_shared<Dict>(std::move(dict)))); }

namespace {

absl::StatusOr<Value> FromJsonAt(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxNesting) return TooDeep();
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = json.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        absl::StatusOr<Value> v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      dict.entries.reserve(json.size());
      // JSON object keys are unique, so no need for Set's duplicate check.
      for (const auto& [k, item] : json.items()) {
        absl::StatusOr<Value> v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        dict.entries.emplace_back(Value(k), *std::move(v));
      }
      return Value::MakeDict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError("unsupported JSON value (binary)");
  }
}

}  // namespace

absl::StatusOr<Value> Value::FromJson(const nlohmann::ordered_json& json) {
  return FromJsonAt(json, 0);
}

bool Value::is_indexable_list() const {
  if (!is_list()) return false;
  const SeqKind k = list().kind;
  return k == SeqKind::kList || k == SeqKind::kTuple || k == SeqKind::kRange;
}

bool Value::Truthy() const {
  switch (type()) {
    case Type::kUndefined:
    case Type::kNone:
      return false;
    case Type::kBool:
      return as_bool();
    case Type::kInt:
      return as_int() != 0;
    case Type::kFloat:
      return as_float() != 0.0;
    case Type::kString:
      return !str().empty();
    case Type::kList:
      return list().kind == SeqKind::kGenerator || !list().items.empty();
    case Type::kDict:
      return !dict().entries.empty();
    case Type::kFunction:
    case Type::kObject:
      return true;
  }
  return false;
}

std::string Value::TypeName() const {
  switch (type()) {
    case Type::kUndefined:
      return "Undefined";
    case Type::kNone:
      return "NoneType";
    case Type::kBool:
      return "bool";
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kString:
      return "str";
    case Type::kList:
      switch (list().kind) {
        case SeqKind::kList:
          return "list";
        case SeqKind::kTuple:
          return "tuple";
        case SeqKind::kGenerator:
          return "generator";
        case SeqKind::kDictKeys:
          return "dict_keys";
        case SeqKind::kDictValues:
          return "dict_values";
        case SeqKind::kDictItems:
          return "dict_items";
        case SeqKind::kRange:
          return "range";
      }
      return "list";
    case Type::kDict:
      return "dict";
    case Type::kFunction:
      return "function";
    case Type::kObject:
      return std::string(object()->type_name());
  }
  return "object";
}

const void* Value::identity() const {
  switch (type()) {
    case Type::kList:
      return &list();
    case Type::kDict:
      return &dict();
    case Type::kFunction:
      return function().get();
    case Type::kObject:
      return object().get();
    default:
      return nullptr;
  }
}

namespace {

bool SameSeqFamily(SeqKind a, SeqKind b) {
  auto family = [](SeqKind k) {
    return k == SeqKind::kList ? 0 : k == SeqKind::kTuple ? 1 : k == SeqKind::kRange ? 2 : 3;
  };
  return family(a) == family(b) && family(a) != 3;
}

}  // namespace

bool PyEquals(const Value& a, const Value& b) {
  using T = Value::Type;
  NestingGuard guard;
  if (guard.too_deep()) return false;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_integer() == b.as_integer();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case T::kUndefined:
    case T::kNone:
      return true;
    case T::kString:
      return a.str() == b.str();
    case T::kList: {
      const List& x = a.list();
      const List& y = b.list();
      if (!SameSeqFamily(x.kind, y.kind)) {
        return &x == &y;
      }
      if (x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!PyEquals(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case T::kDict: {
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, v] : x.entries) {
        const Value* other = y.Find(k);
        if (other == nullptr || !PyEquals(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

absl::StatusOr<bool> PyLess(const Value& a, const Value& b) {
  NestingGuard guard;
  if (guard.too_deep()) return TooDeep();
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_integer() < b.as_integer();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.seq_kind() == b.seq_kind() &&
      (a.seq_kind() == SeqKind::kList || a.seq_kind() == SeqKind::kTuple)) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (PyEquals(x[i], y[i])) continue;
      return PyLess(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(
      Cat("'<' not supported between instances of '", a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::Status CheckHashable(const Value& v) {
  if (v.is_dict() || (v.is_list() && v.seq_kind() != SeqKind::kTuple &&
                      v.seq_kind() != SeqKind::kGenerator && v.seq_kind() != SeqKind::kRange)) {
    return absl::InvalidArgumentError(Cat("unhashable type: '", v.TypeName(), "'"));
  }
  if (v.is_list() && v.seq_kind() == SeqKind::kTuple) {
    for (const Value& item : v.list().items) {
      if (absl::Status s = CheckHashable(item); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return std::vector<Value>{};
    case Value::Type::kList:
      return v.list().items;
    case Value::Type::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().entries.size());
      for (const auto& [k, val] : v.dict().entries) keys.push_back(k);
      return keys;
    }
    case Value::Type::kString: {
      std::vector<Value> chars;
      std::string one;
      for (char32_t c : pystr::Decode(v.str())) {
        one.clear();
        pystr::AppendCodePoint(c, &one);
        chars.emplace_back(one);
      }
      return chars;
    }
    default:
      return absl::InvalidArgumentError(Cat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> PyLen(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return 0;
    case Value::Type::kString:
      return pystr::Length(v.str());
    case Value::Type::kList:
      if (v.seq_kind() == SeqKind::kGenerator) break;
      return static_cast<int64_t>(v.list().items.size());
    case Value::Type::kDict:
      return static_cast<int64_t>(v.dict().entries.size());
    default:
      break;
  }
  return absl::InvalidArgumentError(Cat("object of type '", v.TypeName(), "' has no len()"));
}

}  // namespace lattice::jinja
