// Python's str() and repr() of template values: what `{{ value }}` prints in jinja2.
#include <charconv>
#include <cmath>

#include "absl/strings/str_format.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/nesting.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

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

}  // namespace lattice::jinja
