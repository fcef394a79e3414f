#pragma once

#include "config/config.hpp"

namespace vramswap::daemon {

// Everything the configuration alone decides, checked before the daemon
// loads the driver or allocates VRAM: a mistake found only after a
// multi-gigabyte allocation and the workers' start wastes seconds of boot,
// and by then the message could no longer point at the line to edit. Throws
// StartupError(exit_code::config) with "<file>:<line>: key = value: cause;
// fix". The engine checks the same again right before it acts, for whatever
// changed in between.
void check_before_allocating(const config::ConfigReport& report,
                             const config::DeviceConfig& device);

}  // namespace vramswap::daemon
