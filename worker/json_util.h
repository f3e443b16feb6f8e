// Bounded JSON helpers for reading untrusted files (config.json, safetensors
// headers, shard indexes): parsing with a nesting limit and short renderings of
// values for error messages. nlohmann's parser is iterative, but copying, comparing
// and dumping a value recurse, so a hostile nesting must be refused at parse time
// and never dumped whole.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace lattice {

inline constexpr int kMaxJsonDepth = 64;

// `value`'s type and a rendering cut at about 60 characters and 3 levels, e.g.
// `string "4096"` or `array [[[[...]]]]`.
std::string DescribeJson(const nlohmann::json& value);

// Parses [begin, end). INVALID_ARGUMENT starting with `what` when the text is not
// JSON or nests deeper than kMaxJsonDepth. `on_event`, if set, sees every parse event.
absl::StatusOr<nlohmann::json> ParseJson(
    const std::string& what, const char* begin, const char* end,
    const nlohmann::json::parser_callback_t& on_event = nullptr);

// Reads and parses the file at `path`: NOT_FOUND when it does not exist,
// INVALID_ARGUMENT naming the path when it is not a file, larger than `max_bytes`,
// or not JSON.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, size_t max_bytes);

}  // namespace lattice
