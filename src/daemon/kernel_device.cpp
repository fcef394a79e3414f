#include "daemon/kernel_device.hpp"

#include <chrono>
#include <cstdio>
#include <thread>
#include <utility>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "engine/server.hpp"
#include "kernel/block_device.hpp"
#include "kernel/swaps.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::daemon {

KernelDevice::KernelDevice(KernelDeviceOptions options, kernel::NbdNetlink netlink,
                           engine::Server& server, std::optional<uint32_t> adopt)
    : options_(std::move(options)),
      netlink_(std::move(netlink)),
      backend_(systemd::backend_identifier(options_.name)),
      connections_(options_.connections) {
  if (adopt) {
    reattach(*adopt, server);
    return;
  }
  // A device an earlier daemon left was judged before (find_handover):
  // taken over, or disconnected.
  // The sockets are served before the kernel gets them: it reads the device
  // (partition scan, udev's blkid) the moment it is connected.
  std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(options_.connections);
  kernel::NbdConnectParams params;
  for (const auto& fd : kernel_ends)
    params.socket_fds.push_back(fd.get());
  params.size_bytes = server.export_size();
  params.server_flags = server.transmission_flags();
  params.timeout_seconds = options_.timeout_s;
  if (options_.dead_connection_timeout_s != 0)
    params.dead_connection_timeout_seconds = options_.dead_connection_timeout_s;
  params.destroy_on_disconnect = true;
  params.backend_identifier = backend_;
  if (options_.nbd_index) params.index = *options_.nbd_index;
  index_ = netlink_.connect(params);
  connected_ = true;
  path_ = "/dev/nbd" + std::to_string(index_);
  // kernel_ends close here: the kernel holds its own references now.
  try {
    kernel::trigger_change_uevent("nbd" + std::to_string(index_));
  } catch (const StartupError& e) {
    log_warning("cannot ask udev to name %s: %s", path_.c_str(), e.what());
  }
  const size_t connections = params.socket_fds.size();
  log_info("attached %s (%zu connection%s, backend %s)", path_.c_str(), connections,
           connections == 1 ? "" : "s", backend_.c_str());
}

KernelDevice::~KernelDevice() {
  if (!connected_) return;
  // Reached on a startup failure after connecting, or an exception: never
  // leave a connected device behind that no daemon serves.
  std::string holder;
  if (in_use(holder)) {
    log_error("%s is still in use (%s) while the daemon exits: its I/O will fail", path_.c_str(),
              holder.c_str());
  }
  try {
    disconnect();
  } catch (const std::exception& e) {
    log_error("cannot disconnect %s: %s", path_.c_str(), e.what());
  }
}

void release_left_device(kernel::NbdNetlink& netlink, uint32_t index, const std::string& why) {
  const std::string path = "/dev/nbd" + std::to_string(index);
  // Held exclusively counts: /proc/swaps may name the area by a path that no
  // longer resolves (kernel::swap_off_if_swap()).
  const bool swap =
      kernel::active_swap_for_device(path).has_value() || kernel::block_device_use(path).in_use;
  log_error(
      "%s was left by an earlier vramswapd of this instance, and its pages cannot be brought "
      "back (%s): disconnecting it%s",
      path.c_str(), why.c_str(),
      swap ? " (it is still swap: the processes whose pages were there get SIGBUS)" : "");
  netlink.disconnect(index);
  if (!swap) return;
  // Its swap unit no longer goes down with the daemon (a restart leaves it
  // on): the swap is turned off here, or the kernel would keep writing to a
  // device that fails every request. Every read fails at once now, so this
  // swapoff waits for nothing; the kernel marks each page lost.
  try {
    if (kernel::swap_off_if_swap(path)) log_info("swap off %s", path.c_str());
  } catch (const StartupError& e) {
    log_error("cannot turn swap off on %s: %s; run swapoff %s", path.c_str(), e.what(),
              path.c_str());
  }
}

