#pragma once

#include <stdexcept>
#include <string>

#include "common/exit_codes.hpp"

namespace vramswap {

// Thrown only while starting up or shutting down, never on the I/O path: the
// message is the one line the user sees (cause and fix), the code is the
// process exit status.
class StartupError : public std::runtime_error {
 public:
  StartupError(int exit_status, const std::string& message)
      : std::runtime_error(message), exit_status_(exit_status) {}
  int exit_status() const noexcept { return exit_status_; }

 private:
  int exit_status_;
};

}  // namespace vramswap
