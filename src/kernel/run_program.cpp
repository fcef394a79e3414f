#include "kernel/run_program.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.hpp"

extern char** environ;

namespace vramswap::kernel {
namespace {

constexpr size_t kept_output = 4096;

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string trim(std::string_view text) {
  const char* space = " \t\r\n";
  size_t begin = text.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(space);
  return std::string(text.substr(begin, end - begin + 1));
}

// Reads the child's stderr to the end, keeping only the tail: a tool that
// floods stderr must neither block on a full pipe nor grow our memory.
std::string drain(int fd) {
  std::string kept;
  char buffer[1024];
  for (;;) {
    ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    kept.append(buffer, static_cast<size_t>(got));
    if (kept.size() > 2 * kept_output) kept.erase(0, kept.size() - kept_output);
  }
  if (kept.size() > kept_output) kept.erase(0, kept.size() - kept_output);
  return kept;
}

}  // namespace

std::optional<std::string> find_program(std::string_view name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string_view::npos) {
    std::string path(name);
    if (is_executable_file(path)) return path;
    return std::nullopt;
  }
  std::string search = "";
  if (const char* env_path = std::getenv("PATH")) search = env_path;
  search += ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= search.size()) {
    size_t end = search.find(':', start);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + std::string(name);
      if (is_executable_file(candidate)) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string ProgramResult::summary() const {
  std::string_view text = error_output;
  while (!text.empty()) {
    size_t line_start = text.find_last_of('\n', text.size() - 1);
    std::string_view line =
        line_start == std::string_view::npos ? text : text.substr(line_start + 1);
    std::string trimmed = trim(line);
    if (!trimmed.empty()) return trimmed;
    if (line_start == std::string_view::npos) break;
    text = text.substr(0, line_start);
  }
  if (!started) return "could not run it";
  if (signal != 0) return std::string("killed by signal ") + strsignal(signal);
  return "exit status " + std::to_string(exit_status);
}

ProgramResult run_program(const std::vector<std::string>& argv) {
  ProgramResult result;
  if (argv.empty()) {
    result.error_output = "no program given";
    return result;
  }
  std::optional<std::string> path = find_program(argv[0]);
  if (!path) {
    result.error_output = argv[0] + " not found in PATH, /usr/sbin or /sbin";
    return result;
  }
  result.path = *path;

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    result.error_output = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  // The daemon holds the kernel's nbd sockets and the device: a helper must
  // not keep any of them open behind our back.
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

  // A signal mask or ignored signals inherited from a daemon thread would
  // change how the tool behaves: give it the defaults.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t empty_mask, all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attributes, &empty_mask);
  posix_spawnattr_setsigdefault(&attributes, &all_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  pid_t pid = -1;
  int spawn_error = posix_spawn(&pid, path->c_str(), &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  write_end.reset();
  if (spawn_error != 0) {
    result.error_output = "cannot run " + *path + ": " + std::strerror(spawn_error);
    return result;
  }
  result.started = true;
  result.error_output = drain(read_end.get());

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno == EINTR) continue;
    // ECHILD: someone set SIGCHLD to SIG_IGN and the child was reaped for us.
    result.error_output += std::string("\nwaitpid: ") + std::strerror(errno);
    return result;
  }
  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace vramswap::kernel
