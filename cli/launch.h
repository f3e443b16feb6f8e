// The local launcher of `lattice run` and `lattice serve`: it starts one child
// process per rank from a command line it is given per rank, and watches the
// children: one that dies takes the whole run down instead of leaving the others
// waiting on a collective.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

class LocalLauncher {
 public:
  using CommandFor = std::function<std::vector<std::string>(int rank)>;
  // Starts ranks [first_rank, end_rank), each with command(rank) (argv[0] is ignored:
  // the children run this same executable).
  static absl::StatusOr<std::unique_ptr<LocalLauncher>> Start(int first_rank, int end_rank, const CommandFor& command);
  // `lattice run`'s children: its own command line with --rank, --world-size and the
  // store address appended, for ranks 1..world_size-1.
  static absl::StatusOr<std::unique_ptr<LocalLauncher>> StartRanks(const std::vector<std::string>& argv,
                                                                   int world_size, const std::string& store_host,
                                                                   int store_port);
  // Waits for every child to exit cleanly. One that does not ends this process, with
  // the child's exit code (3 if a signal killed it), after ending the others.
  void Wait();
  // Ends the children (rank 0 failed and reports why itself): their deaths are then
  // expected, and end nothing.
  void Kill();
  ~LocalLauncher();

 private:
  LocalLauncher() = default;
  void Watch();
  void KillChildren();

  int first_rank_ = 0;
  std::atomic<bool> stopping_{false};
  std::vector<pid_t> pids_;  // index = rank - first_rank_
  std::thread watcher_;
};

}  // namespace lattice
