// jinja2's filters on scalars and strings, plus transformers' `tojson`, and the dispatch
// to the sequence filters (filters_seq.cc). Semantics follow jinja2 3.1's filters.py.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/json_dump.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

// Known to jinja2, not needed by chat templates.
constexpr std::string_view kUnsupportedFilters[] = {
    "filesizeformat", "forceescape", "groupby",   "pprint", "random",   "slice",
    "striptags",      "truncate",    "urlencode", "urlize", "wordwrap", "xmlattr"};

// jinja2's soft_str: str() of anything (undefined is '').
absl::StatusOr<std::string> SoftStr(const Value& v) { return PyStr(v); }

// Python's int(str, base) grammar: whitespace, sign, digits with single underscores.
std::optional<int64_t> ParsePyInt(std::string_view s, int base) {
  std::string t = pystr::Strip(s, std::nullopt, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  if ((base == 16 || base == 8 || base == 2 || base == 0) && i + 1 < t.size() && t[i] == '0') {
    const char p = absl::ascii_tolower(t[i + 1]);
    const int prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed != 0 && (base == 0 || base == prefixed)) {
      base = prefixed;
      i += 2;
      if (i < t.size() && t[i] == '_') ++i;
    }
  }
  if (base == 0) base = 10;
  if (i >= t.size()) return std::nullopt;
  __int128 v = 0;
  bool last_underscore = true;
  for (; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '_') {
      if (last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    int d = absl::ascii_isdigit(c)   ? c - '0'
            : absl::ascii_isalpha(c) ? absl::ascii_tolower(c) - 'a' + 10
                                     : 99;
    if (d >= base) return std::nullopt;
    v = v * base + d;
    if (v > static_cast<__int128>(INT64_MAX) + 1) return std::nullopt;
    last_underscore = false;
  }
  if (last_underscore) return std::nullopt;
  if (negative) v = -v;
  if (v > INT64_MAX || v < INT64_MIN) return std::nullopt;
  return static_cast<int64_t>(v);
}

// Python's float(str) grammar.
std::optional<double> ParsePyFloat(std::string_view s) {
  std::string t = pystr::Strip(s, std::nullopt, true, true);
  std::string lower = absl::AsciiStrToLower(t);
  std::string_view body = lower;
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") return negative ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  std::string clean;
  bool digits = false, prev_digit = false;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '_') {
      if (!prev_digit || i + 1 >= t.size() || !absl::ascii_isdigit(t[i + 1])) return std::nullopt;
      continue;
    }
    if (absl::ascii_isdigit(c))
      digits = true;
    else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-')
      return std::nullopt;
    prev_digit = absl::ascii_isdigit(c);
    clean.push_back(c);
  }
  if (!digits) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return std::nullopt;
  return v;
}

absl::StatusOr<Value> IntFilter(const Value& v, const Value& default_value, const Value& base) {
  if (v.is_undefined()) return UndefinedError(v);  // Undefined.__int__ raises, uncaught
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(v.as_integer());
  auto from_float = [&](double d) -> absl::StatusOr<Value> {
    if (std::isnan(d)) return default_value;
    if (std::isinf(d))
      return absl::InvalidArgumentError("cannot convert float infinity to integer");
    if (d >= 9.3e18 || d <= -9.3e18)
      return absl::InvalidArgumentError("integer overflow (integers are limited to 64 bits)");
    return Value(static_cast<int64_t>(std::trunc(d)));
  };
  if (v.is_float()) return from_float(v.as_float());
  if (v.is_string()) {
    if (!base.is_int()) return absl::InvalidArgumentError("int() base must be an integer");
    if (std::optional<int64_t> i = ParsePyInt(v.str(), static_cast<int>(base.as_int())))
      return Value(*i);
    if (std::optional<double> d = ParsePyFloat(v.str())) return from_float(*d);
  }
  return default_value;
}

std::string JinjaTitle(std::string_view s) {
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || pystr::IsSpace(c);
  };
  std::string out;
  bool at_start = true;
  for (char32_t c : pystr::Decode(s)) {
    std::string one;
    pystr::AppendCodePoint(c, &one);
    if (is_sep(c)) {
      out += one;
      at_start = true;
    } else {
      out += at_start ? pystr::Upper(one) : pystr::Lower(one);
      at_start = false;
    }
  }
  return out;
}

