#include "systemd/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.hpp"
#include "kernel_test_support.hpp"

using namespace vramswap;
using namespace vramswap::systemd;

namespace {

// Stands in for systemd: a datagram socket at $NOTIFY_SOCKET.
class FakeSystemd {
 public:
  explicit FakeSystemd(const std::string& path) : path_(path) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(fd_);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::strcpy(address.sun_path, path.c_str());
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    const char* old = std::getenv("NOTIFY_SOCKET");
    had_old_ = old != nullptr;
    if (old) old_ = old;
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~FakeSystemd() {
    if (had_old_) {
      ::setenv("NOTIFY_SOCKET", old_.c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }
  // The next message sent to us, or "" when none is waiting.
  std::string next() {
    char buffer[4096];
    ssize_t got = ::recv(fd_.get(), buffer, sizeof buffer, 0);
    return got > 0 ? std::string(buffer, static_cast<size_t>(got)) : std::string();
  }

 private:
  std::string path_;
  UniqueFd fd_;
  bool had_old_ = false;
  std::string old_;
};

}  // namespace

TEST_CASE("sd_notify messages reach systemd's socket in its format") {
  test::TempDir dir;
  FakeSystemd systemd(dir / "notify");
  CHECK(notify::under_systemd());

  CHECK(notify::ready("serving 16.0 GiB of VRAM\non GPU 0"));
  CHECK(systemd.next() == "READY=1\nSTATUS=serving 16.0 GiB of VRAM on GPU 0");
  CHECK(notify::status("swap used: 1.2 GiB"));
  CHECK(systemd.next() == "STATUS=swap used: 1.2 GiB");
  CHECK(notify::extend_timeout(std::chrono::seconds(90)));
  CHECK(systemd.next() == "EXTEND_TIMEOUT_USEC=90000000");
  CHECK(notify::stopping());
  CHECK(systemd.next() == "STOPPING=1");
  CHECK(systemd.next().empty());
}

TEST_CASE("outside systemd every notification is a no-op") {
  test::TempDir dir;
  FakeSystemd systemd(dir / "notify");
  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(notify::under_systemd());
  CHECK_FALSE(notify::ready("ready"));
  CHECK_FALSE(notify::status("status"));
  CHECK_FALSE(notify::stopping());
  CHECK(systemd.next().empty());

  ::setenv("NOTIFY_SOCKET", "", 1);
  CHECK_FALSE(notify::under_systemd());
  CHECK_FALSE(notify::stopping());
}
