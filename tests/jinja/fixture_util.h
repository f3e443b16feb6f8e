// Shared helpers for the Jinja tests: fixture paths, the fixed clock jinja2's expected
// outputs were rendered with, and reading the committed JSON fixtures.
#ifndef LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_
#define LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace lattice::jinja::testing {

inline std::filesystem::path SourcePath(const std::string& relative) {
  return std::filesystem::path(LATTICE_SOURCE_DIR) / relative;
}

// make_expected.py's strftime_now clock: 2024-07-26 13:05:09 (naive local time there).
inline RenderEnvironment FixedClock() {
  RenderEnvironment env;
  env.time_zone = absl::UTCTimeZone();
  env.now = absl::FromCivil(absl::CivilSecond(2024, 7, 26, 13, 5, 9), env.time_zone);
  return env;
}

inline nlohmann::ordered_json ReadJsonFixture(const std::string& relative) {
  std::ifstream in(SourcePath(relative));
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::ordered_json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
}

// The fixture cases grouped by the part of their name before the first '/' (the feature
// or model), in first-seen order: one test per group keeps ctest's process count low
// while a failure still names its case.
inline std::vector<std::string> CaseGroups(const nlohmann::ordered_json& cases) {
  std::vector<std::string> groups;
  for (const auto& c : cases) {
    const std::string name = c["name"].get<std::string>();
    const std::string group = name.substr(0, name.find('/'));
    if (std::find(groups.begin(), groups.end(), group) == groups.end()) groups.push_back(group);
  }
  return groups;
}

inline bool InGroup(const nlohmann::ordered_json& c, const std::string& group) {
  const std::string name = c["name"].get<std::string>();
  return name.substr(0, name.find('/')) == group;
}

// gtest parameter names allow only [A-Za-z0-9_].
inline std::string TestName(const std::string& name) {
  std::string out;
  for (char c : name) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

}  // namespace lattice::jinja::testing

#endif  // LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_
