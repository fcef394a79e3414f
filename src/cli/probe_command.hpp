#pragma once

#include <string>

#include "cli/probe_report.hpp"

namespace vramswap::cli {

// Asks the driver for the GPUs and their free VRAM (through each GPU's
// primary context; nothing is allocated), reads the config file and the
// status files of running daemons.
ProbeInputs gather_probe_inputs(const std::string& config_path);

// `vramswap probe [--json]`: prints the report, returns the exit status.
// Without --json, errors that stop it (no driver, no GPU) go to stderr.
int run_probe(const std::string& config_path, bool json);

}  // namespace vramswap::cli
