// See json_fields.h.
#include "tokenizer/json_fields.h"

#include "absl/strings/str_cat.h"

namespace lattice::text {

absl::StatusOr<std::string> GetType(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": expected an object"));
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"type\""));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing string field \"", key, "\""));
  }
  return it->get<std::string>();
}

bool GetBool(const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

const nlohmann::json* FindArray(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? &*it : nullptr;
}

absl::StatusOr<Regex> GetPattern(const nlohmann::json& j, const std::string& where) {
  auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing \"pattern\""));
  }
  if (auto s = it->find("String"); s != it->end() && s->is_string()) return Regex::Literal(s->get<std::string>());
  if (auto r = it->find("Regex"); r != it->end() && r->is_string()) {
    auto regex = Regex::Compile(r->get<std::string>());
    if (!regex.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", regex.status().message()));
    return regex;
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": pattern is neither String nor Regex"));
}

}  // namespace lattice::text
