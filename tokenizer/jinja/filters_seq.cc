// jinja2's filters over sequences and mappings: length, first/last, list, join, items,
// sort/dictsort/unique, min/max/sum, map/select/reject(/attr), reverse, batch. Those
// that return Python generators in jinja2 return SeqKind::kGenerator values, which
// (like generators) iterate fine but have no len() and are always true.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/pystr.h"
#include "tokenizer/jinja/status_macros.h"

namespace lattice::jinja {
namespace {

Value Generator(std::vector<Value> items) {
  return Value::MakeList(std::move(items), SeqKind::kGenerator);
}

// jinja2's ignore_case postprocessor.
Value LowerIfString(const Value& v, bool case_sensitive) {
  if (case_sensitive || !v.is_string()) return v;
  return Value(pystr::Lower(v.str()));
}

// Comma-separated attribute paths (sort's "age,name").
std::vector<Value> SplitAttributes(const Value& attribute) {
  std::vector<Value> out;
  if (attribute.is_string()) {
    for (absl::string_view part : absl::StrSplit(attribute.str(), ','))
      out.emplace_back(StdView(part));
  } else {
    out.push_back(attribute);
  }
  return out;
}

// Sorts items by precomputed keys, stably; Python's `reverse` keeps equal keys in order.
absl::Status SortByKeys(std::vector<Value>* items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status error;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    absl::StatusOr<bool> less = reverse ? PyLess(keys[b], keys[a]) : PyLess(keys[a], keys[b]);
    if (!less.ok()) {
      if (error.ok()) error = less.status();
      return false;
    }
    return *less;
  });
  if (!error.ok()) return error;
  std::vector<Value> sorted;
  sorted.reserve(items->size());
  for (size_t i : order) sorted.push_back(std::move((*items)[i]));
  *items = std::move(sorted);
  return absl::OkStatus();
}

absl::StatusOr<Value> MinMax(Interpreter& interp, const Value& v, std::vector<Value> a, bool max) {
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) {
    return Value::Undefined("No aggregated item, sequence was empty.");
  }
  std::vector<Value> keys;
  for (const Value& item : items) {
    Value key = item;
    if (!a[1].is_none()) {
      JINJA_ASSIGN_OR_RETURN(key, GetAttributePath(interp, item, a[1]));
    }
    keys.push_back(LowerIfString(key, a[0].Truthy()));
  }
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    JINJA_ASSIGN_OR_RETURN(bool better,
                           max ? PyLess(keys[best], keys[i]) : PyLess(keys[i], keys[best]));
    if (better) best = i;
  }
  return items[best];
}

// select/reject/selectattr/rejectattr.
absl::StatusOr<Value> SelectReject(Interpreter& interp, const Value& v, CallArgs args, bool select,
                                   bool by_attribute, std::string_view what) {
  if (!v.Truthy()) return Generator({});
  JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  size_t off = 0;
  Value attribute;
  if (by_attribute) {
    if (args.args.empty())
      return absl::InvalidArgumentError("Missing parameter for attribute name");
    attribute = args.args[0];
    off = 1;
  }
  std::optional<std::string> test;
  if (args.args.size() > off) {
    if (!args.args[off].is_string())
      return absl::InvalidArgumentError(Cat(what, ": test name must be a string"));
    test = args.args[off].str();
  }
  CallArgs test_args;
  for (size_t i = off + 1; i < args.args.size(); ++i) test_args.args.push_back(args.args[i]);
  test_args.kwargs = args.kwargs;
  std::vector<Value> out;
  for (Value& item : items) {
    Value probe = item;
    if (by_attribute) {
      JINJA_ASSIGN_OR_RETURN(probe, GetAttributePath(interp, item, attribute));
    }
    bool pass;
    if (test) {
      JINJA_ASSIGN_OR_RETURN(pass, ApplyTest(interp, *test, probe, test_args));
    } else {
      pass = probe.Truthy();
    }
    if (pass == select) out.push_back(std::move(item));
  }
  return Generator(std::move(out));
}

}  // namespace

absl::StatusOr<Value> GetAttributePath(Interpreter& interp, const Value& item,
                                       const Value& attribute) {
  if (attribute.is_none()) return item;
  if (!attribute.is_string()) return interp.GetItem(item, attribute);
  Value v = item;
  for (absl::string_view absl_part : absl::StrSplit(attribute.str(), '.')) {
    const std::string_view part = StdView(absl_part);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), absl::ascii_isdigit);
    if (digits && part.size() < 18) {
      JINJA_ASSIGN_OR_RETURN(
          v, interp.GetItem(v, Value(static_cast<int64_t>(std::stoll(std::string(part))))));
    } else {
      JINJA_ASSIGN_OR_RETURN(v, interp.GetItem(v, Value(part)));
    }
  }
  return v;
}

