#pragma once

#include <string>

namespace vramswap::config {

// The daemon runs as root and acts on what the file says (which GPU, which
// socket path, which group may use it), so only root may be able to change
// it. Throws StartupError(exit_code::no_permission) naming the culprit and
// the chown/chmod that fixes it when the file, or a directory above it
// (followed through symbolic links), is owned by someone other than root or
// writable by group or others. A world-writable directory with the sticky
// bit (/tmp) is accepted: there only root and an entry's owner can replace
// the entry, and the entries below it are checked in turn.
void check_config_file_trusted(const std::string& path);

}  // namespace vramswap::config
