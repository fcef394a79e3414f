// Elastic VRAM: the daemon gives its VRAM back to another program that needs
// it, keeps serving the export from the spill area, and takes the VRAM again
// once it has stayed free (src/store/ELASTIC.md, daemon/elastic_tier.hpp).
//
// Reading a chunk that is in the spill area needs the engine's gateway (every
// request pinned and sent to its chunk's tier).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>

#include "engine/chunk_gate.hpp"
#include "kernel/hardening.hpp"
#include "status/instance_status.hpp"
#include "store/chunk_map.hpp"
#include "support/fake_control.hpp"
#include "support/nbd_test_client.hpp"
#include "support/process.hpp"
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

// `vramswap release|restore test ...` against the test daemon.
CommandResult vramswap_command(const TestDaemon& daemon, std::vector<std::string> args) {
  args.insert(args.begin(), VRAMSWAP_TEST_VRAMSWAP);
  args.insert(args.end(), {"--runtime-dir", daemon.dir().path()});
  return run_command(args, std::chrono::seconds(120), {});
}

// Waits until the fake driver's counter `field` reads `value`.
bool control_reads(FakeControl& control, std::atomic<uint64_t> vramswap::fake_cuda::Control::*field,
                   uint64_t value, std::chrono::seconds timeout = std::chrono::seconds(40)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if ((control.operator->()->*field).load() == value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A power_supply tree as sysfs shows it: one mains adapter, one battery.
void set_power(const TempDir& dir, bool on_battery) {
  for (const char* name : {"AC", "BAT0"})
    std::filesystem::create_directories(dir.file(name));
  write_file(dir.file("AC/type"), "Mains\n");
  write_file(dir.file("AC/online"), on_battery ? "0\n" : "1\n");
  write_file(dir.file("BAT0/type"), "Battery\n");
  write_file(dir.file("BAT0/status"), on_battery ? "Discharging\n" : "Charging\n");
}

// Data in a few places of the export, written and read back through a
// client that stays connected across the daemon's moves.
struct Pattern {
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> pieces;
  explicit Pattern(uint64_t export_bytes) {
    for (uint64_t offset : {uint64_t{0}, 5 * MiB + 4096, export_bytes / 2, export_bytes - 1 * MiB})
      pieces.emplace_back(offset, random_bytes(1 << 20, offset / 4096 + 7));
  }
  void write(NbdTestClient& client) const {
    for (const auto& [offset, data] : pieces)
      REQUIRE(client.write(offset, data) == 0);
  }
  void check(NbdTestClient& client) const {
    std::vector<uint8_t> back;
    for (const auto& [offset, data] : pieces) {
      INFO("offset " << offset);
      REQUIRE(client.read(offset, data.size(), back) == 0);
      CHECK(back == data);
    }
  }
};

// A 256 MiB daemon with a spill file, a client connected to it and the
// pattern written through that client.
struct PatternedDaemon {
  explicit PatternedDaemon(std::string extra_config = {}, Environment environment = {})
      : daemon({.size = "256M",
                .extra_config = std::move(extra_config),
                .spill = spill_dir.file("test.spill"),
                .environment = with_memory(std::move(environment))}) {
    if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
    control.emplace(daemon.control_path());
    client.emplace(daemon.socket_path());
    REQUIRE(client->negotiate() == 1);
    pattern.write(*client);
  }
  static Environment with_memory(Environment environment) {
    environment.insert(environment.begin(), {"VRAMSWAP_FAKE_MEMORY", "2G"});
    return environment;
  }

  TempDir spill_dir;
  TestDaemon daemon;
  std::optional<FakeControl> control;
  std::optional<NbdTestClient> client;
  const Pattern pattern{256 * MiB};
};

}  // namespace

TEST_CASE(
    "released all of it, the daemon lets go of the GPU (no CUDA context) and keeps serving, "
    "and restore takes it back",
    "[elastic][fake]") {
  PatternedDaemon patterned;
  TestDaemon& daemon = patterned.daemon;
  FakeControl& control = *patterned.control;
  NbdTestClient& client = *patterned.client;
  const Pattern& pattern = patterned.pattern;
  REQUIRE(control_reads(control, &vramswap::fake_cuda::Control::live_contexts, 1));

  for (int cycle = 0; cycle < 3; ++cycle) {
    INFO("cycle " << cycle << "\n" << daemon.log());
    const CommandResult released = vramswap_command(daemon, {"release", "test", "all"});
    INFO(released.output);
    REQUIRE(released.exit_status == 0);
    CHECK_THAT(released.output, Contains("its CUDA context is released"));
    // The GPU holds nothing of ours: no context, not a byte of VRAM.
    CHECK(control->live_contexts.load() == 0);
    CHECK(control->bytes_allocated.load() == 0);
    pattern.check(client);  // from the spill area
    // Writes go on too: to the spill area, taking no VRAM.
    pattern.write(client);
    CHECK(control->live_contexts.load() == 0);
    const auto s = wait_for(daemon, [](const auto& st) { return st.gpu_released; });
    REQUIRE(s);
    CHECK(s->vram_bytes == 0);

    const CommandResult restored = vramswap_command(daemon, {"restore", "test"});
    INFO(restored.output);
    REQUIRE(restored.exit_status == 0);
    CHECK_THAT(restored.output, Contains("took its CUDA context again"));
    CHECK(control->live_contexts.load() == 1);
    CHECK(control->bytes_allocated.load() >= 256 * MiB);
    pattern.check(client);  // from VRAM, through the workers' new streams
    pattern.write(client);
  }
  pattern.check(client);
  CHECK(daemon.stop() == 0);
  CHECK(control->live_contexts.load() == 0);
}

TEST_CASE("on battery with on_battery = release, the daemon holds no CUDA context until AC returns",
          "[elastic][fake]") {
  TempDir power;
  set_power(power, false);
  PatternedDaemon patterned("on_battery = release\n", {{"VRAMSWAP_POWER_SUPPLY_DIR", power.path()},
                                                       {"VRAMSWAP_TIER_TICK_MS", "100"}});
  TestDaemon& daemon = patterned.daemon;
  FakeControl& control = *patterned.control;
  NbdTestClient& client = *patterned.client;
  const Pattern& pattern = patterned.pattern;

  for (int cycle = 0; cycle < 3; ++cycle) {
    INFO("cycle " << cycle << "\n" << daemon.log());
    set_power(power, true);
    REQUIRE(control_reads(control, &vramswap::fake_cuda::Control::live_contexts, 0));
    CHECK(control->bytes_allocated.load() == 0);
    pattern.check(client);
    pattern.write(client);
    set_power(power, false);
    REQUIRE(control_reads(control, &vramswap::fake_cuda::Control::live_contexts, 1));
    const auto back = wait_for(
        daemon, [](const auto& s) { return !s.gpu_released && s.vram_bytes == 256 * MiB; });
    REQUIRE(back);
    pattern.check(client);
  }
  CHECK_THAT(daemon.log(), Contains("holds nothing of vramswap now"));
  CHECK(daemon.stop() == 0);
}

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

namespace {

// Resident memory of a process, in bytes: VmRSS, and the Pss split of
// smaps_rollup (anonymous and file-backed).
struct Resident {
  uint64_t rss = 0, pss_anon = 0, pss_file = 0;
};

uint64_t kib_field(const std::string& text, const std::string& key) {
  const size_t at = text.find("\n" + key + ":");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + key.size() + 2, nullptr, 10) * 1024;
}

Resident resident_of(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  Resident r;
  r.rss = kib_field("\n" + read_file(proc + "/status"), "VmRSS");
  const std::string rollup = read_file(proc + "/smaps_rollup");
  r.pss_anon = kib_field(rollup, "Pss_Anon");
  r.pss_file = kib_field(rollup, "Pss_File");
  return r;
}

std::string mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f MiB", static_cast<double>(bytes) / MiB);
  return text;
}

