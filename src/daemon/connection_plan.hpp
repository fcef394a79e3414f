#pragma once

#include "config/config.hpp"

namespace vramswap::daemon {

// How an instance is connected, decided once from its configuration: every
// part that sizes something by `connections` or `timeout` (the startup
// checks, the server's workers and slots, the nbd device and its
// replacement connections) takes its numbers from here.
struct ConnectionPlan {
  unsigned workers = 0;             // I/O workers: one per configured connection
  unsigned kernel_connections = 0;  // sockets the nbd driver gets (attach = yes), else 0
  bool listen = false;              // a listen socket for clients
  unsigned timeout_s = 0;           // the nbd driver's request timeout; 0: none
};

inline ConnectionPlan plan_connections(const config::DeviceConfig& device) {
  return {device.connections, device.attach ? device.connections : 0u, !device.listen.empty(),
          config::effective_timeout_s(device)};
}

}  // namespace vramswap::daemon
