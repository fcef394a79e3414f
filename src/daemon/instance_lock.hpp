#pragma once

#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::daemon {

// Holds <runtime dir>/NAME.lock for as long as the daemon runs. Two daemons
// serving one instance would fight over its nbd device and its socket; the
// second one is refused (exit_code::in_use), naming the first one's pid. The
// kernel drops the lock when the process dies, however it dies; a daemon that
// ends normally also removes the file, so a clean stop leaves nothing behind.
//
// Where the runtime directory cannot be made (no /run in an initramfs or a
// minimal container), the lock is required only when the daemon attaches a
// kernel device: a second daemon of the instance would take the first one's
// nbd device (same backend identifier) for a dead daemon's and disconnect it,
// failing every swapped page. With attach = no the listen socket alone keeps
// a second daemon off (it refuses a socket that is still served), so the
// daemon serves without the lock and says so.
class InstanceLock {
 public:
  InstanceLock(const std::string& instance, bool attach);
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace vramswap::daemon
