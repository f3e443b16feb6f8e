// The fixture models under tests/fixtures/models and the JSON lines `lattice run` prints.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lattice::testing {

// The source tree's fixtures; LATTICE_SOURCE_DIR in the environment overrides the
// build's path (a copied tree on another machine).
inline std::filesystem::path FixturesDir() {
  const char* env = std::getenv("LATTICE_SOURCE_DIR");
  return std::filesystem::path(env != nullptr && env[0] != '\0' ? env : LATTICE_SOURCE_DIR) / "tests/fixtures/models";
}

inline nlohmann::json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Every fixture directory with an expected.json, sorted.
inline std::vector<std::string> FixtureNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(FixturesDir())) {
    if (std::filesystem::exists(entry.path() / "expected.json")) names.push_back(entry.path().filename());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// One JSON object per non-empty line.
inline std::vector<nlohmann::json> ParseJsonLines(const std::string& text) {
  std::vector<nlohmann::json> objects;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) objects.push_back(nlohmann::json::parse(line));
  }
  return objects;
}

}  // namespace lattice::testing
