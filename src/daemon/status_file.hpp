#pragma once

#include <string>

#include "status/instance_status.hpp"

namespace vramswap::daemon {

// The daemon's status file (<runtime dir>/NAME.json, read by `vramswap
// status`). The device comes first: a status file that cannot be written
// (no /run in an initramfs or a minimal container, a full or read-only
// runtime directory) never stops the daemon. It is tried again at every
// refresh; the log says once when it goes missing, with the cause, and once
// when it is back, and systemd's status line says it is missing meanwhile.
class StatusFile {
 public:
  void write(const status::InstanceStatus& status);
  bool missing() const noexcept { return missing_; }

 private:
  bool missing_ = false;
};

}  // namespace vramswap::daemon
