#pragma once

// A place that keeps file descriptors for the next run of the daemon
// (systemd's file descriptor store, src/systemd/fd_store.hpp), seen from the
// parts that fill it. Neutral on purpose: the store library parks VRAM there
// without depending on systemd, and its tests keep the descriptors
// themselves.

#include <string>
#include <string_view>

#include "common/unique_fd.hpp"

namespace vramswap {

// A descriptor with the name it was kept under, as handed back at start.
struct NamedFd {
  std::string name;
  UniqueFd fd;
};

class FdStoreSink {
 public:
  // Keeps a duplicate of `fd` under `name` (the caller keeps its own);
  // 0 or -errno.
  virtual int store(int fd, std::string_view name) = 0;
  // Drops what is kept under `name` (closing the kept descriptor); 0 or
  // -errno.
  virtual int remove(std::string_view name) = 0;
  virtual ~FdStoreSink() = default;
};

}  // namespace vramswap
