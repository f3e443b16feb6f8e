// Runs several child processes at once with a bounded wait: the multi-process gloo
// and mpirun tests. Each child leads its own process group, so a straggler is killed
// together with anything it started (mpirun's ranks).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace lattice::testing {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is a path (no PATH search)
  std::vector<std::string> env;   // "NAME=value" added to (or overriding) ours
  std::string stdout_path;        // where its stdout goes; empty: inherit ours
};

struct ChildResult {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  bool timed_out = false;
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  std::string Describe() const;
};

// Starts every child, waits until all ended or `timeout` passed, then kills the rest.
std::vector<ChildResult> RunChildren(const std::vector<ChildSpec>& children,
                                     std::chrono::milliseconds timeout);

// The worker binary the parallel tests start (set by CMake).
std::string ParallelTestWorker();

}  // namespace lattice::testing
