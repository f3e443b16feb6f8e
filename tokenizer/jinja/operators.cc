// Python operator semantics on template values: arithmetic (floor division and modulo
// round toward negative infinity, `/` is always float), comparison, `in`, printf-style
// `%` formatting and markupsafe's escaping `+`.
#include <cmath>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

absl::Status OperandError(std::string_view op, const Value& a, const Value& b) {
  return absl::InvalidArgumentError(Cat("unsupported operand type(s) for ", op, ": '", a.TypeName(),
                                        "' and '", b.TypeName(), "'"));
}

absl::Status Overflow() {
  return absl::InvalidArgumentError("integer overflow (integers are limited to 64 bits)");
}

absl::Status ZeroDivision(bool modulo) {
  return absl::InvalidArgumentError(modulo ? "integer division or modulo by zero"
                                           : "division by zero");
}

// CPython's float_divmod.
void FloatDivMod(double vx, double wx, double* floordiv, double* mod) {
  double m = std::fmod(vx, wx);
  double div = (vx - m) / wx;
  if (m != 0) {
    if ((wx < 0) != (m < 0)) {
      m += wx;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod = m;
}

absl::StatusOr<Value> Repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return seq.is_markup() ? Value::Markup(std::move(out)) : Value(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) {
    out.insert(out.end(), seq.list().items.begin(), seq.list().items.end());
  }
  return Value::MakeList(std::move(out), seq.seq_kind());
}

bool IsConcatSeq(const Value& v) {
  return v.is_list() && (v.seq_kind() == SeqKind::kList || v.seq_kind() == SeqKind::kTuple);
}

absl::StatusOr<Value> Arithmetic(std::string_view op, const Value& a, const Value& b) {
  const bool floats = a.is_float() || b.is_float();
  if (op == "/") {
    const double y = b.as_double();
    if (y == 0) return ZeroDivision(false);
    return Value(a.as_double() / y);
  }
  if (floats) {
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "//" || op == "%") {
      if (y == 0)
        return absl::InvalidArgumentError(op == "%" ? "float modulo"
                                                    : "float floor division by zero");
      double fd, m;
      FloatDivMod(x, y, &fd, &m);
      return Value(op == "%" ? m : fd);
    }
    if (op == "**") {
      if (x == 0 && y < 0) {
        return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
      }
      if (x < 0 && std::floor(y) != y) {
        return absl::InvalidArgumentError(
            "unsupported: a negative number to a fractional power is complex");
      }
      return Value(std::pow(x, y));
    }
  } else {
    const int64_t x = a.as_integer(), y = b.as_integer();
    int64_t r;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) return Overflow();
      return Value(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) return Overflow();
      return Value(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) return Overflow();
      return Value(r);
    }
    if (op == "//" || op == "%") {
      if (y == 0) return ZeroDivision(true);
      if (x == INT64_MIN && y == -1)
        return op == "%" ? absl::StatusOr<Value>(Value(0)) : Overflow();
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        m += y;
        --q;
      }
      return Value(op == "%" ? m : q);
    }
    if (op == "**") {
      if (y < 0) {
        if (x == 0) return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
        return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
      }
      int64_t result = 1, base = x, e = y;
      while (e > 0) {
        if (e & 1) {
          if (__builtin_mul_overflow(result, base, &result)) return Overflow();
        }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
      }
      return Value(result);
    }
  }
  return absl::InvalidArgumentError(Cat("unknown operator ", op));
}

// Applies a %s spec's flags, width and precision (counted in code points, as Python does).
std::string PadFormatted(const std::string& text, std::string_view spec) {
  bool left = false;
  size_t i = 1;
  while (i < spec.size() && std::string_view("-+ #0").find(spec[i]) != std::string_view::npos) {
    left |= spec[i] == '-';
    ++i;
  }
  int64_t width = 0;
  while (i < spec.size() && absl::ascii_isdigit(spec[i])) width = width * 10 + (spec[i++] - '0');
  std::string s = text;
  if (i < spec.size() && spec[i] == '.') {
    int64_t precision = 0;
    ++i;
    while (i < spec.size() && absl::ascii_isdigit(spec[i]))
      precision = precision * 10 + (spec[i++] - '0');
    std::u32string chars = pystr::Decode(s);
    if (static_cast<int64_t>(chars.size()) > precision)
      s = pystr::Encode(chars.substr(0, precision));
  }
  return pystr::Pad(s, width, U' ', left ? -1 : 1);
}

}  // namespace

