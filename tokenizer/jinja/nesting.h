// A per-thread count of how deep the mutually recursive conversions, printers and
// comparisons of values are, so that each can refuse past kMaxNesting. Internal.
#ifndef LATTICE_TOKENIZER_JINJA_NESTING_H_
#define LATTICE_TOKENIZER_JINJA_NESTING_H_

#include "absl/status/status.h"
#include "tokenizer/jinja/cat.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

inline thread_local int value_nesting = 0;

class NestingGuard {
 public:
  NestingGuard() { ++value_nesting; }
  ~NestingGuard() { --value_nesting; }
  NestingGuard(const NestingGuard&) = delete;
  NestingGuard& operator=(const NestingGuard&) = delete;
  bool too_deep() const { return value_nesting > kMaxNesting; }
};

inline absl::Status TooDeep() {
  return absl::InvalidArgumentError(
      Cat("values nested deeper than ", kMaxNesting, " levels are unsupported"));
}

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_NESTING_H_
