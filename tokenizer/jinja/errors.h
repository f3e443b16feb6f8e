// How template failures are reported. Every error names the template line it comes from
// ("chat template line 12: unsupported filter 'xmlattr'"); a template's own
// raise_exception(msg) is told apart so that the server can return the template's
// message to the client as a bad request.
#ifndef LATTICE_TOKENIZER_JINJA_ERRORS_H_
#define LATTICE_TOKENIZER_JINJA_ERRORS_H_

#include <string_view>

#include "absl/status/status.h"

namespace lattice::jinja {

// An InvalidArgument error located at `line`.
absl::Status TemplateError(int line, std::string_view message);
// Locates an error that does not name a line yet (errors from filters and values are
// raised without one and located by the expression that called them).
absl::Status WithLine(absl::Status status, int line);
// The error raise_exception(message) produces: InvalidArgument whose message is exactly
// the template's message.
absl::Status RaisedError(std::string_view message);
// Whether a render failed because the template called raise_exception.
bool IsRaisedException(const absl::Status& status);

}  // namespace lattice::jinja

#endif  // LATTICE_TOKENIZER_JINJA_ERRORS_H_
