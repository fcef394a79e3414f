#pragma once

#include <string>

#include "cli/status_report.hpp"

namespace vramswap::cli {

// Looks at the machine: the config file, the status files in the runtime
// directory ($VRAMSWAP_RUNTIME_DIR or /run/vramswap) and whether their
// daemons live, /proc/swaps, the udev links, systemd's units and, when some
// instance does not run, the NVIDIA driver.
StatusInputs gather_status_inputs(const std::string& config_path);

// `vramswap status [--json]`: prints the report, returns the exit status.
int run_status(const std::string& config_path, bool json);

}  // namespace vramswap::cli
