#include "engine/unix_socket.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/startup_error.hpp"

namespace vramswap::engine {
namespace {

constexpr const char* no_such_group = "no such group; create it or fix the name";

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw StartupError(exit_code::config, "listen = " + path + ": " + why);
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) fail(path, "path too long for a Unix socket");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::optional<std::string> directory_problem(const std::string& path) {
  const std::string dir = parent_of(path);
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) {
    return "directory " + dir + " does not exist (" + std::strerror(errno) +
           "); create it, owned by root with mode 0755";
  }
  if (!S_ISDIR(st.st_mode)) return dir + " is not a directory";
  // Another user able to write here could swap the socket for their own.
  const bool writable_by_others = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (st.st_uid != geteuid() || writable_by_others) {
    return "directory " + dir +
           " can be written by other users; use a directory only root can write, "
           "such as /run/vramswap";
  }
  return std::nullopt;
}

// Whether a daemon still accepts connections on the socket at `path`.
bool someone_listens(const std::string& path) {
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  const sockaddr_un addr = address_of(path);
  return connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

// What is at `path` already: nothing, or a stale socket of ours, is fine.
std::optional<std::string> existing_file_problem(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return std::string("cannot inspect it: ") + std::strerror(errno);
  }
  if (S_ISLNK(st.st_mode)) return "is a symbolic link; refusing to follow it; remove it";
  if (!S_ISSOCK(st.st_mode)) return "exists and is not a socket; refusing to delete it";
  if (st.st_uid != geteuid()) return "is a socket owned by another user; refusing to delete it";
  if (someone_listens(path)) {
    return "another process is serving on this socket (is another vramswapd instance "
           "configured with the same listen path?)";
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> listen_path_problem(const std::string& path) {
  if (path.empty() || path.front() != '/') return "must be an absolute path";
  if (path.size() >= sizeof(sockaddr_un::sun_path)) return "path too long for a Unix socket";
  if (auto problem = directory_problem(path)) return problem;
  return existing_file_problem(path);
}

std::optional<std::string> socket_group_problem(const std::string& group) {
  if (group.empty() || getgrnam(group.c_str())) return std::nullopt;
  return no_such_group;
}

UniqueFd open_unix_listener(const std::string& path, const std::string& group) {
  // The daemon ran these checks before it allocated anything; they run again
  // here, right before the socket is made, for whatever changed since.
  if (auto problem = listen_path_problem(path)) fail(path, *problem);
  gid_t gid = static_cast<gid_t>(-1);
  if (!group.empty()) {
    const struct group* entry = getgrnam(group.c_str());
    if (!entry) {
      throw StartupError(exit_code::config, "socket_group = " + group + ": " + no_such_group);
    }
    gid = entry->gr_gid;
  }
  const sockaddr_un addr = address_of(path);
  // Whatever is left at `path` is a stale socket of ours (see above).
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail(path, std::string("cannot remove the stale socket: ") + std::strerror(errno));
  }

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) fail(path, std::string("socket(): ") + std::strerror(errno));
  // The socket file takes its mode from the umask at bind(): make it private
  // from the first instant (this runs before any other thread exists).
  const mode_t old_umask = umask(0177);
  const int bound = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) fail(path, std::string("bind(): ") + std::strerror(bind_errno));
  if (gid != static_cast<gid_t>(-1)) {
    if (chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0 || chmod(path.c_str(), 0660) != 0) {
      const int err = errno;
      unlink(path.c_str());
      fail(path,
           std::string("cannot give the socket to group ") + group + ": " + std::strerror(err));
    }
  }
  // A deep backlog: clients beyond the connection slots wait here, they are
  // not refused.
  if (listen(fd.get(), SOMAXCONN) != 0) {
    const int err = errno;
    unlink(path.c_str());
    fail(path, std::string("listen(): ") + std::strerror(err));
  }
  return fd;
}

}  // namespace vramswap::engine
