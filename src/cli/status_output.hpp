#pragma once

#include <string>

#include "cli/status_report.hpp"

namespace vramswap::cli {

// The version of the JSON documents of `status` and `probe`: raised only when
// a field changes meaning or goes away (new fields may appear within one).
inline constexpr int json_format = 1;

// Paragraphs per instance, then the machine-wide messages; fits 80 columns.
std::string format_status_text(const StatusReport& report);

// The documented JSON document (vramswap(8), "JSON"), pretty-printed.
std::string format_status_json(const StatusReport& report);

}  // namespace vramswap::cli
