// Local launcher: fork/exec of the ranks and a watchdog (see launch.h).
#include "cli/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace lattice {

absl::StatusOr<std::unique_ptr<LocalLauncher>> LocalLauncher::Start(int first_rank, int end_rank,
                                                                     const CommandFor& command) {
  std::unique_ptr<LocalLauncher> launcher(new LocalLauncher());
  launcher->first_rank_ = first_rank;
  for (int rank = first_rank; rank < end_rank; ++rank) {
    std::vector<std::string> args = command(rank);
    std::vector<char*> c_args;
    for (std::string& a : args) c_args.push_back(a.data());
    c_args.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      launcher->Kill();
      return absl::InternalError(absl::StrCat("fork for rank ", rank, " failed"));
    }
    if (pid == 0) {
      execv("/proc/self/exe", c_args.data());
      std::perror("lattice: exec");
      _exit(127);
    }
    launcher->pids_.push_back(pid);
  }
  launcher->watcher_ = std::thread([l = launcher.get()] { l->Watch(); });
  return launcher;
}

absl::StatusOr<std::unique_ptr<LocalLauncher>> LocalLauncher::StartRanks(const std::vector<std::string>& argv,
                                                                          int world_size, const std::string& store_host,
                                                                          int store_port) {
  return Start(1, world_size, [&](int rank) {
    std::vector<std::string> args = argv;
    for (const std::string& extra :
         {std::string("--rank"), std::to_string(rank), std::string("--world-size"), std::to_string(world_size),
          std::string("--store-host"), store_host, std::string("--store-port"), std::to_string(store_port)}) {
      args.push_back(extra);
    }
    return args;
  });
}

void LocalLauncher::Watch() {
  size_t remaining = pids_.size();
  while (remaining > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    size_t rank = 0;
    while (rank < pids_.size() && pids_[rank] != pid) ++rank;
    if (rank == pids_.size()) continue;
    pids_[rank] = -1;
    --remaining;
    const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean && !stopping_.exchange(true)) {
      const std::string how = WIFEXITED(status) ? absl::StrCat("exited with code ", WEXITSTATUS(status))
                                                : absl::StrCat("was killed by signal ", WTERMSIG(status));
      std::fprintf(stderr, "lattice: rank %zu %s; stopping\n", rank + first_rank_, how.c_str());
      // The other ranks would wait on it forever: end them and this process now, failing
      // as the rank did (its own message says why).
      KillChildren();
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
    }
  }
}

void LocalLauncher::Wait() {
  if (watcher_.joinable()) watcher_.join();
}

void LocalLauncher::Kill() {
  stopping_ = true;
  KillChildren();
}

void LocalLauncher::KillChildren() {
  for (pid_t pid : pids_) {
    if (pid > 0) kill(pid, SIGKILL);
  }
}

LocalLauncher::~LocalLauncher() {
  if (watcher_.joinable()) {
    Kill();
    watcher_.join();
  }
}

}  // namespace lattice
