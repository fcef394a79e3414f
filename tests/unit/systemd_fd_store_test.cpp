// systemd's file descriptor store: the messages that store and remove, and
// taking the descriptors systemd passed.

#include "systemd/fd_store.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "common/unique_fd.hpp"
#include "kernel_test_support.hpp"

using namespace vramswap;
using namespace vramswap::systemd;

namespace {

// Stands in for systemd: a datagram socket at $NOTIFY_SOCKET that takes
// descriptors.
class FakeSystemd {
 public:
  explicit FakeSystemd(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(fd_);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::strcpy(address.sun_path, path.c_str());
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    const char* old = std::getenv("NOTIFY_SOCKET");
    if (old) old_ = old;
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~FakeSystemd() {
    if (old_) {
      ::setenv("NOTIFY_SOCKET", old_->c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }
  // The next message, and the descriptor that came with it.
  std::string next(UniqueFd& fd) {
    char buffer[4096];
    iovec iov{buffer, sizeof buffer};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(64)]{};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t got = ::recvmsg(fd_.get(), &message, MSG_CMSG_CLOEXEC);
    if (got <= 0) return {};
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header;
         header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
        int passed = -1;
        std::memcpy(&passed, CMSG_DATA(header), sizeof passed);
        fd.reset(passed);
      }
    }
    return std::string(buffer, static_cast<size_t>(got));
  }

 private:
  UniqueFd fd_;
  std::optional<std::string> old_;
};

ino_t inode_of(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

}  // namespace

TEST_CASE("fd store: names systemd takes") {
  CHECK(fd_store::valid_name("vram-12-3"));
  CHECK(fd_store::valid_name("state"));
  CHECK(fd_store::valid_name(std::string(255, 'a')));
  CHECK_FALSE(fd_store::valid_name(""));
  CHECK_FALSE(fd_store::valid_name(std::string(256, 'a')));
  CHECK_FALSE(fd_store::valid_name("a:b"));
  CHECK_FALSE(fd_store::valid_name("a\nFDSTOREREMOVE=1"));
}

TEST_CASE("fd store: store and remove send systemd's messages, the descriptor with store") {
  test::TempDir dir;
  FakeSystemd systemd(dir / "notify");
  CHECK(fd_store::available());
  UniqueFd memory(memfd_create("kept", MFD_CLOEXEC));
  REQUIRE(fd_store::store(memory.get(), "vram-0-1") == 0);
  CHECK(fcntl(memory.get(), F_GETFD) >= 0);  // the caller keeps its own
  UniqueFd passed;
  CHECK(systemd.next(passed) == "FDSTORE=1\nFDNAME=vram-0-1\nFDPOLL=0");
  REQUIRE(passed);
  CHECK(inode_of(passed.get()) == inode_of(memory.get()));
  REQUIRE(fd_store::remove("vram-0-1") == 0);
  UniqueFd none;
  CHECK(systemd.next(none) == "FDSTOREREMOVE=1\nFDNAME=vram-0-1");
  CHECK_FALSE(none);
  CHECK(fd_store::store(memory.get(), "bad:name") == -EINVAL);
  CHECK(fd_store::remove("") == -EINVAL);
  CHECK(fd_store::store(-1, "vram-0-1") == -EINVAL);

  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(fd_store::available());
  CHECK(fd_store::store(memory.get(), "vram-0-1") == -ENOTCONN);
  CHECK(fd_store::remove("vram-0-1") == -ENOTCONN);
}

TEST_CASE("fd store: the passed descriptors come with their names, close-on-exec, once") {
  // In a child: the passed descriptors must sit at 3, 4 as systemd puts them.
  const pid_t child = fork();
  if (child == 0) {
    const int first = memfd_create("first", 0);
    const int second = memfd_create("second", 0);
    if (first < 0 || second < 0) _exit(10);
    const int moved_first = fcntl(first, F_DUPFD, 100);
    const int moved_second = fcntl(second, F_DUPFD, 100);
    close(first);
    close(second);
    if (dup2(moved_first, 3) != 3 || dup2(moved_second, 4) != 4) _exit(11);
    close(moved_first);
    close(moved_second);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "vram-0-1:state", 1);
    auto passed = fd_store::take_passed();
    if (passed.size() != 2) _exit(12);
    if (passed[0].name != "vram-0-1" || passed[0].fd.get() != 3) _exit(13);
    if (passed[1].name != "state" || passed[1].fd.get() != 4) _exit(14);
    if ((fcntl(3, F_GETFD) & FD_CLOEXEC) == 0 || (fcntl(4, F_GETFD) & FD_CLOEXEC) == 0) _exit(15);
    if (std::getenv("LISTEN_FDS")) _exit(16);
    if (!fd_store::take_passed().empty()) _exit(17);
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // 10..17: the step that failed
}

TEST_CASE("fd store: none passed is an empty list") {
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  CHECK(fd_store::take_passed().empty());
}
