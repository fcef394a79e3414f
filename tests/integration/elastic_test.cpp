// Elastic VRAM: the daemon gives its VRAM back to another program that needs
// it, keeps serving the export from the spill area, and takes the VRAM again
// once it has stayed free (src/store/ELASTIC.md, daemon/elastic_tier.hpp).
//
// Reading a chunk that is in the spill area needs the engine's gateway (every
// request pinned and sent to its chunk's tier).
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "status/instance_status.hpp"
#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/test_daemon.hpp"

using namespace vramswap::test;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;
constexpr uint64_t GiB = uint64_t{1} << 30;

std::optional<vramswap::status::InstanceStatus> status_of(const TestDaemon& daemon) {
  const std::string text = read_file(daemon.dir().file("test.json"));
  return vramswap::status::from_json(text);
}

// Waits (the daemon publishes every few seconds) until `ok` holds.
std::optional<vramswap::status::InstanceStatus> wait_for(
    const TestDaemon& daemon,
    const std::function<bool(const vramswap::status::InstanceStatus&)>& ok,
    std::chrono::seconds timeout = std::chrono::seconds(40)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<vramswap::status::InstanceStatus> s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = status_of(daemon);
    if (s && ok(*s)) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE(
    "another program takes VRAM: data moves to the spill area, reads stay right, and "
    "comes back when the VRAM is free again",
    "[elastic][fake]") {
  TempDir spill_dir;  // on this machine's disk: the spill area refuses tmpfs
  TestDaemon daemon(
      {.size = "256M",
       .extra_config = "reserve = 1G\n",
       .spill = spill_dir.file("test.spill"),
       .environment = {{"VRAMSWAP_FAKE_MEMORY", "4G"}, {"VRAMSWAP_RESTORE_AFTER_MS", "2000"}}});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  CHECK_THAT(daemon.log(), Contains("created the spill file"));

  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  // Data at the start (stays in VRAM) and in the last chunks (the first to go).
  const uint64_t tail = 256 * MiB - 1 * MiB;
  const auto head_data = random_bytes(64 << 10, 1), tail_data = random_bytes(1 << 20, 2);
  REQUIRE(client.write(0, head_data) == 0);
  REQUIRE(client.write(tail, tail_data) == 0);

  const auto before = wait_for(daemon, [](const auto& s) { return s.elastic && s.gpu_free_bytes; });
  REQUIRE(before);
  CHECK(before->vram_bytes == 256 * MiB);
  CHECK(before->spill_bytes == 0);
  CHECK(before->spill_path == spill_dir.file("test.spill"));

  // Another program takes all but 896 MiB: the reserve (1 GiB) lacks 128 MiB.
  FakeControl control(daemon.control_path());
  control->other_program_bytes.store(before->gpu_free_bytes - GiB + 128 * MiB);
  const auto spilled = wait_for(daemon, [](const auto& s) { return s.vram_bytes <= 128 * MiB; });
  INFO(daemon.log());
  REQUIRE(spilled);
  // The written chunk at the end held live data (the gateway marks every
  // write): it is in the spill area, not dropped as unused.
  CHECK(spilled->spill_bytes >= 2 * MiB);
  CHECK(spilled->vram_bytes + spilled->spill_bytes + spilled->none_bytes == 256 * MiB);
  CHECK(spilled->last_move_reason == "another program needed VRAM");
  CHECK_THAT(spilled->last_move, Contains("released"));
  CHECK_THAT(daemon.log(), Contains("another program needed VRAM"));

  std::vector<uint8_t> back;
  REQUIRE(client.read(0, 64 << 10, back) == 0);
  CHECK(back == head_data);
  CHECK(client.read(tail, 1 << 20, back) == 0);  // from the spill area
  CHECK(back == tail_data);

  // The program gives its VRAM back: after the wait, everything returns.
  control->other_program_bytes.store(0);
  const auto restored = wait_for(daemon, [](const auto& s) {
    return s.vram_bytes == 256 * MiB && s.spill_bytes == 0 && s.none_bytes == 0;
  });
  REQUIRE(restored);
  CHECK(restored->last_move_reason == "VRAM is free again");
  REQUIRE(client.read(tail, 1 << 20, back) == 0);
  CHECK(back == tail_data);
  REQUIRE(client.read(0, 64 << 10, back) == 0);
  CHECK(back == head_data);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a spill area that cannot be made leaves the device serving from VRAM alone",
          "[elastic][fake]") {
  TempDir dir;
  TestDaemon daemon({.size = "256M", .spill = dir.file("missing/test.spill")});
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  CHECK_THAT(daemon.log(), Contains("no spill area"));
  CHECK_THAT(daemon.log(), Contains("serving from VRAM alone"));
  NbdTestClient client(daemon.socket_path());
  REQUIRE(client.negotiate() == 1);
  const auto data = random_bytes(64 << 10, 3);
  REQUIRE(client.write(0, data) == 0);
  std::vector<uint8_t> back;
  REQUIRE(client.read(0, 64 << 10, back) == 0);
  CHECK(back == data);
  const auto s = status_of(daemon);
  REQUIRE(s);
  CHECK_FALSE(s->elastic);
  CHECK(daemon.stop() == 0);
}
