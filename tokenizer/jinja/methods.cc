// Python methods callable on template values: str (strip, split, startswith, format, ...),
// dict (get, items, keys, values) and list/tuple (index, count). Templates reach them as
// `x.strip()` because jinja2 exposes Python attributes. Mutating methods (append,
// update, pop, ...) fail as transformers' ImmutableSandboxedEnvironment makes them fail.
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

constexpr std::string_view kStrMethods[] = {
    "capitalize",   "casefold",    "center",    "count",      "encode",       "endswith",
    "expandtabs",   "find",        "format",    "format_map", "index",        "isalnum",
    "isalpha",      "isascii",     "isdecimal", "isdigit",    "isidentifier", "islower",
    "isnumeric",    "isprintable", "isspace",   "istitle",    "isupper",      "join",
    "ljust",        "lower",       "lstrip",    "maketrans",  "partition",    "removeprefix",
    "removesuffix", "replace",     "rfind",     "rindex",     "rjust",        "rpartition",
    "rsplit",       "rstrip",      "split",     "splitlines", "startswith",   "strip",
    "swapcase",     "title",       "translate", "upper",      "zfill"};
constexpr std::string_view kDictMethods[] = {"clear",      "copy",   "fromkeys", "get",
                                             "items",      "keys",   "pop",      "popitem",
                                             "setdefault", "update", "values"};
constexpr std::string_view kListMethods[] = {"append", "clear",   "copy",   "count",
                                             "extend", "index",   "insert", "pop",
                                             "remove", "reverse", "sort"};
constexpr std::string_view kTupleMethods[] = {"count", "index"};
constexpr std::string_view kUnsafeMethods[] = {"clear",  "pop",     "popitem", "setdefault",
                                               "update", "append",  "extend",  "insert",
                                               "remove", "reverse", "sort"};

template <size_t N>
bool In(const std::string_view (&names)[N], std::string_view name) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

absl::StatusOr<std::optional<std::string>> OptionalString(const Value& v, std::string_view what) {
  if (v.is_none()) return std::optional<std::string>();
  if (!v.is_string()) {
    return absl::InvalidArgumentError(Cat(what, " arg must be None or str"));
  }
  return std::optional<std::string>(v.str());
}

absl::StatusOr<int64_t> Int(const Value& v, std::string_view what) {
  if (v.is_int() || v.is_bool()) return v.as_integer();
  return absl::InvalidArgumentError(
      Cat(what, ": an integer is required, not '", v.TypeName(), "'"));
}

// str.startswith / endswith with a str or tuple of str, and optional start/end.
absl::StatusOr<Value> StartsEnds(const std::string& s, std::vector<Value> a, bool starts) {
  std::string_view hay = s;
  std::string window;
  if (a.size() > 1 && !(a[1].is_none() && (a.size() < 3 || a[2].is_none()))) {
    const std::u32string chars = pystr::Decode(s);
    const int64_t n = static_cast<int64_t>(chars.size());
    auto clamp = [n](int64_t i) { return i < 0 ? std::max<int64_t>(i + n, 0) : std::min(i, n); };
    int64_t start = 0, end = n;
    if (!a[1].is_none()) {
      JINJA_ASSIGN_OR_RETURN(start, Int(a[1], "start"));
      start = clamp(start);
    }
    if (a.size() > 2 && !a[2].is_none()) {
      JINJA_ASSIGN_OR_RETURN(end, Int(a[2], "end"));
      end = clamp(end);
    }
    if (start > end) return Value(false);
    window = pystr::Encode(std::u32string_view(chars).substr(start, end - start));
    hay = window;
  }
  std::vector<std::string> needles;
  if (a[0].is_string()) {
    needles.push_back(a[0].str());
  } else if (a[0].is_list() && a[0].seq_kind() == SeqKind::kTuple) {
    for (const Value& v : a[0].list().items) {
      if (!v.is_string())
        return absl::InvalidArgumentError("tuple for startswith/endswith must only contain str");
      needles.push_back(v.str());
    }
  } else {
    return absl::InvalidArgumentError(Cat(starts ? "startswith" : "endswith",
                                          " first arg must be str or a tuple of str, not ",
                                          a[0].TypeName()));
  }
  for (const std::string& n : needles) {
    if (starts ? hay.substr(0, n.size()) == n
               : (hay.size() >= n.size() && hay.substr(hay.size() - n.size()) == n)) {
      return Value(true);
    }
  }
  return Value(false);
}

