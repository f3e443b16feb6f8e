// Shared helpers for the Jinja tests: fixture paths, the fixed clock jinja2's expected
// outputs were rendered with, and reading the committed JSON fixtures.
#ifndef LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_
#define LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

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

// gtest parameter names allow only [A-Za-z0-9_].
inline std::string TestName(const std::string& name) {
  std::string out;
  for (char c : name) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

}  // namespace lattice::jinja::testing

#endif  // LATTICE_TESTS_JINJA_FIXTURE_UTIL_H_