absl::Status UndefinedError(const Value& v) {
  if (!v.undefined_hint().empty()) return absl::InvalidArgumentError(v.undefined_hint());
  return absl::InvalidArgumentError("undefined value");
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '"':
        out += "&#34;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  // str % x formats before x is consulted, so an undefined x only fails if used.
  if (b.is_undefined() && !(op == "%" && a.is_string())) return UndefinedError(b);
  if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      // markupsafe: Markup + str escapes the str and stays Markup.
      if (a.is_markup() && !b.is_markup()) return Value::Markup(a.str() + HtmlEscape(b.str()));
      if (b.is_markup() && !a.is_markup()) return Value::Markup(HtmlEscape(a.str()) + b.str());
      return a.is_markup() ? Value::Markup(a.str() + b.str()) : Value(a.str() + b.str());
    }
    if (IsConcatSeq(a) && IsConcatSeq(b) && a.seq_kind() == b.seq_kind()) {
      std::vector<Value> items = a.list().items;
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      return Value::MakeList(std::move(items), a.seq_kind());
    }
    if (a.is_string()) {
      return absl::InvalidArgumentError(
          Cat("can only concatenate str (not \"", b.TypeName(), "\") to str"));
    }
    if (IsConcatSeq(a)) {
      return absl::InvalidArgumentError(Cat("can only concatenate ", a.TypeName(), " (not \"",
                                            b.TypeName(), "\") to ", a.TypeName()));
    }
    return OperandError(op, a, b);
  }
  if (op == "*") {
    if ((a.is_string() || IsConcatSeq(a)) && (b.is_int() || b.is_bool()))
      return Repeat(a, b.as_integer());
    if ((b.is_string() || IsConcatSeq(b)) && (a.is_int() || a.is_bool()))
      return Repeat(b, a.as_integer());
    return OperandError(op, a, b);
  }
  if (op == "%" && a.is_string()) {
    Value args = b;
    if (a.is_markup()) {
      // markupsafe escapes the arguments of Markup % args.
      auto escape = [](const Value& v) {
        if (v.is_string() && !v.is_markup()) return Value(HtmlEscape(v.str()));
        return v;
      };
      if (b.is_list() && b.seq_kind() == SeqKind::kTuple) {
        std::vector<Value> items;
        for (const Value& v : b.list().items) items.push_back(escape(v));
        args = Value::MakeTuple(std::move(items));
      } else {
        args = escape(b);
      }
    }
    JINJA_ASSIGN_OR_RETURN(std::string out, PercentFormat(a.str(), args));
    return a.is_markup() ? Value::Markup(std::move(out)) : Value(std::move(out));
  }
  return OperandError(op == "**" ? "** or pow()" : op, a, b);
}

absl::StatusOr<Value> Negate(const Value& v, bool negative) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return Value(negative ? -v.as_float() : v.as_float());
  if (v.is_int() || v.is_bool()) {
    const int64_t i = v.as_integer();
    if (!negative) return Value(i);
    if (i == INT64_MIN) return Overflow();
    return Value(-i);
  }
  return absl::InvalidArgumentError(
      Cat("bad operand type for unary ", negative ? "-" : "+", ": '", v.TypeName(), "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            Cat("'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Type::kList:
      for (const Value& v : container.list().items) {
        if (PyEquals(v, item)) return true;
      }
      return false;
    case Value::Type::kDict:
      JINJA_RETURN_IF_ERROR(CheckHashable(item));
      return container.dict().Find(item) != nullptr;
    default:
      return absl::InvalidArgumentError(
          Cat("argument of type '", container.TypeName(), "' is not iterable"));
  }
}

absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return PyEquals(a, b);
  if (op == "!=") return !PyEquals(a, b);
  if (op == "in" || op == "notin") {
    JINJA_ASSIGN_OR_RETURN(bool in, Contains(b, a));
    return op == "in" ? in : !in;
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      if (op == "<") return x < y;
      if (op == "<=") return x <= y;
      if (op == ">") return x > y;
      return x >= y;
    }
    const int64_t x = a.as_integer(), y = b.as_integer();
    if (op == "<") return x < y;
    if (op == "<=") return x <= y;
    if (op == ">") return x > y;
    return x >= y;
  }
  const bool comparable = (a.is_string() && b.is_string()) ||
                          (a.is_list() && b.is_list() && a.seq_kind() == b.seq_kind() &&
                           (a.seq_kind() == SeqKind::kList || a.seq_kind() == SeqKind::kTuple));
  if (!comparable) {
    return absl::InvalidArgumentError(Cat("'", op, "' not supported between instances of '",
                                          a.TypeName(), "' and '", b.TypeName(), "'"));
  }
  if (op == "<") return PyLess(a, b);
  if (op == ">") return PyLess(b, a);
  JINJA_ASSIGN_OR_RETURN(bool less, PyLess(op == "<=" ? b : a, op == "<=" ? a : b));
  return !less;
}

absl::StatusOr<std::string> PercentFormat(std::string_view format, const Value& args) {
  std::vector<Value> positional;
  const bool is_tuple = args.is_list() && args.seq_kind() == SeqKind::kTuple;
  if (is_tuple) {
    positional = args.list().items;
  } else {
    positional.push_back(args);
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    Value arg;
    bool have_arg = false;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (close == std::string_view::npos)
        return absl::InvalidArgumentError("incomplete format key");
      if (args.is_undefined()) return UndefinedError(args);
      if (!args.is_dict()) return absl::InvalidArgumentError("format requires a mapping");
      const Value* v = args.dict().Find(format.substr(i + 1, close - i - 1));
      if (v == nullptr) {
        return absl::InvalidArgumentError(
            Cat("KeyError: '", format.substr(i + 1, close - i - 1), "'"));
      }
      arg = *v;
      have_arg = true;
      used_mapping = true;
      i = close + 1;
    }
    std::string spec = "%";
    while (i < format.size() &&
           std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      spec.push_back(format[i++]);
    }
    while (i < format.size() && absl::ascii_isdigit(format[i])) spec.push_back(format[i++]);
    if (i < format.size() && format[i] == '.') {
      spec.push_back(format[i++]);
      while (i < format.size() && absl::ascii_isdigit(format[i])) spec.push_back(format[i++]);
    }
    if (i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!have_arg) {
      if (next >= positional.size()) {
        return absl::InvalidArgumentError("not enough arguments for format string");
      }
      arg = positional[next++];
    }
    if (arg.is_undefined() && conv != 's' && conv != 'r') return UndefinedError(arg);
    switch (conv) {
      case 's':
      case 'r': {
        JINJA_ASSIGN_OR_RETURN(std::string text, conv == 's' ? PyStr(arg) : PyRepr(arg));
        out += PadFormatted(text, spec);
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg.is_number()) {
          return absl::InvalidArgumentError(Cat("%", std::string(1, conv),
                                                " format: a real number is required, not ",
                                                arg.TypeName()));
        }
        const int64_t v =
            arg.is_float() ? static_cast<int64_t>(std::trunc(arg.as_float())) : arg.as_integer();
        spec += "ll";
        spec.push_back(conv == 'i' ? 'd' : conv);
        char buf[128];
        std::snprintf(buf, sizeof(buf), spec.c_str(), static_cast<long long>(v));
        out += buf;
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg.is_number()) {
          return absl::InvalidArgumentError(Cat("must be real number, not ", arg.TypeName()));
        }
        spec.push_back(conv);
        char buf[512];
        std::snprintf(buf, sizeof(buf), spec.c_str(), arg.as_double());
        out += buf;
        break;
      }
      default:
        return absl::InvalidArgumentError(
            Cat("unsupported format character '", std::string(1, conv), "'"));
    }
  }
  // Python skips this check when the argument supports indexing (dicts, lists).
  const bool mapping_like =
      args.is_dict() || args.is_undefined() || (args.is_indexable_list() && !is_tuple);
  if (!used_mapping && !mapping_like && next < positional.size() && (is_tuple || next == 0)) {
    return absl::InvalidArgumentError("not all arguments converted during string formatting");
  }
  return out;
}

}  // namespace lattice::jinja