// A subset of Python's format-spec mini-language: [[fill]align][sign][0][width][.precision][type].
absl::StatusOr<std::string> FormatSpec(const Value& v, std::string_view spec) {
  if (spec.empty()) return PyStr(v);
  std::u32string sp = pystr::Decode(spec);
  size_t i = 0;
  char32_t fill = U' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (sp.size() >= 2 && is_align(sp[1])) {
    fill = sp[0];
    align = static_cast<char>(sp[1]);
    i = 2;
  } else if (!sp.empty() && is_align(sp[0])) {
    align = static_cast<char>(sp[0]);
    i = 1;
  }
  char sign = 0;
  if (i < sp.size() && (sp[i] == '+' || sp[i] == '-' || sp[i] == ' '))
    sign = static_cast<char>(sp[i++]);
  if (i < sp.size() && sp[i] == '0') {
    if (align == 0) {
      fill = U'0';
      align = '=';
    }
    ++i;
  }
  int64_t width = 0;
  while (i < sp.size() && sp[i] >= '0' && sp[i] <= '9') width = width * 10 + (sp[i++] - '0');
  int precision = -1;
  if (i < sp.size() && sp[i] == '.') {
    ++i;
    precision = 0;
    while (i < sp.size() && sp[i] >= '0' && sp[i] <= '9')
      precision = precision * 10 + (sp[i++] - '0');
  }
  char type = 0;
  if (i < sp.size()) type = static_cast<char>(sp[i++]);
  if (i != sp.size())
    return absl::InvalidArgumentError(Cat("unsupported format spec '", spec, "'"));
  std::string body;
  bool numeric = false;
  if (v.is_string()) {
    if (type != 0 && type != 's') return absl::InvalidArgumentError("unknown format code for str");
    body = v.str();
    if (precision >= 0) body = pystr::Encode(pystr::Decode(body).substr(0, precision));
  } else if (v.is_number()) {
    numeric = true;
    char buf[512];
    if ((type == 0 || type == 'd') && !v.is_float()) {
      if (precision >= 0)
        return absl::InvalidArgumentError("precision not allowed in integer format specifier");
      body = Cat(v.as_integer());
    } else if (type == 'f' || type == 'F' || type == 'e' || type == 'E' || type == 'g' ||
               type == 'G' || type == '%') {
      double d = v.as_double();
      if (type == '%') d *= 100;
      const char conv = type == '%' ? 'f' : type;
      std::snprintf(buf, sizeof(buf),
                    Cat("%.", precision < 0 ? 6 : precision, std::string(1, conv)).c_str(), d);
      body = buf;
      if (type == '%') body += "%";
    } else if (type == 0 && v.is_float() && precision < 0) {
      body = PyFloatRepr(v.as_float());
    } else {
      return absl::InvalidArgumentError(Cat("unsupported format spec '", spec, "'"));
    }
    if (sign == '+' && body[0] != '-') body = "+" + body;
    if (sign == ' ' && body[0] != '-') body = " " + body;
  } else {
    return absl::InvalidArgumentError(Cat("unsupported format of a ", v.TypeName()));
  }
  const int64_t len = pystr::Length(body);
  if (width <= len) return body;
  if (align == 0) align = numeric ? '>' : '<';
  if (align == '=') {
    std::string prefix;
    if (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) {
      prefix = body.substr(0, 1);
      body = body.substr(1);
    }
    std::string pad;
    for (int64_t k = 0; k < width - len; ++k) pystr::AppendCodePoint(fill, &pad);
    return prefix + pad + body;
  }
  return pystr::Pad(body, width, fill, align == '<' ? -1 : align == '>' ? 1 : 0);
}