absl::StatusOr<Value> Round(const Value& v, const Value& precision_v, const Value& method_v) {
  if (!method_v.is_string() ||
      (method_v.str() != "common" && method_v.str() != "ceil" && method_v.str() != "floor")) {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        Cat("type ", v.TypeName(), " doesn't define __round__ method"));
  }
  if (!precision_v.is_int() && !precision_v.is_bool()) {
    return absl::InvalidArgumentError("precision must be an integer");
  }
  const int64_t precision = precision_v.as_integer();
  const std::string& method = method_v.str();
  if (method != "common") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double r =
        method == "ceil" ? std::ceil(v.as_double() * scale) : std::floor(v.as_double() * scale);
    return Value(r / scale);
  }
  if (!v.is_float()) {
    if (precision >= 0) return Value(v.as_integer());
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(
        static_cast<int64_t>(std::nearbyint(static_cast<double>(v.as_integer()) / scale) * scale));
  }
  const double d = v.as_float();
  if (!std::isfinite(d)) return Value(d);
  if (precision < 0) {
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(std::nearbyint(d / scale) * scale);
  }
  if (precision > 300) return Value(d);
  // The correctly rounded decimal string (ties to even on the exact binary value), as
  // Python's round() computes it.
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), d);
  return Value(std::strtod(buf, nullptr));
}

absl::StatusOr<Value> ToJson(const Value& v, std::vector<Value> a) {
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  JsonDumpOptions options;
  options.ensure_ascii = a[0].Truthy();
  if (a[1].is_string()) {
    options.indent = a[1].str();
  } else if (a[1].is_int() || a[1].is_bool()) {
    options.indent = std::string(std::max<int64_t>(a[1].as_integer(), 0), ' ');
  } else if (!a[1].is_none()) {
    return absl::InvalidArgumentError("tojson: indent must be an int, a str or None");
  }
  if (!a[2].is_none()) {
    if (!a[2].is_indexable_list() || a[2].list().items.size() != 2 ||
        !a[2].list().items[0].is_string() || !a[2].list().items[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
    }
    options.item_separator = a[2].list().items[0].str();
    options.key_separator = a[2].list().items[1].str();
  }
  options.sort_keys = a[3].Truthy();
  JINJA_ASSIGN_OR_RETURN(std::string json, JsonDumps(v, options));
  return Value(std::move(json));
}

}  // namespace

