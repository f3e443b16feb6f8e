// Child processes for end-to-end tests: fork, exec, pipes read until EOF.
#include "tests/e2e/run_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

namespace lattice::testing {

namespace {

[[noreturn]] void Exec(const std::vector<std::string>& argv, const EnvOverrides& env) {
  for (const std::string& entry : env) putenv(const_cast<char*>(entry.c_str()));
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

int StartProcess(const std::vector<std::string>& argv, const EnvOverrides& env) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    Exec(argv, env);
  }
  return pid;
}

int WaitProcess(int pid, int timeout_s) {
  for (int waited_ms = 0; waited_ms < timeout_s * 1000; waited_ms += 10) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return ExitCode(status);
    usleep(10 * 1000);
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return -1;
}

BackgroundProcess StartWithFirstLine(const std::vector<std::string>& argv, int timeout_s) {
  int out_pipe[2];
  if (pipe(out_pipe) != 0) std::abort();
  BackgroundProcess process;
  process.pid = fork();
  if (process.pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    close(out_pipe[0]);
    Exec(argv, {});
  }
  close(out_pipe[1]);
  process.stdout_fd = out_pipe[0];
  pollfd fd = {process.stdout_fd, POLLIN, 0};
  char c;
  for (int waited_ms = 0; waited_ms < timeout_s * 1000;) {
    if (poll(&fd, 1, 100) <= 0) {
      waited_ms += 100;
      continue;
    }
    if (read(process.stdout_fd, &c, 1) != 1 || c == '\n') break;
    process.first_line += c;
  }
  return process;
}

int StopProcess(BackgroundProcess& process, int timeout_s) {
  if (process.pid <= 0) return -1;
  kill(process.pid, SIGTERM);
  const int code = WaitProcess(process.pid, timeout_s);
  if (process.stdout_fd >= 0) close(process.stdout_fd);
  process.pid = -1;
  return code;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, const EnvOverrides& env) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    close(out_pipe[0]);
    close(err_pipe[0]);
    Exec(argv, env);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  ProcessResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buffer[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = ExitCode(status);
  return result;
}

}  // namespace lattice::testing
