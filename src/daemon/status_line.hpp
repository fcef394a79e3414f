#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/stats.hpp"
#include "kernel/swaps.hpp"

namespace vramswap::daemon {

struct StatusFacts {
  std::string gpu;            // "GPU 0 (NVIDIA H100 80GB HBM3)"
  uint64_t size_bytes = 0;
  std::string device;         // "/dev/nbd0", or empty when not attached
  std::string listen;         // the listen socket, or empty
  unsigned kernel_connections = 0;
  std::optional<SwapEntry> swap;  // the device's line of /proc/swaps
  engine::StatsSnapshot stats;
  bool device_lost = false;
  uint64_t copy_failures = 0;
  uint64_t checksum_failures = 0;
  std::string stopping;       // non-empty: why the daemon is still here while stopping
};

// The one line `systemctl status vramswap@NAME` shows: what is served, where,
// how much swap is in it, and whether anything went wrong.
std::string compose_status_line(const StatusFacts& facts);

}  // namespace vramswap::daemon
