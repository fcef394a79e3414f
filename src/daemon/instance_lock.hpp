#pragma once

#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::daemon {

// Holds <runtime dir>/NAME.lock for as long as the daemon runs. Two daemons
// serving one instance would fight over its nbd device and its socket; the
// second one is refused, naming the first one's pid. The kernel drops the
// lock when the process dies, however it dies.
class InstanceLock {
 public:
  explicit InstanceLock(const std::string& instance);

 private:
  UniqueFd fd_;
};

}  // namespace vramswap::daemon
