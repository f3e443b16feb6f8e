// Early-return helpers for absl::Status / absl::StatusOr inside the interpreter.
#ifndef LATTICE_TOKENIZER_JINJA_STATUS_MACROS_H_
#define LATTICE_TOKENIZER_JINJA_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define JINJA_CONCAT_INNER_(a, b) a##b
#define JINJA_CONCAT_(a, b) JINJA_CONCAT_INNER_(a, b)

#define JINJA_RETURN_IF_ERROR(expr)                       \
  do {                                                    \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

#define JINJA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(*tmp)

#define JINJA_ASSIGN_OR_RETURN(lhs, expr) \
  JINJA_ASSIGN_OR_RETURN_IMPL_(JINJA_CONCAT_(_statusor_, __LINE__), lhs, expr)

#endif  // LATTICE_TOKENIZER_JINJA_STATUS_MACROS_H_
