// The local launcher of `lattice run`: rank 0 re-executes its own command line once
// per other rank (with --rank, --world-size and the store address appended) and
// watches the children: one that dies takes the whole run down instead of leaving
// the others waiting on a collective.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace lattice {

class LocalLauncher {
 public:
  // Starts ranks 1..world_size-1.
  static absl::StatusOr<std::unique_ptr<LocalLauncher>> Start(const std::vector<std::string>& argv, int world_size,
                                                              const std::string& store_host, int store_port);
  // Waits for every child to exit cleanly (one that does not ends this process).
  void Wait();
  // Ends the children (rank 0 failed).
  void Kill();
  ~LocalLauncher();

 private:
  LocalLauncher() = default;
  void Watch();

  std::vector<pid_t> pids_;  // index = rank - 1
  std::thread watcher_;
};

}  // namespace lattice
