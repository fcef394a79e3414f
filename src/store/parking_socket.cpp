#include "store/parking_socket.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace vramswap::store::parking {
namespace {

std::string failed(const char* call) {
  return std::string(call) + " for a parking socket failed: " + std::strerror(errno);
}

}  // namespace

UniqueFd park(const std::vector<unsigned char>& datagram, const std::vector<int>& fds,
              std::string& why) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0) {
    why = failed("socketpair");
    return UniqueFd();
  }
  UniqueFd receiving(pair[0]);
  const UniqueFd sending(pair[1]);
  iovec iov{const_cast<unsigned char*>(datagram.data()), datagram.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent = -1;
  do {
    sent = sendmsg(sending.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(datagram.size())) {
    why = sent < 0 ? failed("sendmsg") : "sendmsg for a parking socket sent part of its datagram";
    return UniqueFd();
  }
  // The sending end goes now: the queued datagram stays readable, and the
  // socket holds nothing but it.
  return receiving;
}

std::optional<Peeked> peek(int socket, size_t max_bytes, size_t max_fds, std::string& why) {
  Peeked peeked;
  // One byte more than allowed: a longer datagram shows as MSG_TRUNC.
  peeked.bytes.resize(max_bytes + 1);
  iovec iov{peeked.bytes.data(), peeked.bytes.size()};
  std::vector<unsigned char> control(CMSG_SPACE(sizeof(int) * max_fds));
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  ssize_t got = -1;
  do {
    got = recvmsg(socket, &message, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    why = errno == EAGAIN ? "a parking socket holds no datagram" : failed("recvmsg");
    return std::nullopt;
  }
  // Whatever arrived is ours to close, a refused message's included.
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
      peeked.fds.emplace_back(fd);
    }
  }
  if (message.msg_flags & MSG_CTRUNC) {
    why = "a parking socket's descriptors did not all arrive (more than " +
          std::to_string(max_fds) + ", or the descriptor limit RLIMIT_NOFILE is reached)";
    return std::nullopt;
  }
  if ((message.msg_flags & MSG_TRUNC) || static_cast<size_t>(got) > max_bytes) {
    why = "a parking socket's datagram is longer than " + std::to_string(max_bytes) + " bytes";
    return std::nullopt;
  }
  peeked.bytes.resize(static_cast<size_t>(got));
  return peeked;
}

}  // namespace vramswap::store::parking
