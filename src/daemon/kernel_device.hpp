#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kernel/nbd_netlink.hpp"

namespace vramswap::engine {
class Server;
}

namespace vramswap::daemon {

// What the nbd device is made of: the instance's name (its backend name and
// swap label), the connection count and timeout decided once
// (connection_plan.hpp), and what swap = yes sets up.
struct KernelDeviceOptions {
  std::string name;
  std::optional<unsigned> nbd_index;  // none: the kernel picks
  unsigned connections = 0;
  unsigned timeout_s = 0;  // 0: no timeout
  int priority = 0;        // swap priority; -1: the kernel picks
  bool discard = false;
};

// The kernel nbd device of one instance: connected over netlink to the
// server's socket pairs, optionally made swap by the daemon itself
// (swap = yes), and disconnected only once nothing uses it.
class KernelDevice {
 public:
  // `netlink` is opened before the daemon commits VRAM (a kernel without
  // the nbd driver is then refused before anything is allocated).
  KernelDevice(KernelDeviceOptions options, kernel::NbdNetlink netlink, engine::Server& server);
  ~KernelDevice();
  KernelDevice(const KernelDevice&) = delete;
  KernelDevice& operator=(const KernelDevice&) = delete;

  const std::string& path() const noexcept { return path_; }  // /dev/nbdX
  uint32_t index() const noexcept { return index_; }
  const std::string& backend() const noexcept { return backend_; }

  // swap = yes: mkswap + swapon at the configured priority.
  void enable_swap();
  // swap = yes: swapoff. False (and `why` says so) when the kernel refused,
  // e.g. not enough memory to take the pages back: keep serving then.
  bool disable_swap(std::string& why);
  // Hands the kernel new connections in place of those it gave up on (a
  // request that outlived `timeout`). Returns how many; throws StartupError
  // when the kernel refuses them (e.g. the device was disconnected).
  unsigned restore_connections(engine::Server& server);
  // Whether anything (swap, a mount, a stacked device) holds the device;
  // `holder` names it.
  bool in_use(std::string& holder) const;
  // Disconnects the device. Only when in_use() is false: a disconnect fails
  // every request still outstanding.
  void disconnect();

 private:
  void release_stale_device();

  const KernelDeviceOptions options_;
  kernel::NbdNetlink netlink_;
  uint32_t index_ = 0;
  std::string path_;
  std::string backend_;
  bool connected_ = false;
  bool swap_enabled_ = false;
};

}  // namespace vramswap::daemon
