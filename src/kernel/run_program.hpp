#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vramswap::kernel {

// Where a system tool lives: the first executable `name` in $PATH, then in
// /usr/sbin and /sbin, which a daemon's or a user's PATH may lack while the
// tools we need (modprobe, mkswap) live there. Names with a '/' are taken as
// they are.
std::optional<std::string> find_program(std::string_view name);

struct ProgramResult {
  bool started = false;      // false: not found or could not be spawned (see `error_output`)
  int exit_status = -1;      // the program's exit status; -1 when it was killed by a signal
  int signal = 0;            // the signal that killed it, if any
  std::string path;          // what was run
  std::string error_output;  // what it wrote to stderr (the last 4 KiB)

  bool succeeded() const noexcept { return started && exit_status == 0; }
  // The last non-empty line of stderr, or a description of why it did not
  // run or how it ended: the one thing worth putting in an error message.
  std::string summary() const;
};

// Runs argv[0] (looked up with find_program) with argv[1..], stdin and stdout
// on /dev/null, stderr captured, no file descriptor of ours inherited, and
// waits for it. For startup and shutdown helpers only (modprobe, mkswap): it
// allocates and blocks. Uses posix_spawn (vfork semantics), so it is cheap
// even when this process has locked gigabytes with mlockall.
ProgramResult run_program(const std::vector<std::string>& argv);

}  // namespace vramswap::kernel
