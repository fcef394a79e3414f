#pragma once

#include "daemon/command_line.hpp"

namespace vramswap::daemon {

// Starts the instance, serves until asked to stop and nothing uses its
// device any more, then releases everything. Returns the exit status;
// startup problems are thrown as StartupError.
int run(const CommandLine& command_line);

}  // namespace vramswap::daemon
