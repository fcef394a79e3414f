#pragma once

#include <string>

namespace vramswap::kernel {

struct BlockDeviceUse {
  bool in_use = false;
  // Who holds it, for messages: "active swap", "mounted at /mnt", "held by
  // dm-0", or "held exclusively by another program".
  std::string holder;
};

// Whether anything holds the block device at `path` (a symlink is followed).
//
// The test is the kernel's own: an O_EXCL open of a block device fails with
// EBUSY while anyone else has claimed it exclusively, and swapon, mounts and
// stacked devices (device-mapper, md, bcache) all do. That catches holders in
// other mount namespaces and leaves no window between looking and deciding.
// /sys/block/NAME/holders alone would miss swap and mounts, so it, /proc/swaps
// and /proc/self/mountinfo only serve to name the holder. A plain open without
// O_EXCL (dd, a backup tool) is not a claim and is not reported.
//
// Opening a block device can make the kernel read it (partition scan): do not
// call this on a /dev/nbdX from a thread that serves that device.
// Throws StartupError when `path` is not a block device or cannot be opened.
BlockDeviceUse block_device_use(const std::string& path);

inline bool block_device_in_use(const std::string& path) {
  return block_device_use(path).in_use;
}

}  // namespace vramswap::kernel
