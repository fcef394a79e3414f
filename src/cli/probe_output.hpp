#pragma once

#include <string>

#include "cli/probe_report.hpp"

namespace vramswap::cli {

// A paragraph per GPU, then the configured devices and the messages.
std::string format_probe_text(const ProbeReport& report);

// The documented JSON document (vramswap(8), "JSON"), pretty-printed.
std::string format_probe_json(const ProbeReport& report);

}  // namespace vramswap::cli
