#pragma once

#include <string>

#include "status/instance_status.hpp"

namespace vramswap::daemon {

// The one line `systemctl status vramswap@NAME` shows: what is served, where,
// how much swap is in it, and whether anything went wrong. `stopping`, when
// not empty, says why the daemon is still here after being asked to stop.
std::string compose_status_line(const status::InstanceStatus& s, const std::string& stopping);

}  // namespace vramswap::daemon