void KernelDevice::reattach(uint32_t index, engine::Server& server) {
  index_ = index;
  path_ = "/dev/nbd" + std::to_string(index_);
  const std::optional<kernel::NbdSysfs> sysfs = kernel::read_nbd_sysfs(index_);
  if (!sysfs || sysfs->connections == 0) {
    throw StartupError(exit_code::unavailable,
                       path_ + " went away before it could be reattached; restart the service");
  }
  connections_ = sysfs->connections;
  if (connections_ != options_.connections) {
    log_notice("%s keeps its %u connection%s; connections = %u applies once it is stopped",
               path_.c_str(), connections_, connections_ == 1 ? "" : "s", options_.connections);
  }
  // The kernel takes a socket only in place of a connection it marked dead;
  // the earlier daemon's sockets die as it exits, which the kernel notices
  // on its own workqueue a moment later. A socket it did not take comes back
  // closed: hand over again until every connection is ours.
  constexpr int attempts = 50;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    const unsigned live = server.live_kernel_connections();
    if (live >= connections_) break;
    std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(connections_ - live);
    std::vector<int> fds;
    for (const auto& fd : kernel_ends)
      fds.push_back(fd.get());
    netlink_.replace_dead_sockets(index_, fds, backend_);
    kernel_ends.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (server.live_kernel_connections() < connections_) {
    throw StartupError(exit_code::unavailable, "the kernel kept " + path_ +
                                                   "'s earlier connections: is another vramswapd "
                                                   "of this instance still serving it?");
  }
  connected_ = true;
  adopted_ = true;
  log_info("reattached %s (%u connection%s, backend %s) with NBD_CMD_RECONFIGURE", path_.c_str(),
           connections_, connections_ == 1 ? "" : "s", backend_.c_str());
}

unsigned KernelDevice::restore_connections(engine::Server& server) {
  const unsigned live = server.live_kernel_connections();
  if (!connected_ || live >= connections_) return 0;
  std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(connections_ - live);
  std::vector<int> fds;
  for (const auto& fd : kernel_ends)
    fds.push_back(fd.get());
  netlink_.replace_dead_sockets(index_, fds, backend_);
  return static_cast<unsigned>(fds.size());
}

void KernelDevice::enable_swap() {
  // A handed-over device that something holds is still the swap the daemon
  // before turned on, even where /proc/swaps names it by a path of that
  // daemon's gone mount namespace (kernel::swap_off_if_swap()): mkswap would
  // fail on it, and the daemon must never drop it.
  std::string holder;
  if (adopted_ && (kernel::active_swap_for_device(path_) || in_use(holder))) {
    swap_enabled_ = true;
    log_info("%s is still swap: kept as it is", path_.c_str());
    return;
  }
  kernel::make_swap(path_, "vramswap-" + options_.name);
  kernel::swap_on(path_, options_.priority, options_.discard);
  swap_enabled_ = true;
  log_info("swap on %s at priority %d%s", path_.c_str(), options_.priority,
           options_.discard ? " with discard" : "");
}

bool KernelDevice::disable_swap(std::string& why) {
  std::string holder;
  if (!kernel::active_swap_for_device(path_) && !in_use(holder)) {
    swap_enabled_ = false;
    return true;
  }
  try {
    // In use but not listed under its path: swapoff itself tells.
    if (!kernel::swap_off_if_swap(path_)) {
      swap_enabled_ = false;
      return true;
    }
  } catch (const StartupError& e) {
    why = e.what();
    return false;
  }
  swap_enabled_ = false;
  log_info("swap off %s", path_.c_str());
  return true;
}

bool KernelDevice::in_use(std::string& holder) const {
  const kernel::BlockDeviceUse use = kernel::block_device_use(path_);
  holder = use.holder;
  return use.in_use;
}

void KernelDevice::disconnect() {
  if (!connected_) return;
  connected_ = false;
  netlink_.disconnect(index_);
  log_info("disconnected %s", path_.c_str());
}

}  // namespace vramswap::daemon
