#include "daemon/instance_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "status/instance_status.hpp"

namespace vramswap::daemon {
namespace {

// The lock file, or why it cannot be had (no runtime directory, or none
// that takes files).
UniqueFd open_lock_file(const std::string& path, std::string& why) {
  const std::string dir = status::runtime_directory();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    why = "cannot create " + dir + ": " + std::strerror(errno);
    return UniqueFd();
  }
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) why = "cannot open " + path + ": " + std::strerror(errno);
  return fd;
}

}  // namespace

InstanceLock::InstanceLock(const std::string& instance, bool attach) {
  const std::string path = status::runtime_directory() + "/" + instance + ".lock";
  std::string why;
  fd_ = open_lock_file(path, why);
  if (!fd_) {
    if (attach) {
      throw StartupError(
          exit_code::unavailable,
          why + "; the lock there keeps a second vramswapd of " + instance +
              " from disconnecting this one's nbd device: mount a tmpfs on /run, or point "
              "VRAMSWAP_RUNTIME_DIR at a directory only root can write");
    }
    log_warning(
        "%s: serving without the instance lock (with attach = no the listen socket "
        "alone keeps a second vramswapd of %s away)",
        why.c_str(), instance.c_str());
    return;
  }
  if (flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = pread(fd_.get(), pid, sizeof pid - 1, 0);
    while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' '))
      pid[--n] = '\0';
    throw StartupError(exit_code::unavailable,
                       "instance " + instance + " is already served by another vramswapd" +
                           (n > 0 ? std::string(" (pid ") + pid + ")" : std::string()) +
                           "; stop it first (systemctl stop vramswap@" + instance + ")");
  }
  const std::string mine = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_.get(), 0) == 0) {
    ssize_t ignored = pwrite(fd_.get(), mine.data(), mine.size(), 0);
    (void)ignored;
  }
}

}  // namespace vramswap::daemon
