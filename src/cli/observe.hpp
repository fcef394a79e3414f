#pragma once

// Reading what both commands look at: the config file and the status files.

#include <string>
#include <vector>

#include "cli/status_report.hpp"

namespace vramswap::cli {

// Reads and checks the config file; never throws for what a user can hit.
ConfigObservation observe_config(const std::string& path);

struct StatusDirectory {
  std::vector<status::InstanceStatus> files;  // sorted by file name
  // One line (cause; fix) per file that is not a status file this program
  // can read, or about the directory itself.
  std::vector<std::string> unreadable;
};

// Every NAME.json in the runtime directory. Unlike status::read_status_files(),
// a file this program cannot read is reported, not skipped: it may be a
// newer daemon's.
StatusDirectory read_status_directory(const std::string& directory);

}  // namespace vramswap::cli
