// Small readers for tokenizer.json fields that turn a missing or mistyped field into
// an error naming where it is.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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

// The parts of a "Sequence" component: j[key] is an array whose elements `make` builds
// (null parts are skipped), each named `where.key[i]` in errors.
template <typename T, typename Make>
absl::StatusOr<std::vector<std::unique_ptr<T>>> MakeParts(const nlohmann::json& j, const char* key,
                                                           const std::string& where, Make make) {
  const nlohmann::json* list = FindArray(j, key);
  if (list == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": Sequence without ", key));
  }
  std::vector<std::unique_ptr<T>> parts;
  for (size_t i = 0; i < list->size(); ++i) {
    absl::StatusOr<std::unique_ptr<T>> part = make((*list)[i], absl::StrCat(where, ".", key, "[", i, "]"));
    if (!part.ok()) return part.status();
    if (*part) parts.push_back(std::move(*part));
  }
  return parts;
}

}  // namespace lattice::text
