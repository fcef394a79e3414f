#include "kernel/block_device.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"
#include "kernel/swaps.hpp"

namespace vramswap::kernel {
namespace {

// Where the device is mounted, from /proc/self/mountinfo (its third field is
// the device number as MAJOR:MINOR; the fifth the mount point).
std::optional<std::string> mount_point_of(dev_t device) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  const std::string wanted = std::to_string(major(device)) + ":" + std::to_string(minor(device));
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string mount_id, parent_id, numbers, root, mount_point;
    if (fields >> mount_id >> parent_id >> numbers >> root >> mount_point && numbers == wanted) {
      return mount_point;
    }
  }
  return std::nullopt;
}

// The devices stacked on it, from /sys/dev/block/MAJOR:MINOR/holders.
std::vector<std::string> sysfs_holders_of(dev_t device) {
  std::vector<std::string> holders;
  const std::string path = "/sys/dev/block/" + std::to_string(major(device)) + ":" +
                           std::to_string(minor(device)) + "/holders";
  if (DIR* directory = ::opendir(path.c_str())) {
    while (dirent* entry = ::readdir(directory)) {
      if (entry->d_name[0] != '.') holders.emplace_back(entry->d_name);
    }
    ::closedir(directory);
  }
  return holders;
}

std::string describe_holder(const std::string& path, dev_t device) {
  try {
    if (find_swap_for_device(read_proc_swaps(), path)) return "active swap";
  } catch (const StartupError&) {
    // Naming the holder is a courtesy; not being able to is no error.
  }
  if (auto mount_point = mount_point_of(device)) return "mounted at " + *mount_point;
  std::vector<std::string> holders = sysfs_holders_of(device);
  if (!holders.empty()) {
    std::string names;
    for (const std::string& holder : holders)
      names += (names.empty() ? "" : ", ") + holder;
    return "held by " + names;
  }
  return "held exclusively by another program";
}

}  // namespace

BlockDeviceUse block_device_use(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw StartupError(exit_code::os_error, "cannot look at " + path + ": " + std::strerror(errno));
  }
  if (!S_ISBLK(st.st_mode)) {
    throw StartupError(exit_code::software, path + " is not a block device");
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK));
  if (fd) return {};
  if (errno != EBUSY) {
    throw StartupError(exit_code::os_error,
                       "cannot open " + path + " to see who holds it: " + std::strerror(errno));
  }
  return {true, describe_holder(path, st.st_rdev)};
}

}  // namespace vramswap::kernel