std::optional<absl::StatusOr<Value>> ApplySequenceFilter(Interpreter& interp, std::string_view name,
                                                         const Value& v, CallArgs& args) {
  const std::string what = Cat("filter '", name, "'");
  auto bind = [&](std::initializer_list<Param> params) {
    return BindArgs(what, std::move(args), params);
  };
  // Wraps each filter body so that `return` inside yields the optional's value.
  auto run = [&]() -> std::optional<absl::StatusOr<Value>> {
    if (name == "length" || name == "count") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_RETURN_IF_ERROR(bind({}).status());
        JINJA_ASSIGN_OR_RETURN(int64_t n, PyLen(v));
        return Value(n);
      }();
    }
    if (name == "first" || name == "last") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_RETURN_IF_ERROR(bind({}).status());
        if (name == "last" && v.is_list() && v.seq_kind() == SeqKind::kGenerator) {
          return absl::InvalidArgumentError("'generator' object is not reversible");
        }
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        if (items.empty()) {
          return Value::Undefined(name == "first" ? "No first item, sequence was empty."
                                                  : "No last item, sequence was empty.");
        }
        return name == "first" ? items.front() : items.back();
      }();
    }
    if (name == "list") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_RETURN_IF_ERROR(bind({}).status());
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        return Value::MakeList(std::move(items));
      }();
    }
    if (name == "join") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                               bind({{"d", Value("")}, {"attribute", Value::None()}}));
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        JINJA_ASSIGN_OR_RETURN(std::string sep, PyStr(a[0]));
        std::string out;
        for (size_t i = 0; i < items.size(); ++i) {
          if (i > 0) out += sep;
          Value item = items[i];
          if (!a[1].is_none()) {
            JINJA_ASSIGN_OR_RETURN(item, GetAttributePath(interp, item, a[1]));
          }
          JINJA_RETURN_IF_ERROR(AppendPyStr(item, &out));
        }
        return Value(std::move(out));
      }();
    }
    if (name == "items") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_RETURN_IF_ERROR(bind({}).status());
        if (v.is_undefined()) return Generator({});
        if (!v.is_dict())
          return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
        std::vector<Value> out;
        for (const auto& [k, val] : v.dict().entries) out.push_back(Value::MakeTuple({k, val}));
        return Generator(std::move(out));
      }();
    }
    if (name == "dictsort") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"case_sensitive", Value(false)},
                                                           {"by", Value("key")},
                                                           {"reverse", Value(false)}}));
        if (!v.is_dict()) return absl::InvalidArgumentError("dictsort: value must be a mapping");
        if (!a[1].is_string() || (a[1].str() != "key" && a[1].str() != "value")) {
          return absl::InvalidArgumentError("You can only sort by either \"key\" or \"value\"");
        }
        const int pos = a[1].str() == "key" ? 0 : 1;
        std::vector<Value> items, keys;
        for (const auto& [k, val] : v.dict().entries) {
          items.push_back(Value::MakeTuple({k, val}));
          keys.push_back(LowerIfString(pos == 0 ? k : val, a[0].Truthy()));
        }
        JINJA_RETURN_IF_ERROR(SortByKeys(&items, keys, a[2].Truthy()));
        return Value::MakeList(std::move(items));
      }();
    }
    if (name == "sort") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"reverse", Value(false)},
                                                           {"case_sensitive", Value(false)},
                                                           {"attribute", Value::None()}}));
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        std::vector<Value> keys;
        const std::vector<Value> attributes = SplitAttributes(a[2]);
        for (const Value& item : items) {
          std::vector<Value> parts;
          for (const Value& attribute : attributes) {
            JINJA_ASSIGN_OR_RETURN(Value key, GetAttributePath(interp, item, attribute));
            parts.push_back(LowerIfString(key, a[1].Truthy()));
          }
          keys.push_back(a[2].is_none() ? parts[0] : Value::MakeList(std::move(parts)));
        }
        JINJA_RETURN_IF_ERROR(SortByKeys(&items, keys, a[0].Truthy()));
        return Value::MakeList(std::move(items));
      }();
    }
    if (name == "unique") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"case_sensitive", Value(false)},
                                                           {"attribute", Value::None()}}));
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        std::vector<Value> seen, out;
        for (Value& item : items) {
          JINJA_ASSIGN_OR_RETURN(Value key, GetAttributePath(interp, item, a[1]));
          key = LowerIfString(key, a[0].Truthy());
          JINJA_RETURN_IF_ERROR(CheckHashable(key));
          if (std::any_of(seen.begin(), seen.end(),
                          [&](const Value& s) { return PyEquals(s, key); }))
            continue;
          seen.push_back(std::move(key));
          out.push_back(std::move(item));
        }
        return Generator(std::move(out));
      }();
    }
    if (name == "reverse") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_RETURN_IF_ERROR(bind({}).status());
        if (v.is_string()) {
          std::u32string chars = pystr::Decode(v.str());
          std::reverse(chars.begin(), chars.end());
          return Value(pystr::Encode(chars));
        }
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        std::reverse(items.begin(), items.end());
        // reversed() of a generator fails and jinja2 falls back to a list.
        const bool was_generator = v.is_list() && v.seq_kind() == SeqKind::kGenerator;
        return Value::MakeList(std::move(items),
                               was_generator ? SeqKind::kList : SeqKind::kGenerator);
      }();
    }
    if (name == "min" || name == "max") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a, bind({{"case_sensitive", Value(false)},
                                                           {"attribute", Value::None()}}));
        return MinMax(interp, v, std::move(a), name == "max");
      }();
    }
    if (name == "sum") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                               bind({{"attribute", Value::None()}, {"start", Value(0)}}));
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        if (a[1].is_string())
          return absl::InvalidArgumentError("sum() can't sum strings [use ''.join(seq) instead]");
        Value total = a[1];
        for (const Value& item : items) {
          JINJA_ASSIGN_OR_RETURN(Value x, GetAttributePath(interp, item, a[0]));
          JINJA_ASSIGN_OR_RETURN(total, BinaryOp("+", total, x));
        }
        return total;
      }();
    }
    if (name == "map") {
      return [&]() -> absl::StatusOr<Value> {
        if (!v.Truthy()) return Generator({});
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        std::vector<Value> out;
        if (args.args.empty() &&
            std::any_of(args.kwargs.begin(), args.kwargs.end(),
                        [](const auto& kv) { return kv.first == "attribute"; })) {
          JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                                 bind({{"attribute", {}}, {"default", Value::None()}}));
          for (const Value& item : items) {
            JINJA_ASSIGN_OR_RETURN(Value x, GetAttributePath(interp, item, a[0]));
            if (x.is_undefined() && !a[1].is_none()) x = a[1];
            out.push_back(std::move(x));
          }
          return Generator(std::move(out));
        }
        if (args.args.empty()) return absl::InvalidArgumentError("map requires a filter argument");
        if (!args.args[0].is_string())
          return absl::InvalidArgumentError("map: filter name must be a string");
        const std::string filter = args.args[0].str();
        CallArgs rest;
        rest.args.assign(args.args.begin() + 1, args.args.end());
        rest.kwargs = args.kwargs;
        for (const Value& item : items) {
          JINJA_ASSIGN_OR_RETURN(Value x, ApplyFilter(interp, filter, item, rest));
          out.push_back(std::move(x));
        }
        return Generator(std::move(out));
      }();
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool select = name == "select" || name == "selectattr";
      const bool by_attribute = name == "selectattr" || name == "rejectattr";
      return SelectReject(interp, v, std::move(args), select, by_attribute, what);
    }
    if (name == "batch") {
      return [&]() -> absl::StatusOr<Value> {
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> a,
                               bind({{"linecount", {}}, {"fill_with", Value::None()}}));
        if (!a[0].is_int() || a[0].as_int() <= 0)
          return absl::InvalidArgumentError("batch: linecount must be a positive integer");
        const size_t n = static_cast<size_t>(a[0].as_int());
        JINJA_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
        std::vector<Value> out, row;
        for (Value& item : items) {
          if (row.size() == n) out.push_back(Value::MakeList(std::exchange(row, {})));
          row.push_back(std::move(item));
        }
        if (!row.empty()) {
          if (!a[1].is_none()) {
            while (row.size() < n) row.push_back(a[1]);
          }
          out.push_back(Value::MakeList(std::move(row)));
        }
        return Generator(std::move(out));
      }();
    }
    return std::nullopt;
  };
  return run();
}

}  // namespace lattice::jinja
