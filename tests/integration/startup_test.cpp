// What a user sees when the daemon cannot start: one line naming the cause
// and the fix, and an exit status that says which kind of problem it is.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitUnavailable = 69, kExitInUse = 75, kExitConfig = 78;

// The daemon must exit on its own; returns its status.
int exit_status_of(TestDaemon& daemon) {
  REQUIRE_FALSE(daemon.start(std::chrono::seconds(30)));
  return daemon.wait(std::chrono::seconds(10));
}

// Errors are one line each: count the lines that report one (warnings about
// hardening a test machine cannot grant may come before them).
size_t line_count(const std::string& text) {
  size_t lines = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.compare(start, end - start, "") != 0 &&
        text.substr(start, end - start).find("error:") != std::string::npos) {
      ++lines;
    }
    start = end + 1;
  }
  return lines;
}

}  // namespace

TEST_CASE("a bad configuration names file, line and key", "[startup]") {
  TestDaemon daemon({.extra_config = "colour = blue\n"});
  CHECK(exit_status_of(daemon) == kExitConfig);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains(daemon.config_path() + ":6"));
  CHECK_THAT(log, Contains("colour"));
  CHECK(line_count(log) == 1);
}

TEST_CASE("a missing CUDA driver says to install it", "[startup]") {
  TestDaemon daemon({.environment = {{"VRAMSWAP_LIBCUDA", "/nonexistent/libcuda.so.1"}}});
  CHECK(exit_status_of(daemon) == kExitUnavailable);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("driver"));
  CHECK(line_count(log) == 1);
}

TEST_CASE("a machine without a GPU says so", "[startup][fake]") {
  TestDaemon daemon({.environment = {{"VRAMSWAP_FAKE_DEVICES", "0"}}});
  CHECK(exit_status_of(daemon) == kExitUnavailable);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("no NVIDIA GPU"));
  CHECK(line_count(log) == 1);
}

TEST_CASE("too little free VRAM is refused with the numbers", "[startup][fake]") {
  TestDaemon daemon({.size = "auto", .environment = {{"VRAMSWAP_FAKE_MEMORY", "1G"}}});
  CHECK(exit_status_of(daemon) == kExitUnavailable);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("min_size"));
  CHECK(line_count(log) == 1);
}

TEST_CASE("a size above the GPU's total memory is refused naming the total", "[startup][fake]") {
  TestDaemon daemon({.size = "64G", .environment = {{"VRAMSWAP_FAKE_MEMORY", "4G"}}});
  CHECK(exit_status_of(daemon) == kExitConfig);
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("size = 64.0 GiB is more than the GPU's total memory, 4.0 GiB"));
  CHECK(line_count(log) == 1);
}

TEST_CASE("a size above free VRAM leaves the reserve and says why it took less",
          "[startup][fake]") {
  // 4 GiB, all free, reserve 1 GiB (the default): 3 GiB, not every free byte.
  TestDaemon daemon(
      {.size = "3584M",
       .environment = {{"VRAMSWAP_FAKE_MEMORY", "4G"}, {"VRAMSWAP_FAKE_RESERVED", "0"}}});
  INFO(daemon.log());
  REQUIRE(daemon.start());
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  CHECK(client.export_size() == (3ULL << 30));
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("size = 3.5 GiB is more than the 4.0 GiB of free VRAM minus reserve = "
                           "1.0 GiB: taking 3.0 GiB"));
  CHECK_THAT(log, !Contains("backed off"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("an allocation that does not fit backs off and says by how much", "[startup][fake]") {
  TestDaemon daemon({.size = "8G", .environment = {{"VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "6G"}}});
  INFO(daemon.log());
  REQUIRE(daemon.start());
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  CHECK(client.export_size() > (5ULL << 30));
  CHECK(client.export_size() <= (6ULL << 30));
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("8.0 GiB"));
  CHECK_THAT(log, Contains("backed off"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a second daemon for a served instance exits 75, naming the first", "[startup][fake]") {
  TestDaemon first;
  REQUIRE(first.start());
  const CommandResult second = run_command(
      {vramswapd_binary(), "--config", first.config_path(), "--instance", "test"},
      std::chrono::seconds(30),
      {{"VRAMSWAP_LIBCUDA", fake_libcuda()}, {"VRAMSWAP_RUNTIME_DIR", first.dir().path()}});
  INFO(second.output);
  CHECK(second.exit_status == kExitInUse);
  CHECK_THAT(second.output, Contains("already served by another vramswapd (pid " +
                                     std::to_string(first.pid()) + ")"));
  CHECK(line_count(second.output) == 1);
  // The first one still serves, and its lock file is still its own.
  CHECK(first.alive());
  CHECK(read_file(first.dir().file("test.lock")) == std::to_string(first.pid()) + "\n");
  CHECK(first.stop() == 0);
  CHECK(access(first.dir().file("test.lock").c_str(), F_OK) != 0);
}
