// Value construction, Python equality/ordering, str()/repr() and iteration.
#include "tokenizer/jinja/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "tokenizer/jinja/cat.h"
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

// Counts nesting on this thread across the mutually recursive printers and comparisons.
thread_local int nesting = 0;

class NestingGuard {
 public:
  NestingGuard() { ++nesting; }
  ~NestingGuard() { --nesting; }
  bool too_deep() const { return nesting > kMaxNesting; }
};

absl::Status TooDeep() {
  return absl::InvalidArgumentError(
      Cat("values nested deeper than ", kMaxNesting, " levels are unsupported"));
}

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

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: fixed notation when the decimal
  // exponent is in [-4, 16), scientific (two-digit exponent at least) otherwise.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exp = std::stoi(sci.substr(e_pos + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    const int point = exp + 1;  // digits before the decimal point
    if (point <= 0) {
      out += "0.";
      out.append(-point, '0');
      out += digits;
    } else if (point >= static_cast<int>(digits.size())) {
      out += digits;
      out.append(point - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, point);
      out += ".";
      out += digits.substr(point);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += ".";
    out += digits.substr(1);
  }
  Append(&out, "e", exp < 0 ? "-" : "+", absl::StrFormat("%02d", exp < 0 ? -exp : exp));
  return out;
}

std::string PyStringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : pystr::Decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\x%02x", static_cast<uint32_t>(c));
    } else if (c < 0x7F || pystr::IsPrintable(c)) {
      pystr::AppendCodePoint(c, &out);
    } else if (c < 0x100) {
      out += absl::StrFormat("\\x%02x", static_cast<uint32_t>(c));
    } else if (c < 0x10000) {
      out += absl::StrFormat("\\u%04x", static_cast<uint32_t>(c));
    } else {
      out += absl::StrFormat("\\U%08x", static_cast<uint32_t>(c));
    }
  }
  out.push_back(quote);
  return out;
}

namespace {

absl::Status Unprintable(const Value& v) {
  return absl::InvalidArgumentError(Cat(
      "printing a ", v.TypeName(), " object is unsupported (Python prints its memory address)"));
}

absl::Status AppendSeqRepr(const List& list, std::string* out) {
  const char* open = "[";
  const char* close = "]";
  switch (list.kind) {
    case SeqKind::kTuple:
      open = "(";
      close = list.items.size() == 1 ? ",)" : ")";
      break;
    case SeqKind::kDictKeys:
      open = "dict_keys([";
      close = "])";
      break;
    case SeqKind::kDictValues:
      open = "dict_values([";
      close = "])";
      break;
    case SeqKind::kDictItems:
      open = "dict_items([";
      close = "])";
      break;
    case SeqKind::kRange:
      if (list.range_step == 1) {
        Append(out, "range(", list.range_start, ", ", list.range_stop, ")");
      } else {
        Append(out, "range(", list.range_start, ", ", list.range_stop, ", ", list.range_step, ")");
      }
      return absl::OkStatus();
    default:
      break;
  }
  out->append(open);
  for (size_t i = 0; i < list.items.size(); ++i) {
    if (i > 0) out->append(", ");
    if (absl::Status s = AppendPyRepr(list.items[i], out); !s.ok()) return s;
  }
  out->append(close);
  return absl::OkStatus();
}

}  // namespace

absl::Status AppendPyRepr(const Value& v, std::string* out) {
  using T = Value::Type;
  NestingGuard guard;
  if (guard.too_deep()) return TooDeep();
  switch (v.type()) {
    case T::kString:
      if (v.is_markup()) {
        Append(out, "Markup(", PyStringRepr(v.str()), ")");
      } else {
        out->append(PyStringRepr(v.str()));
      }
      return absl::OkStatus();
    case T::kList:
      if (v.seq_kind() == SeqKind::kGenerator) return Unprintable(v);
      return AppendSeqRepr(v.list(), out);
    case T::kDict: {
      out->push_back('{');
      bool first = true;
      for (const auto& [k, val] : v.dict().entries) {
        if (!first) out->append(", ");
        first = false;
        if (absl::Status s = AppendPyRepr(k, out); !s.ok()) return s;
        out->append(": ");
        if (absl::Status s = AppendPyRepr(val, out); !s.ok()) return s;
      }
      out->push_back('}');
      return absl::OkStatus();
    }
    case T::kUndefined:
      // jinja2's Undefined has no custom repr inside containers; templates never print one.
      out->append("Undefined");
      return absl::OkStatus();
    default:
      return AppendPyStr(v, out);
  }
}

absl::Status AppendPyStr(const Value& v, std::string* out) {
  using T = Value::Type;
  switch (v.type()) {
    case T::kUndefined:
      return absl::OkStatus();
    case T::kNone:
      out->append("None");
      return absl::OkStatus();
    case T::kBool:
      out->append(v.as_bool() ? "True" : "False");
      return absl::OkStatus();
    case T::kInt:
      Append(out, v.as_int());
      return absl::OkStatus();
    case T::kFloat:
      out->append(PyFloatRepr(v.as_float()));
      return absl::OkStatus();
    case T::kString:
      out->append(v.str());
      return absl::OkStatus();
    case T::kList:
    case T::kDict:
      return AppendPyRepr(v, out);
    case T::kFunction:
      return Unprintable(v);
    case T::kObject: {
      absl::StatusOr<std::string> repr = v.object()->Repr();
      if (!repr.ok()) return repr.status();
      out->append(*repr);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PyStr(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  if (absl::Status s = AppendPyStr(v, &out); !s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> PyRepr(const Value& v) {
  std::string out;
  if (absl::Status s = AppendPyRepr(v, &out); !s.ok()) return s;
  return out;
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
