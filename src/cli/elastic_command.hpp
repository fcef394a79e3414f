#pragma once

#include <chrono>
#include <string>

#include "status/control_protocol.hpp"

namespace vramswap::cli {

// How long `vramswap release` and `vramswap restore` wait for the daemon's
// answer. Generous: moving 16 GiB of VRAM to a spill file on disk takes
// minutes at disk speed, and the daemon answers only once it is done (it
// serves one request at a time, so a second one also waits for the first).
inline constexpr std::chrono::minutes control_timeout{10};

// What asking the daemon came to: the exit status (vramswap(8): 0 done, 1 the
// daemon refused, failed or did not answer, 3 not running, 77 not root, 71 a
// system call failed) and the line to print, to standard output when the
// daemon did what was asked, to standard error otherwise.
struct ControlOutcome {
  int exit_status = 0;
  std::string line;
};

struct ControlTarget {
  std::string instance;
  std::string socket_path;  // status::control_socket_path(instance)
  bool root = false;        // geteuid() == 0
  std::chrono::milliseconds timeout = control_timeout;
};

// Connects to the instance's control socket, sends `request`, waits for the
// one-line answer.
ControlOutcome ask_daemon(const ControlTarget& target, const status::ControlRequest& request);

// `vramswap release NAME [SIZE|all]`, `vramswap restore NAME`: asks, prints,
// returns the exit status.
int run_control(const std::string& instance, const status::ControlRequest& request);

}  // namespace vramswap::cli