// str.format: {} {0} {name} with optional !r/!s and a format spec.
absl::StatusOr<Value> StrFormat(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos)
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    char conversion = 0;
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size())
        return absl::InvalidArgumentError("invalid conversion in format string");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(".[") != std::string::npos) {
      return absl::InvalidArgumentError(
          "unsupported: attribute or index lookups in str.format fields");
    }
    Value v;
    if (field.empty() || absl::ascii_isdigit(field[0])) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index >= args.args.size()) {
        return absl::InvalidArgumentError(
            Cat("Replacement index ", index, " out of range for positional args tuple"));
      }
      v = args.args[index];
    } else {
      bool found = false;
      for (const auto& [k, val] : args.kwargs) {
        if (k == field) {
          v = val;
          found = true;
        }
      }
      if (!found) return absl::InvalidArgumentError(Cat("KeyError: '", field, "'"));
    }
    if (conversion == 'r') {
      JINJA_ASSIGN_OR_RETURN(std::string r, PyRepr(v));
      v = Value(std::move(r));
    } else if (conversion == 's') {
      JINJA_ASSIGN_OR_RETURN(std::string s, PyStr(v));
      v = Value(std::move(s));
    } else if (conversion != 0) {
      return absl::InvalidArgumentError("unknown conversion specifier in format string");
    }
    JINJA_ASSIGN_OR_RETURN(std::string piece, FormatSpec(v, spec));
    out += piece;
  }
  return Value(std::move(out));
}

template <typename Pred>
Value AllChars(const std::string& s, Pred pred) {
  if (s.empty()) return Value(false);
  for (char32_t c : pystr::Decode(s)) {
    if (!pred(c)) return Value(false);
  }
  return Value(true);
}

