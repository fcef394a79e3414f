#include "fd_store_host.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vramswap::test {

PassedFds::PassedFds(const std::vector<std::pair<std::string, int>>& fds)
    : moved_(fds.size(), -1), count_(std::to_string(fds.size())) {
  for (const auto& [name, fd] : fds) {
    names_ += (names_.empty() ? "" : ":") + name;
    fds_.push_back(fd);
  }
}

void PassedFds::install_in_child() const noexcept {
  if (fds_.empty()) return;
  // Out of the way first (a passed descriptor may sit where another must
  // go): above every target and every passed descriptor, and no higher,
  // since RLIMIT_NOFILE may be as low as 1024. Then into place from fd 3,
  // without FD_CLOEXEC.
  int out_of_the_way = 3 + static_cast<int>(fds_.size());
  for (const int fd : fds_) out_of_the_way = std::max(out_of_the_way, fd + 1);
  for (size_t i = 0; i < fds_.size(); ++i)
    moved_[i] = fcntl(fds_[i], F_DUPFD_CLOEXEC, out_of_the_way);
  for (size_t i = 0; i < moved_.size(); ++i)
    dup2(moved_[i], 3 + static_cast<int>(i));
  char pid[16];
  std::snprintf(pid, sizeof pid, "%d", static_cast<int>(getpid()));
  setenv("LISTEN_FDS", count_.c_str(), 1);
  setenv("LISTEN_FDNAMES", names_.c_str(), 1);
  setenv("LISTEN_PID", pid, 1);
}

PassedFds FdStoreHost::passed() const {
  std::vector<std::pair<std::string, int>> fds;
  for (const auto& [name, fd] : stored_)
    fds.emplace_back(name, fd.get());
  return PassedFds(fds);
}

bool FdStoreHost::receive(int notify_fd, Message& message) {
  char text[4096];
  // Room for as many descriptors as systemd takes in one message.
  constexpr size_t max_fds = 768;
  alignas(cmsghdr) char control[CMSG_SPACE(max_fds * sizeof(int))];
  iovec iov{text, sizeof text};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(notify_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) return false;
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  apply(std::string_view(text, static_cast<size_t>(n)), std::move(fds), message);
  return true;
}

void FdStoreHost::apply(std::string_view text, std::vector<UniqueFd> fds, Message& message) {
  bool store = false, remove = false;
  std::string name = "stored";  // systemd's name for an unnamed descriptor
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (line == "READY=1") message.ready = true;
    if (line.substr(0, 7) == "STATUS=") message.status = std::string(line.substr(7));
    if (line == "FDSTORE=1") store = true;
    if (line == "FDSTOREREMOVE=1") remove = true;
    if (line.substr(0, 7) == "FDNAME=") name = std::string(line.substr(7));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  if (!keep_) return;  // the descriptors close here
  if (remove) {
    std::erase_if(stored_, [&](const auto& entry) { return entry.first == name; });
  }
  if (store) {
    for (UniqueFd& fd : fds)
      stored_.emplace_back(name, std::move(fd));
  }
}

}  // namespace vramswap::test
