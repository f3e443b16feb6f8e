// Python's json.dumps over template values. transformers replaces jinja2's `tojson` with
// json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
// sort_keys=sort_keys), and tool schemas reach the prompt through it, so the bytes
// (separators, float repr, escapes, key order) must be Python's.
#ifndef LATTICE_TOKENIZER_JINJA_JSON_DUMP_H_
#define LATTICE_TOKENIZER_JINJA_JSON_DUMP_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/value.h"

namespace lattice::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  // None: one line. Otherwise the per-level indent string (an int n means n spaces).
  std::optional<std::string> indent;
  // Python's defaults: (", ", ": ") without indent, (",", ": ") with one.
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
};

// TypeError-like failure for values JSON cannot hold (undefined, generators, functions).
absl::StatusOr<std::string> JsonDumps(const Value& v, const JsonDumpOptions& options);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_JSON_DUMP_H_
