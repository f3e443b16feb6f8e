// The `loop` variable of a for loop: index, index0, revindex, revindex0, first, last,
// length, previtem, nextitem, depth, depth0, cycle() and changed(), as jinja2's
// LoopContext has them. One object per loop, advanced each iteration.
#ifndef LATTICE_TOKENIZER_JINJA_LOOP_H_
#define LATTICE_TOKENIZER_JINJA_LOOP_H_

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

class LoopObject : public Object {
 public:
  explicit LoopObject(std::shared_ptr<const std::vector<Value>> items);
  void set_index0(int64_t i) { index0_ = i; }

  std::string_view type_name() const override { return "LoopContext"; }
  absl::StatusOr<std::string> Repr() const override;
  Value GetAttr(std::string_view name) const override;

 private:
  struct ChangedState;
  int64_t length() const { return static_cast<int64_t>(items_->size()); }

  std::shared_ptr<const std::vector<Value>> items_;
  int64_t index0_ = 0;
  std::shared_ptr<ChangedState> changed_state_;
};

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_LOOP_H_
