// Python json.dumps (see json_dump.h).
#include "tokenizer/jinja/json_dump.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/pystr.h"

namespace lattice::jinja {
namespace {

class Dumper {
 public:
  explicit Dumper(const JsonDumpOptions& options) : options_(options) {
    item_sep_ = options.item_separator.value_or(options.indent ? "," : ", ");
    key_sep_ = options.key_separator.value_or(": ");
  }

  absl::Status Dump(const Value& v, int depth, std::string* out) {
    using T = Value::Type;
    if (depth > kMaxNesting) {
      return absl::InvalidArgumentError(
          Cat("values nested deeper than ", kMaxNesting, " levels are unsupported"));
    }
    switch (v.type()) {
      case T::kNone:
        out->append("null");
        return absl::OkStatus();
      case T::kBool:
        out->append(v.as_bool() ? "true" : "false");
        return absl::OkStatus();
      case T::kInt:
        Append(out, v.as_int());
        return absl::OkStatus();
      case T::kFloat:
        out->append(Float(v.as_float()));
        return absl::OkStatus();
      case T::kString:
        String(v.str(), out);
        return absl::OkStatus();
      case T::kList:
        if (v.seq_kind() == SeqKind::kList || v.seq_kind() == SeqKind::kTuple) {
          return Array(v.list().items, depth, out);
        }
        break;
      case T::kDict:
        return Object(v.dict(), depth, out);
      default:
        break;
    }
    return absl::InvalidArgumentError(
        Cat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }

 private:
  static std::string Float(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    return PyFloatRepr(d);
  }

  void String(std::string_view s, std::string* out) const {
    out->push_back('"');
    for (char32_t c : pystr::Decode(s)) {
      switch (c) {
        case '"':
          out->append("\\\"");
          continue;
        case '\\':
          out->append("\\\\");
          continue;
        case '\n':
          out->append("\\n");
          continue;
        case '\r':
          out->append("\\r");
          continue;
        case '\t':
          out->append("\\t");
          continue;
        case '\b':
          out->append("\\b");
          continue;
        case '\f':
          out->append("\\f");
          continue;
        default:
          break;
      }
      if (c < 0x20) {
        out->append(absl::StrFormat("\\u%04x", static_cast<uint32_t>(c)));
      } else if (c >= 0x7F && options_.ensure_ascii) {
        if (c >= 0x10000) {
          const uint32_t v = c - 0x10000;
          out->append(absl::StrFormat("\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)));
        } else {
          out->append(absl::StrFormat("\\u%04x", static_cast<uint32_t>(c)));
        }
      } else {
        pystr::AppendCodePoint(c, out);
      }
    }
    out->push_back('"');
  }

  void Newline(int depth, std::string* out) const {
    out->push_back('\n');
    for (int i = 0; i < depth; ++i) out->append(*options_.indent);
  }

  absl::Status Array(const std::vector<Value>& items, int depth, std::string* out) {
    if (items.empty()) {
      out->append("[]");
      return absl::OkStatus();
    }
    out->push_back('[');
    if (options_.indent) Newline(depth + 1, out);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) {
        out->append(item_sep_);
        if (options_.indent) Newline(depth + 1, out);
      }
      if (absl::Status s = Dump(items[i], depth + 1, out); !s.ok()) return s;
    }
    if (options_.indent) Newline(depth, out);
    out->push_back(']');
    return absl::OkStatus();
  }

  // Python converts non-string keys: numbers and constants to their JSON text.
  absl::StatusOr<std::string> Key(const Value& k) const {
    switch (k.type()) {
      case Value::Type::kString:
        return k.str();
      case Value::Type::kNone:
        return std::string("null");
      case Value::Type::kBool:
        return std::string(k.as_bool() ? "true" : "false");
      case Value::Type::kInt:
        return Cat(k.as_int());
      case Value::Type::kFloat:
        return Float(k.as_float());
      default:
        return absl::InvalidArgumentError(
            Cat("keys must be str, int, float, bool or None, not ", k.TypeName()));
    }
  }

  absl::Status Object(const Dict& dict, int depth, std::string* out) {
    if (dict.entries.empty()) {
      out->append("{}");
      return absl::OkStatus();
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& e : dict.entries) entries.push_back(&e);
    if (options_.sort_keys) {
      absl::Status error;
      std::stable_sort(entries.begin(), entries.end(), [&](auto* a, auto* b) {
        absl::StatusOr<bool> less = PyLess(a->first, b->first);
        if (!less.ok()) {
          error = less.status();
          return false;
        }
        return *less;
      });
      if (!error.ok()) return error;
    }
    out->push_back('{');
    if (options_.indent) Newline(depth + 1, out);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i > 0) {
        out->append(item_sep_);
        if (options_.indent) Newline(depth + 1, out);
      }
      absl::StatusOr<std::string> key = Key(entries[i]->first);
      if (!key.ok()) return key.status();
      String(*key, out);
      out->append(key_sep_);
      if (absl::Status s = Dump(entries[i]->second, depth + 1, out); !s.ok()) return s;
    }
    if (options_.indent) Newline(depth, out);
    out->push_back('}');
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

absl::StatusOr<std::string> JsonDumps(const Value& v, const JsonDumpOptions& options) {
  std::string out;
  Dumper dumper(options);
  if (absl::Status s = dumper.Dump(v, 0, &out); !s.ok()) return s;
  return out;
}

}  // namespace lattice::jinja
