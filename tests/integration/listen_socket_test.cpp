// The listen socket serves VRAM to whoever can connect: it is private from
// the instant it exists, lives only where root alone can write, and the
// daemon neither follows nor deletes what someone else put at its path.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;
using vramswap::UniqueFd;

namespace {

constexpr int kExitConfig = 78;

// A Unix socket bound at `path` (and listening, if `listening`), as another
// process would leave it.
UniqueFd bound_socket(const std::string& path, bool listening) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  if (listening) REQUIRE(listen(fd.get(), 4) == 0);
  return fd;
}

// The daemon must refuse to start; returns its status.
int refused(TestDaemon& daemon) {
  REQUIRE_FALSE(daemon.start(std::chrono::seconds(30)));
  return daemon.wait(std::chrono::seconds(10));
}

}  // namespace

TEST_CASE("the listen socket is a socket only its owner can use", "[socket]") {
  TestDaemon daemon({.size = "256M"});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  struct stat st {};
  REQUIRE(lstat(daemon.socket_path().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == geteuid());
  CHECK(daemon.stop() == 0);
  // A clean stop leaves no socket behind.
  CHECK(access(daemon.socket_path().c_str(), F_OK) != 0);
}

TEST_CASE("a symbolic link at the socket path is refused, not followed", "[socket]") {
  TestDaemon daemon({.size = "256M"});
  const std::string target = daemon.dir().file("someone-elses-file");
  write_file(target, "precious\n", 0644);
  REQUIRE(symlink(target.c_str(), daemon.socket_path().c_str()) == 0);
  CHECK(refused(daemon) == kExitConfig);
  CHECK_THAT(daemon.log(), Contains("is a symbolic link; refusing to follow it; remove it"));
  CHECK(read_file(target) == "precious\n");
  struct stat st {};
  REQUIRE(lstat(daemon.socket_path().c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
}

TEST_CASE("a file that is not a socket at the socket path is left alone", "[socket]") {
  TestDaemon daemon({.size = "256M"});
  write_file(daemon.socket_path(), "not a socket\n", 0600);
  CHECK(refused(daemon) == kExitConfig);
  CHECK_THAT(daemon.log(), Contains("exists and is not a socket; refusing to delete it"));
  CHECK(read_file(daemon.socket_path()) == "not a socket\n");
}

TEST_CASE("a socket directory other users can write is refused", "[socket]") {
  TestDaemon daemon({.size = "256M"});
  REQUIRE(chmod(daemon.dir().path().c_str(), 01777) == 0);
  CHECK(refused(daemon) == kExitConfig);
  CHECK_THAT(daemon.log(), Contains("can be written by other users; use a directory only root "
                                    "can write"));
}

TEST_CASE("a stale socket is replaced, one that someone serves on is not", "[socket]") {
  SECTION("stale: nobody listens (a daemon that was killed)") {
    TestDaemon daemon({.size = "256M"});
    { const UniqueFd left_behind = bound_socket(daemon.socket_path(), false); }
    if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
    NbdTestClient client(daemon.socket_path());
    CHECK(client.negotiate() == 1);
    CHECK(daemon.stop() == 0);
  }
  SECTION("live: another process serves on it") {
    TestDaemon daemon({.size = "256M"});
    const UniqueFd other = bound_socket(daemon.socket_path(), true);
    CHECK(refused(daemon) == kExitConfig);
    CHECK_THAT(daemon.log(), Contains("another process is serving on this socket"));
    struct stat st {};
    CHECK(lstat(daemon.socket_path().c_str(), &st) == 0);  // still there
  }
}
