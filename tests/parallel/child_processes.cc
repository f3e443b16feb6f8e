// posix_spawn children (safe from a process that already runs threads), poll their
// exits against a deadline, SIGKILL the process groups of stragglers.
#include "tests/parallel/child_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace lattice::testing {

std::string ChildResult::Describe() const {
  if (timed_out) return "timed out (killed)";
  if (signal != 0) return absl::StrCat("killed by signal ", signal, " (", strsignal(signal), ")");
  return absl::StrCat("exit code ", exit_code);
}

namespace {

std::vector<std::string> MergedEnv(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    vars[entry.substr(0, entry.find('='))] = entry;
  }
  for (const std::string& entry : extra) vars[entry.substr(0, entry.find('='))] = entry;
  std::vector<std::string> merged;
  for (auto& [name, entry] : vars) merged.push_back(entry);
  return merged;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::vector<ChildResult> RunChildren(const std::vector<ChildSpec>& children,
                                     std::chrono::milliseconds timeout) {
  std::vector<ChildResult> results(children.size());
  std::vector<pid_t> pids(children.size(), -1);
  for (size_t i = 0; i < children.size(); ++i) {
    std::vector<std::string> argv = children[i].argv;
    std::vector<std::string> env = MergedEnv(children[i].env);
    std::vector<char*> argv_ptrs = Pointers(argv);
    std::vector<char*> env_ptrs = Pointers(env);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!children[i].stdout_path.empty()) {
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, children[i].stdout_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    if (posix_spawn(&pids[i], argv_ptrs[0], &actions, &attr, argv_ptrs.data(), env_ptrs.data()) !=
        0) {
      pids[i] = -1;
      results[i].exit_code = 127;
    }
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t running = 0;
  for (pid_t pid : pids) running += pid > 0;
  while (running > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] <= 0) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      if (WIFEXITED(status)) results[i].exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) results[i].signal = WTERMSIG(status);
      ::kill(-pids[i], SIGKILL);  // anything it left behind in its group
      pids[i] = -1;
      --running;
    }
    if (running == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] <= 0) continue;
        ::kill(-pids[i], SIGKILL);
        ::waitpid(pids[i], nullptr, 0);
        results[i].timed_out = true;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return results;
}

std::string ParallelTestWorker() { return LATTICE_PARALLEL_TEST_WORKER; }

}  // namespace lattice::testing
