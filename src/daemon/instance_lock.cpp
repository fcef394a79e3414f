#include "daemon/instance_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/startup_error.hpp"
#include "status/instance_status.hpp"

namespace vramswap::daemon {

InstanceLock::InstanceLock(const std::string& instance) {
  const std::string dir = status::runtime_directory();
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw StartupError(exit_code::os_error,
                       "cannot create " + dir + ": " + std::strerror(errno));
  }
  const std::string path = dir + "/" + instance + ".lock";
  fd_.reset(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd_) {
    throw StartupError(exit_code::os_error, "cannot open " + path + ": " + std::strerror(errno));
  }
  if (flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = pread(fd_.get(), pid, sizeof pid - 1, 0);
    while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' ')) pid[--n] = '\0';
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
