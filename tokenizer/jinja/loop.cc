// jinja2's LoopContext (see loop.h).
#include "tokenizer/jinja/loop.h"

#include "tokenizer/jinja/cat.h"

namespace lattice::jinja {

// The last arguments loop.changed() saw; shared by every iteration of one loop.
struct LoopObject::ChangedState {
  bool seen = false;
  std::vector<Value> last;
};

namespace {

class Cycle : public Function {
 public:
  explicit Cycle(int64_t index0) : index0_(index0) {}
  std::string name() const override { return "loop.cycle"; }
  absl::StatusOr<Value> Call(Interpreter&, CallArgs args) const override {
    if (!args.kwargs.empty()) {
      return absl::InvalidArgumentError("loop.cycle takes no keyword arguments");
    }
    if (args.args.empty()) return absl::InvalidArgumentError("no items for cycling given");
    return args.args[index0_ % static_cast<int64_t>(args.args.size())];
  }

 private:
  int64_t index0_;
};

template <typename State>
class Changed : public Function {
 public:
  explicit Changed(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::string name() const override { return "loop.changed"; }
  absl::StatusOr<Value> Call(Interpreter&, CallArgs args) const override {
    bool same = state_->seen && state_->last.size() == args.args.size();
    for (size_t i = 0; same && i < args.args.size(); ++i) {
      same = PyEquals(state_->last[i], args.args[i]);
    }
    state_->seen = true;
    state_->last = std::move(args.args);
    return Value(!same);
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

LoopObject::LoopObject(std::shared_ptr<const std::vector<Value>> items)
    : items_(std::move(items)), changed_state_(std::make_shared<ChangedState>()) {}

absl::StatusOr<std::string> LoopObject::Repr() const {
  return Cat("<LoopContext ", index0_ + 1, "/", length(), ">");
}

Value LoopObject::GetAttr(std::string_view name) const {
  const int64_t n = length();
  if (name == "index") return Value(index0_ + 1);
  if (name == "index0") return Value(index0_);
  if (name == "revindex") return Value(n - index0_);
  if (name == "revindex0") return Value(n - index0_ - 1);
  if (name == "first") return Value(index0_ == 0);
  if (name == "last") return Value(index0_ == n - 1);
  if (name == "length") return Value(n);
  if (name == "depth") return Value(1);
  if (name == "depth0") return Value(0);
  if (name == "previtem") {
    if (index0_ == 0) return Value::Undefined("there is no previous item");
    return (*items_)[index0_ - 1];
  }
  if (name == "nextitem") {
    if (index0_ + 1 >= n) return Value::Undefined("there is no next item");
    return (*items_)[index0_ + 1];
  }
  if (name == "cycle") return Value::MakeFunction(std::make_shared<Cycle>(index0_));
  if (name == "changed") {
    return Value::MakeFunction(std::make_shared<Changed<ChangedState>>(changed_state_));
  }
  return Object::GetAttr(name);
}

}  // namespace lattice::jinja
