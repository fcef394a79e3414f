// What the daemon checks before it commits anything (issue 11 items 7 and 8):
// a mistake the configuration alone decides is refused before the CUDA
// driver is even loaded, naming the file and line to edit; a missing runtime
// directory costs the status file, not the device.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitUnavailable = 69, kExitConfig = 78;

// The daemon must exit on its own; returns its status.
int exit_status_of(TestDaemon& daemon) {
  REQUIRE_FALSE(daemon.start(std::chrono::seconds(30)));
  return daemon.wait(std::chrono::seconds(10));
}

// The fake driver creates its control block at cuInit: without it the
// daemon never loaded the driver, let alone allocated VRAM.
bool driver_was_loaded(const TestDaemon& daemon) {
  return access(daemon.control_path().c_str(), F_OK) == 0;
}

size_t error_lines(const std::string& log) {
  size_t count = 0;
  for (size_t at = log.find("error:"); at != std::string::npos; at = log.find("error:", at + 1))
    ++count;
  return count;
}

// Lowers this process's soft RLIMIT_NOFILE, which the daemon it spawns
// inherits, for as long as it lives.
class DescriptorLimit {
 public:
  explicit DescriptorLimit(rlim_t soft) {
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  ~DescriptorLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

}  // namespace

TEST_CASE("a listen socket in a directory others can write is refused before any VRAM is taken",
          "[startup][preflight]") {
  // The directory has to exist before the daemon does: TestDaemon names it.
  TestDaemon probe;
  const std::string open_dir = probe.dir().file("open");
  REQUIRE(mkdir(open_dir.c_str(), 0777) == 0);
  REQUIRE(chmod(open_dir.c_str(), 0777) == 0);  // not the umask's idea of it
  TestDaemon daemon({.listen = open_dir + "/nbd.sock"});
  CHECK(exit_status_of(daemon) == kExitConfig);
  const std::string log = daemon.log();
  INFO(log);
  // listen is line 5 of the test configuration.
  CHECK_THAT(log, Contains(daemon.config_path() + ":5: listen = " + open_dir + "/nbd.sock: "));
  CHECK_THAT(log, Contains("can be written by other users"));
  CHECK(error_lines(log) == 1);
  CHECK_FALSE(driver_was_loaded(daemon));
}

TEST_CASE("a socket_group that does not exist is refused before any VRAM is taken",
          "[startup][preflight]") {
  TestDaemon daemon({.extra_config = "socket_group = no-such-group-here\n"});
  CHECK(exit_status_of(daemon) == kExitConfig);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(
      log, Contains(daemon.config_path() + ":6: socket_group = no-such-group-here: no such group"));
  CHECK(error_lines(log) == 1);
  CHECK_FALSE(driver_was_loaded(daemon));
}

TEST_CASE("a file descriptor limit too small for the connections is refused before any VRAM",
          "[startup][preflight]") {
  // 4 workers and a listen socket need the daemon's reserve of 32 and more.
  TestDaemon daemon({.connections = 4});
  {
    const DescriptorLimit limit(40);
    REQUIRE_FALSE(daemon.start(std::chrono::seconds(30)));
  }
  CHECK(daemon.wait(std::chrono::seconds(10)) == kExitConfig);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains(daemon.config_path() + ":3: connections = 4: needs at least "));
  CHECK_THAT(log, Contains("the limit (RLIMIT_NOFILE) is 40; raise LimitNOFILE="));
  CHECK(error_lines(log) == 1);
  CHECK_FALSE(driver_was_loaded(daemon));
}

TEST_CASE(
    "without its runtime directory a listen-only daemon serves and says the status file "
    "is missing",
    "[startup][runtime-dir]") {
  TestDaemon probe;
  const std::string runtime_dir = probe.dir().file("no-run/vramswap");  // parent missing
  TestDaemon daemon({.environment = {{"VRAMSWAP_RUNTIME_DIR", runtime_dir}}});
  INFO(daemon.log());
  REQUIRE(daemon.start());
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  CHECK(client.export_size() == (1ULL << 30));
  CHECK(daemon.status_shows("; no status file"));
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("cannot create " + runtime_dir +
                           ": No such file or directory: serving without the instance lock"));
  CHECK_THAT(log, Contains("no status file: cannot write " + runtime_dir + "/test.json"));
  CHECK(error_lines(log) == 0);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "without its runtime directory a daemon that attaches is refused, saying why and what "
    "to do",
    "[startup][runtime-dir]") {
  TestDaemon probe;
  const std::string runtime_dir = probe.dir().file("no-run/vramswap");
  TestDaemon daemon({.attach = true, .environment = {{"VRAMSWAP_RUNTIME_DIR", runtime_dir}}});
  CHECK(exit_status_of(daemon) == kExitUnavailable);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("cannot create " + runtime_dir + ": No such file or directory; "));
  CHECK_THAT(log, Contains("from disconnecting this one's nbd device"));
  CHECK_THAT(log, Contains("VRAMSWAP_RUNTIME_DIR"));
  CHECK(error_lines(log) == 1);
  CHECK_FALSE(driver_was_loaded(daemon));
}