absl::StatusOr<Value> CallStrMethod(const Value& self, std::string_view name, CallArgs args) {
  const std::string& s = self.str();
  const std::string what = Cat("str.", name);
  auto bind = [&](std::initializer_list<Param> params) {
    return BindArgs(what, std::move(args), params);
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"chars", Value::None()}}));
    JINJA_ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalString(a[0], name));
    return Value(pystr::Strip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"sep", Value::None()}, {"maxsplit", Value(-1)}}));
    JINJA_ASSIGN_OR_RETURN(std::optional<std::string> sep, OptionalString(a[0], name));
    JINJA_ASSIGN_OR_RETURN(int64_t maxsplit, Int(a[1], "maxsplit"));
    std::vector<std::string> parts;
    if (!pystr::Split(s, sep, maxsplit, name == "rsplit", &parts)) {
      return absl::InvalidArgumentError("empty separator");
    }
    std::vector<Value> items(parts.begin(), parts.end());
    return Value::MakeList(std::move(items));
  }
  if (name == "splitlines") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"keepends", Value(false)}}));
    std::vector<std::string> parts = pystr::SplitLines(s, a[0].Truthy());
    return Value::MakeList(std::vector<Value>(parts.begin(), parts.end()));
  }
  if (name == "startswith" || name == "endswith") {
    JINJA_ASSIGN_OR_RETURN(
        std::vector<Value> a,
        bind({{"prefix", {}}, {"start", Value::None()}, {"end", Value::None()}}));
    return StartsEnds(s, std::move(a), name == "startswith");
  }
  if (name == "upper") return Value(pystr::Upper(s));
  if (name == "lower") return Value(pystr::Lower(s));
  if (name == "title") return Value(pystr::Title(s));
  if (name == "capitalize") return Value(pystr::Capitalize(s));
  if (name == "swapcase") return Value(pystr::SwapCase(s));
  if (name == "replace") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                           bind({{"old", {}}, {"new", {}}, {"count", Value(-1)}}));
    if (!a[0].is_string() || !a[1].is_string())
      return absl::InvalidArgumentError("replace() arguments must be str");
    JINJA_ASSIGN_OR_RETURN(int64_t count, Int(a[2], "count"));
    return Value(pystr::Replace(s, a[0].str(), a[1].str(), count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"sub", {}}}));
    if (!a[0].is_string()) {
      return absl::InvalidArgumentError(Cat("must be str, not ", a[0].TypeName()));
    }
    if (name == "count") return Value(pystr::Count(s, a[0].str()));
    const int64_t at = pystr::Find(s, a[0].str(), name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex"))
      return absl::InvalidArgumentError("substring not found");
    return Value(at);
  }
  if (name == "join") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"iterable", {}}}));
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return absl::InvalidArgumentError(
            Cat("sequence item ", i, ": expected str instance, ", items[i].TypeName(), " found"));
      }
      if (i > 0) out += s;
      out += items[i].str();
    }
    return Value(std::move(out));
  }
  if (name == "format") return StrFormat(s, args);
  if (name == "center" || name == "ljust" || name == "rjust") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"width", {}}, {"fillchar", Value(" ")}}));
    JINJA_ASSIGN_OR_RETURN(int64_t width, Int(a[0], "width"));
    if (!a[1].is_string() || pystr::Length(a[1].str()) != 1) {
      return absl::InvalidArgumentError("The fill character must be exactly one character long");
    }
    const char32_t fill = pystr::Decode(a[1].str())[0];
    return Value(pystr::Pad(s, width, fill, name == "center" ? 0 : name == "ljust" ? -1 : 1));
  }
  if (name == "zfill") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"width", {}}}));
    JINJA_ASSIGN_OR_RETURN(int64_t width, Int(a[0], "width"));
    const int64_t len = pystr::Length(s);
    if (width <= len) return Value(s);
    std::string zeros(width - len, '0');
    if (!s.empty() && (s[0] == '-' || s[0] == '+'))
      return Value(s.substr(0, 1) + zeros + s.substr(1));
    return Value(zeros + s);
  }
  if (name == "partition" || name == "rpartition") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"sep", {}}}));
    if (!a[0].is_string() || a[0].str().empty())
      return absl::InvalidArgumentError("empty or non-str separator");
    const std::string& sep = a[0].str();
    const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (at == std::string::npos) {
      return name == "partition" ? Value::MakeTuple({Value(s), Value(""), Value("")})
                                 : Value::MakeTuple({Value(""), Value(""), Value(s)});
    }
    return Value::MakeTuple({Value(s.substr(0, at)), Value(sep), Value(s.substr(at + sep.size()))});
  }
  if (name == "removeprefix" || name == "removesuffix") {
    JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"affix", {}}}));
    if (!a[0].is_string()) return absl::InvalidArgumentError("argument must be str");
    const std::string& x = a[0].str();
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.size() >= x.size() &&
        s.compare(s.size() - x.size(), x.size(), x) == 0) {
      return Value(s.substr(0, s.size() - x.size()));
    }
    return Value(s);
  }
  JINJA_RETURN_IF_ERROR(BindArgs(what, std::move(args), {}).status());
  if (name == "isspace") return AllChars(s, pystr::IsSpace);
  if (name == "isalpha") return AllChars(s, pystr::IsAlpha);
  if (name == "isdigit") return AllChars(s, pystr::IsDigit);
  if (name == "isdecimal") return AllChars(s, pystr::IsDecimal);
  if (name == "isnumeric") return AllChars(s, pystr::IsNumeric);
  if (name == "isalnum") {
    return AllChars(s, [](char32_t c) { return pystr::IsAlpha(c) || pystr::IsNumeric(c); });
  }
  if (name == "isascii") return Value(pystr::IsAscii(s));
  if (name == "islower" || name == "isupper") {
    bool any_cased = false;
    for (char32_t c : pystr::Decode(s)) {
      if (name == "islower" ? pystr::IsUpper(c) : pystr::IsLower(c)) return Value(false);
      any_cased |= name == "islower" ? pystr::IsLower(c) : pystr::IsUpper(c);
    }
    return Value(any_cased);
  }
  return absl::InvalidArgumentError(Cat("unsupported string method '", name, "'"));
}

