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

// "NAME=value" entries added to (or replacing in) the child's environment.
using EnvOverrides = std::vector<std::string>;

// Runs argv[0] with the arguments (no shell), waits, and returns what it printed.
ProcessResult RunProcess(const std::vector<std::string>& argv, const EnvOverrides& env = {});

// Starts argv[0] in the background with its output discarded; returns its pid.
int StartProcess(const std::vector<std::string>& argv, const EnvOverrides& env = {});
// A background process whose first line of stdout was read (e.g. "listening on ...").
struct BackgroundProcess {
  int pid = -1;
  int stdout_fd = -1;  // kept open so the child never writes to a closed pipe
  std::string first_line;
};
// Starts argv[0] (stderr discarded) and waits up to `timeout_s` for its first line.
BackgroundProcess StartWithFirstLine(const std::vector<std::string>& argv, int timeout_s);
// SIGTERM, then SIGKILL after `timeout_s`; returns the exit code (-1 if killed).
int StopProcess(BackgroundProcess& process, int timeout_s);

// Waits for a started process (at most `timeout_s`, then kills it); returns its exit code.
int WaitProcess(int pid, int timeout_s);

}  // namespace lattice::testing
