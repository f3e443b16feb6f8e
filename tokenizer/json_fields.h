// Small readers for tokenizer.json fields that turn a missing or mistyped field into
// an error naming where it is.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/regex.h"

namespace lattice::text {

// j["type"] as a string.
absl::StatusOr<std::string> GetType(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* key, const std::string& where);
// j[key] if it is a bool, else `fallback` (missing or null).
bool GetBool(const nlohmann::json& j, const char* key, bool fallback);
// j[key] if it is an array, else nullptr.
const nlohmann::json* FindArray(const nlohmann::json& j, const char* key);
// j["pattern"] ({"String": s} or {"Regex": r}) compiled; a string pattern matches
// itself literally.
absl::StatusOr<Regex> GetPattern(const nlohmann::json& j, const std::string& where);

}  // namespace lattice::text