std::string describe(const Resident& r) {
  return "VmRSS " + mib(r.rss) + " (Pss_Anon " + mib(r.pss_anon) + ", Pss_File " + mib(r.pss_file) +
         ")";
}

// After start, the daemon's threads have run their first rounds and ticks.
Resident settled(const TestDaemon& daemon) {
  std::this_thread::sleep_for(std::chrono::seconds(2));
  return resident_of(daemon.pid());
}

}  // namespace

TEST_CASE(
    "the daemon's resident memory grows by no more than the chunk map and the spill buffers, "
    "and a full release and restore adds nothing",
    "[elastic][fake][memory]") {
  constexpr unsigned workers = 4;
  const DaemonSpec base{.size = "1G", .connections = workers};
  // What the elastic tier holds in RAM, from the code: per chunk, its word
  // (4 bytes) and its live-block bits (one per 4 KiB block); the tier's bit
  // per chunk for writes that want storage; the mover's staging buffer (one
  // chunk, pinned); each worker's bounce buffer for spill I/O; and the mover
  // thread's stack, locked like every page of the daemon.
  constexpr uint64_t chunks = GiB / vramswap::store::ChunkMap::default_chunk_bytes;
  constexpr uint64_t chunk_map = chunks * (4 + vramswap::store::ChunkMap::default_chunk_bytes /
                                                   vramswap::store::ChunkMap::block_bytes / 8) +
                                 (chunks + 63) / 64 * 8;
  constexpr uint64_t spill_buffers = vramswap::store::ChunkMap::default_chunk_bytes +
                                     workers * vramswap::engine::ChunkGate::bounce_bytes;
  constexpr uint64_t mover_stack = vramswap::kernel::thread_stack_bytes;
  constexpr uint64_t expected = chunk_map + spill_buffers + mover_stack;
  // Allocator and page-granularity noise between two runs of the daemon.
  constexpr uint64_t slack = 1 * MiB;

  Resident without_tier;
  {
    DaemonSpec spec = base;
    TestDaemon daemon(spec);
    if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
    without_tier = settled(daemon);
    CHECK(daemon.stop() == 0);
  }

  TempDir spill_dir;
  DaemonSpec spec = base;
  spec.spill = spill_dir.file("test.spill");
  TestDaemon daemon(spec);
  if (!daemon.start()) FAIL("the daemon did not start:\n" << daemon.log());
  REQUIRE_THAT(daemon.log(), Contains("elastic VRAM"));
  // Data in every chunk of the first 64 MiB: those chunks are copied out and
  // back through the staging buffer, the rest move for free.
  {
    NbdTestClient client(daemon.socket_path());
    REQUIRE(client.negotiate() == 1);
    const auto data = random_bytes(1 << 20, 5);
    for (uint64_t offset = 0; offset < 64 * MiB; offset += data.size())
      REQUIRE(client.write(offset, data) == 0);
  }
  const Resident with_tier = settled(daemon);
  const CommandResult released = vramswap_command(daemon, {"release", "test", "all"});
  INFO(released.output << "\n" << daemon.log());
  REQUIRE(released.exit_status == 0);
  const Resident after_release = resident_of(daemon.pid());
  const CommandResult restored = vramswap_command(daemon, {"restore", "test"});
  INFO(restored.output);
  REQUIRE(restored.exit_status == 0);
  const Resident after_restore = settled(daemon);

  std::printf(
      "daemon resident memory, 1 GiB export, %u workers, fake driver:\n"
      "  spill = no:             %s\n"
      "  spill area, at start:   %s\n"
      "  after release all:      %s\n"
      "  after restore:          %s\n"
      "  expected growth:        %s (chunk map %llu bytes, spill buffers %s, mover stack %s)\n",
      workers, describe(without_tier).c_str(), describe(with_tier).c_str(),
      describe(after_release).c_str(), describe(after_restore).c_str(), mib(expected).c_str(),
      static_cast<unsigned long long>(chunk_map), mib(spill_buffers).c_str(),
      mib(mover_stack).c_str());
  INFO("spill = no: " << describe(without_tier) << "; with the spill area: " << describe(with_tier)
                      << "; after release: " << describe(after_release)
                      << "; after restore: " << describe(after_restore) << "; expected growth "
                      << mib(expected) << " + slack " << mib(slack));
  CHECK(with_tier.rss <= without_tier.rss + expected + slack);
  CHECK(after_release.rss <= with_tier.rss + slack);
  CHECK(after_restore.rss <= with_tier.rss + slack);
  CHECK(daemon.stop() == 0);
}
