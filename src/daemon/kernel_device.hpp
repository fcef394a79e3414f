#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kernel/nbd_netlink.hpp"

namespace vramswap::engine {
class Server;
}

namespace vramswap::daemon {

// Disconnects nbd`index`, which an earlier daemon of the instance left
// configured, when its pages cannot be brought back (`why`): the kernel then
// fails them (their owners get SIGBUS) rather than a new daemon serving
// other bytes in their place, and turns its swap off (the reads fail at
// once: the kernel marks those pages lost). Says so in one line.
void release_left_device(kernel::NbdNetlink& netlink, uint32_t index, const std::string& why);

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
  // How long the kernel queues requests while no daemon serves the device
  // (NBD_ATTR_DEAD_CONN_TIMEOUT; vramswapd(8), RESTART).
  unsigned dead_connection_timeout_s = 0;
};

// The kernel nbd device of one instance: connected over netlink to the
// server's socket pairs, optionally made swap by the daemon itself
// (swap = yes), and disconnected only once nothing uses it.
class KernelDevice {
 public:
  // `netlink` is opened before the daemon commits VRAM (a kernel without
  // the nbd driver is then refused before anything is allocated).
  // `adopt`: the index of the device an earlier daemon of this instance
  // handed over (RESTART): it gets the server's sockets with
  // NBD_CMD_RECONFIGURE, as many as it has connections, instead of a new
  // device being made. Throws StartupError when the kernel does not take them.
  KernelDevice(KernelDeviceOptions options, kernel::NbdNetlink netlink, engine::Server& server,
               std::optional<uint32_t> adopt = std::nullopt);
  ~KernelDevice();
  KernelDevice(const KernelDevice&) = delete;
  KernelDevice& operator=(const KernelDevice&) = delete;

  const std::string& path() const noexcept { return path_; }  // /dev/nbdX
  uint32_t index() const noexcept { return index_; }
  const std::string& backend() const noexcept { return backend_; }
  // Whether the device was handed over by the daemon before.
  bool adopted() const noexcept { return adopted_; }
  // The sockets the device has (a handed-over device keeps its own count).
  unsigned connections() const noexcept { return connections_; }

  // Stopping for a restart: the device stays configured, its sockets die
  // with the server and the kernel queues its requests for the next daemon.
  // Nothing disconnects it from then on.
  void keep_for_next_daemon() noexcept { connected_ = false; }

  // swap = yes: mkswap + swapon at the configured priority; on a handed-over
  // device that is swap already, nothing (mkswap would wipe its pages).
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
  void reattach(uint32_t index, engine::Server& server);

  const KernelDeviceOptions options_;
  kernel::NbdNetlink netlink_;
  uint32_t index_ = 0;
  std::string path_;
  std::string backend_;
  unsigned connections_ = 0;
  bool connected_ = false;
  bool adopted_ = false;
  bool swap_enabled_ = false;
};

}  // namespace vramswap::daemon
