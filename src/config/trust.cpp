#include "config/trust.hpp"

#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "config/file_access.hpp"

namespace vramswap::config {
namespace {

constexpr int max_symlinks = 40;  // as the kernel's path walk (ELOOP)

std::string owner_name(uid_t uid) {
  const passwd* user = ::getpwuid(uid);
  const std::string id = "uid " + std::to_string(uid);
  return user ? std::string(user->pw_name) + " (" + id + ")" : id;
}

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Checks every entry the kernel walks through to reach `path`, following
// symbolic links the way it does; `config_path` names the file in messages.
class TrustCheck {
 public:
  explicit TrustCheck(const std::string& config_path) : config_path_(config_path) {}

  void check_path(const std::string& path, bool is_file) {
    std::string absolute = path;
    if (!path.starts_with('/')) {
      char cwd[PATH_MAX];
      if (!::getcwd(cwd, sizeof cwd)) throw_cannot_open(config_path_, errno);
      absolute = std::string(cwd) + "/" + path;
    }
    check_entry("/", false);
    // Each prefix is looked at as the kernel resolves it, so "..", and
    // links met earlier, mean what they mean to the kernel.
    for (size_t slash = absolute.find('/', 1);; slash = absolute.find('/', slash + 1)) {
      const std::string prefix = absolute.substr(0, slash);
      const bool last = slash == std::string::npos;
      if (!prefix.ends_with('/')) check_entry(prefix, last && is_file);
      if (last) break;
    }
  }

 private:
  void check_entry(const std::string& path, bool is_file) {
    struct stat status {};
    if (::lstat(path.c_str(), &status) != 0) throw_cannot_open(config_path_, errno);
    if (S_ISLNK(status.st_mode)) {
      // A link's own mode means nothing; its directory is checked already,
      // and what it points to is checked now.
      if (++links_followed_ > max_symlinks) throw_cannot_open(config_path_, ELOOP);
      std::vector<char> target(size_t(status.st_size > 0 ? status.st_size : PATH_MAX) + 1);
      const ssize_t length = ::readlink(path.c_str(), target.data(), target.size());
      if (length < 0) throw_cannot_open(config_path_, errno);
      std::string destination(target.data(), size_t(length));
      if (!destination.starts_with('/')) destination = parent_of(path) + "/" + destination;
      check_path(destination, is_file);
      return;
    }
    if (is_file) {
      if (!S_ISREG(status.st_mode)) {
        throw StartupError(
            exit_code::config,
            config_path_ + ": not a regular file; name the configuration file with --config");
      }
      if (status.st_uid != 0) {
        refuse(what(path) + " is owned by " + owner_name(status.st_uid) +
               ", not root, and the daemon runs as root on what it says; fix: chown root:root " +
               path);
      }
      if (status.st_mode & (S_IWGRP | S_IWOTH)) {
        refuse(what(path) + " is writable by group or others (mode " + mode_text(status.st_mode) +
               "), and the daemon runs as root on what it says; fix: chmod go-w " + path);
      }
      return;
    }
    if (!S_ISDIR(status.st_mode)) throw_cannot_open(config_path_, ENOTDIR);
    if (status.st_uid != 0) {
      refuse(config_path_ + ": directory " + path + " is owned by " + owner_name(status.st_uid) +
             ", not root, so its owner can replace the configuration of a root daemon; fix: chown "
             "root " +
             path + " (or keep the file in /etc)");
    }
    // With the sticky bit, only root and an entry's owner may replace the
    // entry, and the entry is checked next.
    if ((status.st_mode & (S_IWGRP | S_IWOTH)) && !(status.st_mode & S_ISVTX)) {
      refuse(config_path_ + ": directory " + path + " is writable by group or others (mode " +
             mode_text(status.st_mode) +
             "), so they can replace the configuration of a root daemon; fix: chmod go-w " + path +
             " (or keep the file in /etc)");
    }
  }

  // "/etc/vramswap.conf", or "/etc/vramswap.conf: /srv/real.conf" for the
  // file a link leads to.
  std::string what(const std::string& path) const {
    return path == config_path_ ? config_path_ : config_path_ + ": " + path;
  }

  [[noreturn]] static void refuse(const std::string& message) {
    throw StartupError(exit_code::no_permission, message);
  }

  const std::string& config_path_;
  int links_followed_ = 0;
};

}  // namespace

void check_config_file_trusted(const std::string& path) {
  // A missing file gets the same message as when it is read.
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) throw_cannot_open(path, errno);
  TrustCheck(path).check_path(path, true);
}

}  // namespace vramswap::config
