// Parsing of comma-separated integer flags ("1,2,3"): prompt token ids, stop ids and
// layer counts, shared by the `lattice` subcommands so they accept and reject the same text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

// Each comma-separated part may have spaces around it. An empty part (including empty
// `text`) is INVALID_ARGUMENT naming `flag`, the part and the whole text.
absl::StatusOr<std::vector<int32_t>> ParseIntList(const std::string& text, const char* flag);

}  // namespace lattice
