#include "daemon/kernel_device.hpp"

#include <cstdio>
#include <utility>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "engine/server.hpp"
#include "kernel/block_device.hpp"
#include "kernel/swaps.hpp"

namespace vramswap::daemon {

KernelDevice::KernelDevice(KernelDeviceOptions options, kernel::NbdNetlink netlink,
                           engine::Server& server)
    : options_(std::move(options)),
      netlink_(std::move(netlink)),
      backend_("vramswap/" + options_.name) {
  release_stale_device();
  // The sockets are served before the kernel gets them: it reads the device
  // (partition scan, udev's blkid) the moment it is connected.
  std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(options_.connections);
  kernel::NbdConnectParams params;
  for (const auto& fd : kernel_ends)
    params.socket_fds.push_back(fd.get());
  params.size_bytes = server.export_size();
  params.server_flags = server.transmission_flags();
  params.timeout_seconds = options_.timeout_s;
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

// A daemon of this instance that died without disconnecting leaves its
// device configured with dead sockets: every request to it fails, and it
// keeps the backend name udev links to. Its VRAM died with it, so there is
// nothing to save; disconnect it so the new device takes its place.
void KernelDevice::release_stale_device() {
  for (const kernel::NbdDeviceStatus& nbd : netlink_.query_all()) {
    if (!nbd.connected) continue;
    const std::string name = "nbd" + std::to_string(nbd.index);
    std::string backend;
    if (std::FILE* f = std::fopen(("/sys/block/" + name + "/backend").c_str(), "r")) {
      char line[256] = {};
      if (std::fgets(line, sizeof line, f)) backend = line;
      std::fclose(f);
    }
    while (!backend.empty() && (backend.back() == '\n' || backend.back() == ' '))
      backend.pop_back();
    if (backend != backend_) continue;
    const std::string path = "/dev/" + name;
    const auto swap = kernel::active_swap_for_device(path);
    log_error(
        "%s was left by an earlier vramswapd of this instance that did not stop cleanly%s; "
        "its contents are gone: disconnecting it",
        path.c_str(),
        swap ? " and is still active swap (processes whose pages were there will fail)" : "");
    netlink_.disconnect(nbd.index);
  }
}

unsigned KernelDevice::restore_connections(engine::Server& server) {
  const unsigned live = server.live_kernel_connections();
  if (!connected_ || live >= options_.connections) return 0;
  std::vector<UniqueFd> kernel_ends = server.open_kernel_sockets(options_.connections - live);
  std::vector<int> fds;
  for (const auto& fd : kernel_ends)
    fds.push_back(fd.get());
  netlink_.replace_dead_sockets(index_, fds, backend_);
  return static_cast<unsigned>(fds.size());
}

void KernelDevice::enable_swap() {
  kernel::make_swap(path_, "vramswap-" + options_.name);
  kernel::swap_on(path_, options_.priority, options_.discard);
  swap_enabled_ = true;
  log_info("swap on %s at priority %d%s", path_.c_str(), options_.priority,
           options_.discard ? " with discard" : "");
}

bool KernelDevice::disable_swap(std::string& why) {
  if (!kernel::active_swap_for_device(path_)) {
    swap_enabled_ = false;
    return true;
  }
  try {
    kernel::swap_off(path_);
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
