#include "systemd/fd_store.hpp"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "systemd/notify.hpp"

namespace vramswap::systemd::fd_store {
namespace {

int send(const std::string& message, int* fds, unsigned fd_count) {
  if (!available()) return -ENOTCONN;
  const int sent = sd_pid_notify_with_fds(0, 0, message.c_str(), fds, fd_count);
  // 0: libsystemd found no socket after all (the variable went meanwhile).
  return sent > 0 ? 0 : sent == 0 ? -ENOTCONN : sent;
}

}  // namespace

bool available() {
  return notify::under_systemd();
}

bool valid_name(std::string_view name) {
  // systemd's fdname_is_valid(): printable ASCII, no ':', at most 255.
  if (name.empty() || name.size() > 255) return false;
  for (const char c : name) {
    if (c < ' ' || c > '~' || c == ':') return false;
  }
  return true;
}

int store(int fd, std::string_view name) {
  if (fd < 0 || !valid_name(name)) return -EINVAL;
  std::string message = "FDSTORE=1\nFDNAME=";
  message += name;
  message += "\nFDPOLL=0";
  return send(message, &fd, 1);
}

int remove(std::string_view name) {
  if (!valid_name(name)) return -EINVAL;
  std::string message = "FDSTOREREMOVE=1\nFDNAME=";
  message += name;
  return send(message, nullptr, 0);
}

std::vector<PassedFd> take_passed() {
  std::vector<PassedFd> passed;
  char** names = nullptr;
  const int count = sd_listen_fds_with_names(1, &names);
  for (int i = 0; i < count; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    // Passed descriptors are inherited across exec by design; ours must not
    // leak into the programs the daemon runs.
    const int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    passed.push_back({names && names[i] ? names[i] : "unknown", UniqueFd(fd)});
  }
  if (names) {
    for (int i = 0; i < count; ++i)
      std::free(names[i]);
    std::free(names);
  }
  return passed;
}

}  // namespace vramswap::systemd::fd_store
