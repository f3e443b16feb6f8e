// Runs a real child process and captures its exit code, stdout and stderr.
#pragma once

#include <string>
#include <vector>

namespace lattice::testing {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] with the arguments (no shell), waits, and returns what it printed.
ProcessResult RunProcess(const std::vector<std::string>& argv);

}  // namespace lattice::testing
