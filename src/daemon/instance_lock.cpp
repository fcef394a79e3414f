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

// Each retry means another daemon removed the file between our open and our
// lock, so a handful is plenty; the bound only keeps a pathological race
// from spinning forever.
constexpr int lock_attempts = 100;

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

bool same_file(int fd, const std::string& path) {
  struct stat held {
  }, named{};
  return fstat(fd, &held) == 0 && stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}

}  // namespace

InstanceLock::InstanceLock(const std::string& instance, bool attach)
    : path_(status::runtime_directory() + "/" + instance + ".lock") {
  for (int attempt = 0;; ++attempt) {
    std::string why;
    fd_ = open_lock_file(path_, why);
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
      fd_.reset();
      throw StartupError(exit_code::in_use,
                         "instance " + instance + " is already served by another vramswapd" +
                             (n > 0 ? std::string(" (pid ") + pid + ")" : std::string()) +
                             "; stop it first (systemctl stop vramswap@" + instance + ")");
    }
    // A daemon that ends removes the file while still holding its lock (see
    // the destructor). If it did so between our open and our flock, we now
    // hold the lock of a file no longer at the path, and a third daemon
    // could create and lock a new one: only the lock of the file at the path
    // counts, so try again on that one.
    if (same_file(fd_.get(), path_)) break;
    if (attempt + 1 >= lock_attempts) {
      fd_.reset();
      throw StartupError(exit_code::os_error, "cannot lock " + path_ + ": it keeps being replaced");
    }
  }
  const std::string mine = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_.get(), 0) == 0) {
    ssize_t ignored = pwrite(fd_.get(), mine.data(), mine.size(), 0);
    (void)ignored;
  }
}

InstanceLock::~InstanceLock() {
  // Unlink first, close (which releases the lock) after: whoever opens the
  // path from now on gets a new file, and whoever opened the old one before
  // the unlink finds, once it gets the lock, that its file is no longer at
  // the path, and tries again (see the constructor). Closing first would let
  // a new daemon lock the file in between, and our unlink would then remove
  // its lock file from under it.
  if (fd_) unlink(path_.c_str());
}

}  // namespace vramswap::daemon