absl::StatusOr<Value> ApplyFilter(Interpreter& interp, std::string_view name, const Value& v,
                                  CallArgs args) {
  if (std::optional<absl::StatusOr<Value>> r = ApplySequenceFilter(interp, name, v, args)) {
    return *std::move(r);
  }
  const std::string what = Cat("filter '", name, "'");
  auto bind = [&](std::initializer_list<Param> params) {
    return BindArgs(what, std::move(args), params);
  };
  if (name == "tojson") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"ensure_ascii", Value(false)},
                                                       {"indent", Value::None()},
                                                       {"separators", Value::None()},
                                                       {"sort_keys", Value(false)}}));
    return ToJson(v, std::move(a));
  }
  if (name == "default" || name == "d") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"default_value", Value("")}, {"boolean", Value(false)}}));
    if (v.is_undefined() || (a[1].Truthy() && !v.Truthy())) return a[0];
    return v;
  }
  if (name == "trim") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"chars", Value::None()}}));
    JINJA_ASSIGN_OR_RETURN(std::string s, SoftStr(v));
    if (!a[0].is_none() && !a[0].is_string())
      return absl::InvalidArgumentError("strip arg must be None or str");
    return Value(pystr::Strip(
        s, a[0].is_none() ? std::nullopt : std::optional<std::string>(a[0].str()), true, true));
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title" ||
      name == "string" || name == "safe" || name == "e" || name == "escape" ||
      name == "wordcount") {
    JINJA_RETURN_IF_ERROR(bind({}).status());
    if (name == "string" && v.is_markup()) return v;
    if ((name == "e" || name == "escape") && v.is_markup()) return v;
    JINJA_ASSIGN_OR_RETURN(std::string s, SoftStr(v));
    if (name == "upper") return Value(pystr::Upper(s));
    if (name == "lower") return Value(pystr::Lower(s));
    if (name == "capitalize") return Value(pystr::Capitalize(s));
    if (name == "title") return Value(JinjaTitle(s));
    if (name == "safe") return Value::Markup(std::move(s));
    if (name == "e" || name == "escape") return Value::Markup(HtmlEscape(s));
    if (name == "wordcount") {
      int64_t words = 0;
      bool in_word = false;
      for (char32_t c : pystr::Decode(s)) {
        const bool w = pystr::IsWordChar(c);
        words += w && !in_word;
        in_word = w;
      }
      return Value(words);
    }
    return Value(std::move(s));
  }
  if (name == "replace") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"old", {}}, {"new", {}}, {"count", Value::None()}}));
    JINJA_ASSIGN_OR_RETURN(std::string s, SoftStr(v));
    JINJA_ASSIGN_OR_RETURN(std::string old_s, PyStr(a[0]));
    JINJA_ASSIGN_OR_RETURN(std::string new_s, PyStr(a[1]));
    int64_t count = -1;
    if (!a[2].is_none()) {
      if (!a[2].is_int() && !a[2].is_bool())
        return absl::InvalidArgumentError("replace: count must be an integer");
      count = a[2].as_integer();
    }
    return Value(pystr::Replace(s, old_s, new_s, count));
  }
  if (name == "center") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"width", Value(80)}}));
    JINJA_ASSIGN_OR_RETURN(std::string s, SoftStr(v));
    if (!a[0].is_int() && !a[0].is_bool())
      return absl::InvalidArgumentError("center: width must be an integer");
    return Value(pystr::Pad(s, a[0].as_integer(), U' ', 0));
  }
  if (name == "indent") {
    JINJA_ASSIGN_OR_RETURN(
        std::vector<Value> a,
        bind({{"width", Value(4)}, {"first", Value(false)}, {"blank", Value(false)}}));
    if (!v.is_string()) {
      return absl::InvalidArgumentError(
          Cat("unsupported operand type(s) for +=: '", v.TypeName(), "' and 'str'"));
    }
    std::string indention;
    if (a[0].is_string()) {
      indention = a[0].str();
    } else if (a[0].is_int() || a[0].is_bool()) {
      indention = std::string(std::max<int64_t>(a[0].as_integer(), 0), ' ');
    } else {
      return absl::InvalidArgumentError("indent: width must be an int or a str");
    }
    std::vector<std::string> lines = pystr::SplitLines(v.str() + "\n", false);
    std::string rv;
    if (a[2].Truthy()) {
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) rv += "\n" + indention;
        rv += lines[i];
      }
    } else {
      rv = lines.empty() ? "" : lines[0];
      for (size_t i = 1; i < lines.size(); ++i) {
        rv += "\n";
        if (!lines[i].empty()) rv += indention;
        rv += lines[i];
      }
    }
    if (a[1].Truthy()) rv = indention + rv;
    return v.is_markup() ? Value::Markup(std::move(rv)) : Value(std::move(rv));
  }
  if (name == "int") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"default", Value(0)}, {"base", Value(10)}}));
    return IntFilter(v, a[0], a[1]);
  }
  if (name == "float") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"default", Value(0.0)}}));
    if (v.is_undefined()) return UndefinedError(v);  // Undefined.__float__ raises
    if (v.is_number()) return Value(v.as_double());
    if (v.is_string()) {
      if (std::optional<double> d = ParsePyFloat(v.str())) return Value(*d);
    }
    return a[0];
  }
  if (name == "abs") {
    JINJA_RETURN_IF_ERROR(bind({}).status());
    if (v.is_float()) return Value(std::fabs(v.as_float()));
    if (v.is_int() || v.is_bool()) return Negate(v, v.as_integer() < 0);
    return absl::InvalidArgumentError(Cat("bad operand type for abs(): '", v.TypeName(), "'"));
  }
  if (name == "round") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"precision", Value(0)}, {"method", Value("common")}}));
    return Round(v, a[0], a[1]);
  }
  if (name == "format") {
    if (!args.args.empty() && !args.kwargs.empty()) {
      return absl::InvalidArgumentError(
          "can't handle positional and keyword arguments at the same time");
    }
    JINJA_ASSIGN_OR_RETURN(std::string s, SoftStr(v));
    Value format_args;
    if (!args.kwargs.empty()) {
      Dict d;
      for (auto& [k, val] : args.kwargs) d.Set(Value(k), std::move(val));
      format_args = Value::MakeDict(std::move(d));
    } else {
      format_args = Value::MakeTuple(std::move(args.args));
    }
    JINJA_ASSIGN_OR_RETURN(std::string out, PercentFormat(s, format_args));
    return Value(std::move(out));
  }
  if (name == "attr") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"name", {}}}));
    if (!a[0].is_string()) return absl::InvalidArgumentError("attribute name must be a string");
    if (v.is_undefined()) return UndefinedError(v);
    if (v.is_object()) return v.object()->GetAttr(a[0].str());
    if (std::optional<Value> m = GetMethod(v, a[0].str())) return *std::move(m);
    return Value::Undefined(Cat("'", v.TypeName(), " object' has no attribute '", a[0].str(), "'"));
  }
  for (std::string_view unsupported : kUnsupportedFilters) {
    if (name == unsupported)
      return absl::InvalidArgumentError(Cat("unsupported filter '", name, "'"));
  }
  return absl::InvalidArgumentError(Cat("unknown filter '", name, "'"));
}

}  // namespace lattice::jinja
