// Sleep: the daemon, told by logind (a fake one on a private bus,
// tests/fake_logind) that the system is going to sleep, moves every chunk to
// the spill area before it lets the sleep go on; the fake GPU then loses its
// memory, as one does across a suspend without the driver preserving video
// memory; after resume the clients find every byte they wrote
// (vramswapd(8), SLEEP; daemon/sleep_watch.hpp).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "fake_logind.hpp"
#include "status/instance_status.hpp"
#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

std::optional<vramswap::status::InstanceStatus> status_of(const TestDaemon& daemon) {
  return vramswap::status::from_json(read_file(daemon.dir().file("test.json")));
}

std::vector<std::string> fio(const TestDaemon& daemon, std::vector<std::string> more) {
  std::vector<std::string> argv = {"fio",
                                   "--ioengine=nbd",
                                   "--uri=" + daemon.uri(),
                                   "--verify=crc32c",
                                   "--verify_fatal=1",
                                   "--verify_state_save=0",
                                   "--group_reporting"};
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

// The daemon on a private bus with a fake logind, and a spill area on disk.
struct SleepRig {
  PrivateBus bus;
  // logind's delay as the man page advises for exports with much live data:
  // long enough for the save even in a sanitizer build on a busy machine
  // (the bound itself is the unit tests' to check).
  FakeLogind logind{bus.address(), std::chrono::seconds(30)};
  TempDir spill_dir;  // on this machine's disk: the spill area refuses tmpfs
  TestDaemon daemon{{.size = "256M",
                     .spill = spill_dir.file("test.spill"),
                     .environment = {{"VRAMSWAP_FAKE_MEMORY", "4G"},
                                     {"DBUS_SYSTEM_BUS_ADDRESS", bus.address()}}}};

  // One sleep: PrepareForSleep(true), the inhibitor let go, the GPU's memory
  // lost while "asleep", PrepareForSleep(false), a new inhibitor.
  void sleep_and_lose_memory() {
    logind.prepare_for_sleep(true);
    // logind waits at most InhibitDelayMaxSec (30 s here) for the daemon.
    REQUIRE(logind.wait_for_held(0, 31s));
    FakeControl control(daemon.control_path());
    // The daemon let go of the GPU before the sleep: nothing of it is left
    // there to lose, and it holds no context through the sleep.
    CHECK(control->live_contexts.load() == 0);
    CHECK(control->bytes_allocated.load() == 0);
    control->lose_memory.fetch_add(1);
    std::this_thread::sleep_for(1s);
    CHECK(control->live_contexts.load() == 0);
    logind.prepare_for_sleep(false);
    REQUIRE(logind.wait_for_held(1, 5s));
  }
};

}  // namespace

TEST_CASE(
    "verified fio clients across a sleep that loses the GPU's memory: zero errors, zero wrong "
    "data",
    "[sleep][fake]") {
  SleepRig rig;
  TestDaemon& daemon = rig.daemon;
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  // The inhibitor is taken at start.
  REQUIRE(rig.logind.wait_for_held(1, 5s));
  CHECK(rig.logind.last_inhibit().mode == "delay");

  // Data written before the sleep, checked after it: the first half.
  const std::vector<std::string> keep = {"--name=keep", "--rw=write", "--bs=64k", "--offset=0",
                                         "--size=128M"};
  auto written = run_command(fio(daemon, keep), 120s);
  INFO(written.output << "\ndaemon log:\n" << daemon.log());
  REQUIRE(written.exit_status == 0);
  // The second half, written whole once, so that the clients below write to
  // chunks that have storage (see "what remains" in the test's case below).
  REQUIRE(run_command(fio(daemon, {"--name=fill", "--rw=write", "--bs=1M", "--offset=128M",
                                   "--size=128M", "--do_verify=0"}),
                      120s)
              .exit_status == 0);

  // Clients writing and verifying, run after run, across the sleep.
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0}, failed_runs{0};
  std::string failure;
  std::thread clients([&] {
    while (!stop) {
      const auto run =
          run_command(fio(daemon, {"--name=across", "--numjobs=4", "--offset=128M", "--size=32M",
                                   "--offset_increment=32M", "--rw=randwrite", "--bsrange=4k-64k",
                                   "--iodepth=8", "--do_verify=1"}),
                      120s);
      ++runs;
      if (run.exit_status != 0 || run.output.find("err= 0") == std::string::npos) {
        ++failed_runs;
        failure = run.output;
      }
    }
  });
  std::this_thread::sleep_for(1s);
  const int runs_before = runs;
  rig.sleep_and_lose_memory();
  std::this_thread::sleep_for(3s);
  stop = true;
  clients.join();
  INFO("client runs: " << runs << " (" << runs_before << " before the sleep)\n"
                       << failure << "\ndaemon log:\n"
                       << daemon.log());
  CHECK(failed_runs == 0);
  CHECK(runs > runs_before);

  // Everything written before the sleep reads back intact.
  std::vector<std::string> check = keep;
  check.push_back("--verify_only");
  const auto verified = run_command(fio(daemon, check), 120s);
  INFO(verified.output);
  CHECK(verified.exit_status == 0);
  CHECK_THAT(verified.output, Contains("err= 0"));

  const std::string log = daemon.log();
  CHECK_THAT(log, Contains("suspend: saved"));
  CHECK_THAT(log, Contains("to the spill area in"));
  CHECK_THAT(log, Contains("resume:"));
  CHECK_THAT(log, !Contains("did not finish within"));
  CHECK(daemon.alive());
}

// What remains for the context's re-creation after a lost GPU (the daemon
// drops and recreates its CUDA context; issue 14): today the chunks stay in
// the spill area after such a resume, because the tier's restore runs in the
// old context, whose every call fails (CUDA_ERROR_LAUNCH_FAILED); the data is
// served from the spill area meanwhile. This case holds the promise that
// VRAM is used again; it fails until the context is recreated on resume.
TEST_CASE("after a sleep that lost the GPU's memory, the swap comes back to VRAM",
          "[sleep][fake]") {
  SleepRig rig;
  TestDaemon& daemon = rig.daemon;
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  REQUIRE(rig.logind.wait_for_held(1, 5s));
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  const auto data = random_bytes(4 * MiB, 7);
  REQUIRE(client.write(200 * MiB, data) == 0);

  rig.sleep_and_lose_memory();
  std::optional<vramswap::status::InstanceStatus> s;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    // The status file is rewritten every few seconds: wait for one written
    // after the resume.
    s = status_of(daemon);
    if (s && s->last_move.find("resume:") != std::string::npos && s->vram_bytes == 256 * MiB) break;
    std::this_thread::sleep_for(200ms);
  }
  INFO(daemon.log());
  REQUIRE(s);
  CHECK_THAT(s->last_move, Contains("resume:"));
  CHECK(s->vram_bytes == 256 * MiB);
  CHECK_THAT(daemon.log(), Contains("resume: restored"));
  std::vector<uint8_t> back;
  REQUIRE(client.read(200 * MiB, 4 * MiB, back) == 0);
  CHECK(back == data);
}
