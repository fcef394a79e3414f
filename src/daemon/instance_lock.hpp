#pragma once

#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::daemon {

// Holds <runtime dir>/NAME.lock for as long as the daemon runs. Two daemons
// serving one instance would fight over its nbd device and its socket; the
// second one is refused (exit_code::in_use), naming the first one's pid. The
// kernel drops the lock when the process dies, however it dies; a daemon that
// ends normally also removes the file, so a clean stop leaves nothing behind.
class InstanceLock {
 public:
  explicit InstanceLock(const std::string& instance);
  ~InstanceLock();
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace vramswap::daemon
