// Live restart through systemd's file descriptor store (vramswapd(8),
// RESTART): the test daemon stands in for systemd, keeping what the daemon
// stores (FDSTORE=1) and passing it to the next start. A daemon killed with
// SIGKILL, or handing over for a restart, leaves its VRAM and block map
// there; the next one serves every written byte again. What it cannot take
// over, it refuses with one line and frees.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "support/nbd_test_client.hpp"
#include "support/process.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

// Patterns at the start, in the middle (across a 2 MiB chunk boundary) and
// at the very end of a 256 MiB export.
struct Written {
  uint64_t offset;
  std::vector<uint8_t> data;
};

std::vector<Written> write_patterns(const TestDaemon& daemon, uint64_t seed) {
  std::vector<Written> written = {{0, random_bytes(1 * MiB, seed)},
                                  {100 * MiB - 64 * 1024, random_bytes(512 * 1024, seed + 1)},
                                  {256 * MiB - 4096, random_bytes(4096, seed + 2)}};
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  for (const Written& w : written)
    REQUIRE(client.write(w.offset, w.data) == 0);
  REQUIRE(client.simple(NbdTestClient::kFlush, 0, 0) == 0);
  client.disconnect();
  return written;
}

// Reads every pattern back; counts those that differ.
size_t differing_patterns(const TestDaemon& daemon, const std::vector<Written>& written) {
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  size_t differing = 0;
  for (const Written& w : written) {
    std::vector<uint8_t> data;
    REQUIRE(client.read(w.offset, static_cast<uint32_t>(w.data.size()), data) == 0);
    differing += data == w.data ? 0 : 1;
  }
  client.disconnect();
  return differing;
}

bool has_parked_vram(const std::vector<std::string>& names) {
  return std::any_of(names.begin(), names.end(),
                     [](const std::string& n) { return n.rfind("vram-", 0) == 0; });
}

void kill_hard(TestDaemon& daemon) {
  REQUIRE(kill(daemon.pid(), SIGKILL) == 0);
  REQUIRE(daemon.wait(std::chrono::seconds(10)) == 128 + SIGKILL);
}

}  // namespace

TEST_CASE(
    "a daemon killed with SIGKILL leaves VRAM and block map in the store, and the next one "
    "serves every written byte",
    "[live-restart]") {
  const bool verify = GENERATE(false, true);
  TempDir spill_dir;
  const bool with_spill = GENERATE(false, true);
  DaemonSpec spec{.size = "256M", .fd_store = true};
  if (verify) spec.extra_config = "verify = yes\n";
  if (with_spill) spec.spill = spill_dir.file("test.spill");
  INFO("verify " << verify << ", spill area " << with_spill);
  TestDaemon daemon(spec);
  REQUIRE(daemon.start());
  const std::vector<Written> written = write_patterns(daemon, 7);
  const std::vector<std::string> stored = daemon.stored_fd_names();
  INFO(daemon.log());
  CHECK(std::count(stored.begin(), stored.end(), "state") == 1);
  CHECK(has_parked_vram(stored));

  const pid_t dead = daemon.pid();
  kill_hard(daemon);
  REQUIRE(daemon.start());
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("the export was handed over by the vramswapd before (it died): 256.0 "
                           "MiB of VRAM in 128 chunks and the block map"));
  CHECK_THAT(log, Contains("the previous vramswapd (pid " + std::to_string(dead) + ")"));
  CHECK_THAT(log, Contains("this daemon took"));
  CHECK(differing_patterns(daemon, written) == 0);

  // And again: the second daemon keeps the store up to date as it serves.
  const std::vector<Written> more = write_patterns(daemon, 11);
  kill_hard(daemon);
  REQUIRE(daemon.start());
  CHECK(differing_patterns(daemon, more) == 0);
  REQUIRE(daemon.stop() == 0);
  // A stop that is no restart frees everything it kept.
  CHECK(daemon.stored_fd_names().empty());
}

TEST_CASE("a restart (SIGUSR2 outside systemd) hands over in place, with nothing to move",
          "[live-restart]") {
  TempDir spill_dir;
  TestDaemon daemon({.size = "256M", .spill = spill_dir.file("test.spill"), .fd_store = true});
  REQUIRE(daemon.start());
  const std::vector<Written> written = write_patterns(daemon, 21);
  REQUIRE(kill(daemon.pid(), SIGUSR2) == 0);
  REQUIRE(daemon.wait(std::chrono::seconds(30)) == 0);
  INFO(daemon.log());
  CHECK_THAT(daemon.log(), Contains("handed over the export in place: 256.0 MiB of VRAM and the "
                                    "block map stay in systemd's file descriptor store"));
  CHECK_THAT(daemon.log(), !Contains("moving every chunk"));
  REQUIRE(daemon.start());
  CHECK_THAT(daemon.log(), Contains("handed over by the vramswapd before (a clean handover)"));
  CHECK(differing_patterns(daemon, written) == 0);
  REQUIRE(daemon.stop() == 0);
}

TEST_CASE("a block map the daemon cannot read is refused with one line and freed, never served",
          "[live-restart]") {
  TestDaemon daemon({.size = "256M", .fd_store = true});
  REQUIRE(daemon.start());
  const std::vector<Written> written = write_patterns(daemon, 31);
  kill_hard(daemon);
  const int state = daemon.stored_fd("state");
  REQUIRE(state >= 0);
  // Another format version: the second 32-bit word of the header.
  const uint32_t other_version = 2;
  REQUIRE(pwrite(state, &other_version, sizeof other_version, 16) == sizeof other_version);
  REQUIRE(daemon.start());
  const std::string log = daemon.log();
  INFO(log);
  CHECK_THAT(log, Contains("cannot take over what the vramswapd before left in systemd's file "
                           "descriptor store: block map: state format 2, this vramswapd reads "
                           "format 1"));
  // The new daemon serves a new export: none of the old bytes.
  CHECK(differing_patterns(daemon, written) == written.size());
  // Its own state only: the old one was removed from the store.
  REQUIRE(daemon.stop() == 0);
  CHECK(daemon.stored_fd_names().empty());
}
