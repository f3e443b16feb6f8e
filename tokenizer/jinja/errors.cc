// Template error reporting (see errors.h). Status payloads mark errors that already carry
// a line, and errors raised by the template itself.
#include "tokenizer/jinja/errors.h"

#include "absl/strings/cord.h"
#include "tokenizer/jinja/cat.h"

namespace lattice::jinja {
namespace {

constexpr absl::string_view kLocatedPayload = "lattice.jinja/located";
constexpr absl::string_view kRaisedPayload = "lattice.jinja/raise_exception";

}  // namespace

absl::Status TemplateError(int line, std::string_view message) {
  absl::Status status = absl::InvalidArgumentError(Cat("chat template line ", line, ": ", message));
  status.SetPayload(kLocatedPayload, absl::Cord("1"));
  return status;
}

absl::Status WithLine(absl::Status status, int line) {
  if (status.ok() || status.GetPayload(kLocatedPayload).has_value()) return status;
  absl::Status located =
      absl::Status(status.code(), Cat("chat template line ", line, ": ", status.message()));
  located.SetPayload(kLocatedPayload, absl::Cord("1"));
  return located;
}

absl::Status RaisedError(std::string_view message) {
  absl::Status status = absl::InvalidArgumentError(std::string(message));
  status.SetPayload(kLocatedPayload, absl::Cord("1"));
  status.SetPayload(kRaisedPayload, absl::Cord("1"));
  return status;
}

bool IsRaisedException(const absl::Status& status) {
  return status.GetPayload(kRaisedPayload).has_value();
}

}  // namespace lattice::jinja
