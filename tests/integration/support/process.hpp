#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "fd_store_host.hpp"

namespace vramswap::test {

using Environment = std::vector<std::pair<std::string, std::string>>;

struct CommandResult {
  int exit_status = -1;  // the exit code, or 128 + signal
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved
};

// Runs a program to completion (killing it after `timeout`), capturing its output.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::seconds timeout = std::chrono::seconds(120),
                          const Environment& environment = {});

// Starts a program in the background with stdout/stderr appended to `log_path`.
// `passed`: descriptors handed over as systemd does (fd_store_host.hpp).
pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path,
            const Environment& environment = {}, const PassedFds* passed = nullptr);

// Waits for `pid` up to `timeout`; returns the exit code (128 + signal), or -1 on timeout.
int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& contents, int mode = 0600);

// A private directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace vramswap::test