absl::StatusOr<Value> CallDictMethod(const Value& self, std::string_view name, CallArgs args) {
  const std::string what = Cat("dict.", name);
  if (name == "get") {
    JINJA_ASSIGN_OR_RETURN(
        std::vector<Value> a,
        BindArgs(what, std::move(args), {{"key", {}}, {"default", Value::None()}}));
    if (const Value* v = self.dict().Find(a[0])) return *v;
    return a[1];
  }
  JINJA_RETURN_IF_ERROR(BindArgs(what, std::move(args), {}).status());
  std::vector<Value> out;
  for (const auto& [k, v] : self.dict().entries) {
    if (name == "keys") {
      out.push_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else if (name == "items") {
      out.push_back(Value::MakeTuple({k, v}));
    }
  }
  if (name == "keys") return Value::MakeList(std::move(out), SeqKind::kDictKeys);
  if (name == "values") return Value::MakeList(std::move(out), SeqKind::kDictValues);
  if (name == "items") return Value::MakeList(std::move(out), SeqKind::kDictItems);
  if (name == "copy") return Value::MakeDict(self.dict());
  return absl::InvalidArgumentError(Cat("unsupported dict method '", name, "'"));
}

absl::StatusOr<Value> CallListMethod(const Value& self, std::string_view name, CallArgs args) {
  const std::string what = Cat(self.TypeName(), ".", name);
  if (name == "copy") {
    JINJA_RETURN_IF_ERROR(BindArgs(what, std::move(args), {}).status());
    return Value::MakeList(self.list().items);
  }
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, BindArgs(what, std::move(args), {{"value", {}}}));
  const auto& items = self.list().items;
  if (name == "count") {
    int64_t n = 0;
    for (const Value& v : items) n += PyEquals(v, a[0]);
    return Value(n);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (PyEquals(items[i], a[0])) return Value(static_cast<int64_t>(i));
  }
  return absl::InvalidArgumentError(
      Cat(PyRepr(a[0]).value_or("value"), " is not in ", self.TypeName()));
}

class BoundMethod : public Function {
 public:
  BoundMethod(Value self, std::string_view name) : self_(std::move(self)), name_(name) {}
  std::string name() const override { return Cat(self_.TypeName(), ".", name_); }
  absl::StatusOr<Value> Call(Interpreter&, CallArgs args) const override {
    if (In(kUnsafeMethods, name_) && !self_.is_string()) {
      return absl::InvalidArgumentError(
          Cat("access to attribute '", name_, "' of '", self_.TypeName(), "' object is unsafe."));
    }
    if (self_.is_string()) return CallStrMethod(self_, name_, std::move(args));
    if (self_.is_dict()) return CallDictMethod(self_, name_, std::move(args));
    return CallListMethod(self_, name_, std::move(args));
  }

 private:
  Value self_;
  std::string name_;
};

}  // namespace

std::optional<Value> GetMethod(const Value& obj, std::string_view name) {
  bool known = false;
  if (obj.is_string()) {
    known = In(kStrMethods, name);
  } else if (obj.is_dict()) {
    known = In(kDictMethods, name);
  } else if (obj.is_list() && obj.seq_kind() == SeqKind::kList) {
    known = In(kListMethods, name);
  } else if (obj.is_list() && obj.seq_kind() == SeqKind::kTuple) {
    known = In(kTupleMethods, name);
  }
  if (!known) return std::nullopt;
  return Value::MakeFunction(std::make_shared<BoundMethod>(obj, name));
}

}  // namespace lattice::jinja
