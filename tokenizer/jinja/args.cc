// Python-style binding of call arguments to a signature (see builtins.h).
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/cat.h"

namespace lattice::jinja {

absl::StatusOr<std::vector<Value>> BindArgs(std::string_view what, CallArgs args,
                                            std::initializer_list<Param> params) {
  if (args.args.size() > params.size()) {
    return absl::InvalidArgumentError(
        Cat(what, " takes at most ", params.size(), " argument(s) (", args.args.size(), " given)"));
  }
  std::vector<std::optional<Value>> bound(params.size());
  for (size_t i = 0; i < args.args.size(); ++i) bound[i] = std::move(args.args[i]);
  for (auto& [key, value] : args.kwargs) {
    size_t i = 0;
    for (const Param& p : params) {
      if (p.name == key) break;
      ++i;
    }
    if (i == params.size()) {
      return absl::InvalidArgumentError(
          Cat(what, " got an unexpected keyword argument '", key, "'"));
    }
    if (bound[i].has_value()) {
      return absl::InvalidArgumentError(Cat(what, " got multiple values for argument '", key, "'"));
    }
    bound[i] = std::move(value);
  }
  std::vector<Value> out;
  out.reserve(params.size());
  size_t i = 0;
  for (const Param& p : params) {
    if (bound[i].has_value()) {
      out.push_back(*std::move(bound[i]));
    } else if (p.default_value.has_value()) {
      out.push_back(*p.default_value);
    } else {
      return absl::InvalidArgumentError(Cat(what, " missing required argument '", p.name, "'"));
    }
    ++i;
  }
  return out;
}

}  // namespace lattice::jinja
