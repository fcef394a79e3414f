#pragma once

#include <string>

namespace vramswap::config {

// The StartupError for a configuration file that cannot be opened or
// examined (errno `error`): missing, not permitted, or another cause.
[[noreturn]] void throw_cannot_open(const std::string& path, int error);

}  // namespace vramswap::config
