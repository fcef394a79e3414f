// The kernel behaviours a parking socket relies on (store/parking_socket.hpp),
// checked on the running kernel rather than assumed, and the socket helpers.

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "store/parking_socket.hpp"

using namespace vramswap;
using namespace vramswap::store;
using Catch::Matchers::Contains;

namespace {

UniqueFd memfd_holding(const std::string& text) {
  UniqueFd fd(memfd_create("parking-test", MFD_CLOEXEC));
  REQUIRE(fd);
  REQUIRE(pwrite(fd.get(), text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
  return fd;
}

std::string read_all(int fd) {
  char buffer[256];
  const ssize_t got = pread(fd, buffer, sizeof buffer, 0);
  return got > 0 ? std::string(buffer, static_cast<size_t>(got)) : std::string();
}

ino_t inode_of(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

// Whether any descriptor in this process's table reaches inode `inode`.
bool in_fd_table(ino_t inode) {
  DIR* dir = opendir("/proc/self/fd");
  REQUIRE(dir);
  bool found = false;
  while (const dirent* entry = readdir(dir)) {
    struct stat st {};
    if (entry->d_name[0] != '.' && fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 &&
        st.st_ino == inode && S_ISREG(st.st_mode)) {
      found = true;
    }
  }
  closedir(dir);
  return found;
}

const std::vector<unsigned char> hello = {'h', 'e', 'l', 'l', 'o'};

// The child's exit status: `body` returns it.
template <typename Body>
int in_child(Body body) {
  const pid_t child = fork();
  if (child == 0) _exit(body());
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool has_capability(int capability) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[capability / 32].effective & (1u << (capability % 32))) != 0;
}

}  // namespace

TEST_CASE("kernel: a datagram queued before its sender closed stays readable, descriptors too") {
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd receiving(pair[0]);
  UniqueFd memory = memfd_holding("kept");
  {
    UniqueFd sending(pair[1]);
    // A pair of our own (park() closes its sending end at once): send, close.
    iovec iov{const_cast<unsigned char*>(hello.data()), hello.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    const int fd = memory.get();
    std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    REQUIRE(sendmsg(sending.get(), &message, MSG_NOSIGNAL) == 5);
  }
  std::string why;
  const auto peeked = parking::peek(receiving.get(), 16, 4, why);
  REQUIRE(peeked);
  CHECK(peeked->bytes == hello);
  REQUIRE(peeked->fds.size() == 1);
  CHECK(read_all(peeked->fds[0].get()) == "kept");
}

TEST_CASE("kernel: descriptors in flight keep a memfd alive that no process holds") {
  std::string why;
  UniqueFd memory = memfd_holding("VRAM bytes");
  const ino_t inode = inode_of(memory.get());
  UniqueFd parked = parking::park(hello, {memory.get()}, why);
  REQUIRE(parked);
  memory.reset();
  CHECK_FALSE(in_fd_table(inode));  // only the queued datagram reaches it now
  const auto peeked = parking::peek(parked.get(), 16, 4, why);
  REQUIRE(peeked);
  REQUIRE(peeked->fds.size() == 1);
  CHECK(inode_of(peeked->fds[0].get()) == inode);
  CHECK(read_all(peeked->fds[0].get()) == "VRAM bytes");
}

TEST_CASE("kernel: MSG_PEEK installs new duplicates each time and leaves the datagram queued") {
  std::string why;
  UniqueFd memory = memfd_holding("x");
  UniqueFd parked = parking::park(hello, {memory.get(), memory.get()}, why);
  REQUIRE(parked);
  auto first = parking::peek(parked.get(), 16, 4, why);
  auto second = parking::peek(parked.get(), 16, 4, why);
  REQUIRE(first);
  REQUIRE(second);
  REQUIRE(first->fds.size() == 2);
  REQUIRE(second->fds.size() == 2);
  CHECK(first->fds[0].get() != second->fds[0].get());
  CHECK(inode_of(second->fds[1].get()) == inode_of(memory.get()));
  // MSG_CMSG_CLOEXEC: not inherited by programs the daemon runs.
  CHECK((fcntl(first->fds[0].get(), F_GETFD) & FD_CLOEXEC) != 0);
  // A plain read still finds it: the peeks took nothing.
  unsigned char buffer[16];
  CHECK(recv(parked.get(), buffer, sizeof buffer, MSG_DONTWAIT) == 5);
  CHECK_FALSE(parking::peek(parked.get(), 16, 4, why));
  CHECK_THAT(why, Contains("holds no datagram"));
}

TEST_CASE("parking sockets: more descriptors than asked for, or a longer datagram, are refused") {
  std::string why;
  UniqueFd memory = memfd_holding("x");
  UniqueFd parked = parking::park(hello, {memory.get(), memory.get(), memory.get()}, why);
  REQUIRE(parked);
  CHECK_FALSE(parking::peek(parked.get(), 16, 2, why));
  CHECK_THAT(why, Contains("did not all arrive"));
  CHECK_FALSE(parking::peek(parked.get(), 4, 4, why));
  CHECK_THAT(why, Contains("longer than 4 bytes"));
  CHECK(parking::peek(parked.get(), 5, 3, why));
}

TEST_CASE("kernel: a full descriptor table truncates what arrives (MSG_CTRUNC), and peek says so") {
  std::string why;
  UniqueFd memory = memfd_holding("x");
  UniqueFd parked = parking::park(hello, std::vector<int>(8, memory.get()), why);
  REQUIRE(parked);
  const int status = in_child([&] {
    // Room for two more descriptors, not eight.
    const int probe = dup(0);
    if (probe < 0) return 10;
    close(probe);
    const rlimit limit{static_cast<rlim_t>(probe + 2), static_cast<rlim_t>(probe + 2)};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 11;
    std::string child_why;
    if (parking::peek(parked.get(), 16, 8, child_why)) return 12;
    return child_why.find("did not all arrive") != std::string::npos ? 0 : 13;
  });
  CHECK(status == 0);
  CHECK(parking::peek(parked.get(), 16, 8, why));  // still queued, whole
}

TEST_CASE("kernel: descriptors in flight are limited to RLIMIT_NOFILE without CAP_SYS_RESOURCE") {
  UniqueFd memory = memfd_holding("x");
  const auto sends_until_refused = [&](bool drop_capabilities) {
    return in_child([&] {
      if (drop_capabilities) {
        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2]{};
        if (syscall(SYS_capset, &header, data) != 0) return 200;
      }
      const rlimit limit{64, 64};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 201;
      int pair[2];
      if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0) return 202;
      // 8 descriptors per datagram, all left queued: 100 of them are 800 in
      // flight.
      const std::vector<int> eight(8, memory.get());
      for (int sent = 0; sent < 100; ++sent) {
        iovec iov{const_cast<unsigned char*>(hello.data()), hello.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(8 * sizeof(int))]{};
        msghdr message{};
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(8 * sizeof(int));
        std::memcpy(CMSG_DATA(header), eight.data(), 8 * sizeof(int));
        if (sendmsg(pair[1], &message, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
          return errno == ETOOMANYREFS ? sent : 203;
        }
      }
      return 100;
    });
  };
  // Counted per user: other processes of ours may have some in flight too,
  // so the refusal may come earlier, never later than the limit allows.
  const int unprivileged = sends_until_refused(true);
  CHECK(unprivileged <= 64 / 8 + 1);
  if (has_capability(CAP_SYS_RESOURCE)) {
    CHECK(sends_until_refused(false) == 100);  // the daemon's case: not limited
  }
}
