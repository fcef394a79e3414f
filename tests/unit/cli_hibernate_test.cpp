// `vramswap hibernate prepare|resume`: which VRAM swap goes off before a
// hibernation, when the hibernation is refused instead, what the record
// keeps, and what resume makes of it.

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "cli/command_line.hpp"
#include "cli/hibernate_plan.hpp"
#include "cli_command_line_support.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"

using namespace vramswap;
using namespace vramswap::cli;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t mib = uint64_t{1} << 20;
constexpr uint64_t gib = uint64_t{1} << 30;

kernel::SwapEntry entry(std::string path, uint64_t size, uint64_t used, int priority) {
  return {std::move(path), "partition", size, used, priority};
}

VramSwap vram(std::string instance, std::string device, uint64_t used, int priority = 1000,
              bool discard = false) {
  return {std::move(instance), device, entry(device, 2 * gib, used, priority), discard};
}

const MemoryState plenty{8 * gib, 6 * gib};

}  // namespace

TEST_CASE("hibernate prepare: every daemon's active swap goes off, with what resume needs") {
  const std::vector<VramSwap> devices = {vram("0", "/dev/nbd0", 96 * mib, 1000, true),
                                         vram("second", "/dev/nbd3", 0, -3)};
  const std::vector<kernel::SwapEntry> swaps = {devices[0].swap, devices[1].swap,
                                                entry("/dev/vdc", gib, 0, -2)};
  const PreparePlan plan = plan_prepare(devices, swaps, plenty, false);
  CHECK(plan.refusal.empty());
  REQUIRE(plan.swap_off.size() == 2);
  CHECK(plan.swap_off[0] == HibernateSwap{"0", "/dev/nbd0", "vramswap/0", 1000, true, 96 * mib});
  // A priority the kernel picked (negative in /proc/swaps) is not kept: the
  // kernel picks again at swapon.
  CHECK(plan.swap_off[1] == HibernateSwap{"second", "/dev/nbd3", "vramswap/second", -1, false, 0});
}

TEST_CASE("hibernate prepare: nothing active, nothing to do") {
  const PreparePlan plan = plan_prepare({}, {entry("/dev/vdc", gib, 0, -2)}, plenty, false);
  CHECK(plan.refusal.empty());
  CHECK(plan.swap_off.empty());
}

TEST_CASE("hibernate prepare: refused when no other area can hold the image") {
  const std::vector<VramSwap> devices = {vram("0", "/dev/nbd0", 10 * mib)};
  // zram is skipped by systemd-sleep; VRAM swap is what goes off.
  const std::vector<kernel::SwapEntry> swaps = {devices[0].swap,
                                                entry("/dev/zram0", 4 * gib, 0, 100)};
  const PreparePlan plan = plan_prepare(devices, swaps, plenty, false);
  CHECK(plan.swap_off.empty());
  CHECK_THAT(plan.refusal, Contains("hibernation refused: no swap area but VRAM swap (/dev/nbd0)"));
  CHECK_THAT(plan.refusal, Contains("add a swap partition or file"));
  CHECK(plan.refusal.find('\n') == std::string::npos);
  // /sys/power/resume naming a device (a swap file with resume_offset, say)
  // is a place for the image even where /proc/swaps shows none.
  CHECK(plan_prepare(devices, swaps, plenty, true).refusal.empty());
}

TEST_CASE("hibernate prepare: refused when RAM and other swap cannot take the pages back") {
  const std::vector<VramSwap> devices = {vram("0", "/dev/nbd0", 3 * gib),
                                         vram("1", "/dev/nbd1", gib)};
  const kernel::SwapEntry disk = entry("/dev/sda2", 2 * gib, gib, -2);  // 1 GiB free
  const std::vector<kernel::SwapEntry> swaps = {devices[0].swap, devices[1].swap, disk};
  // 4 GiB to take back; 2.5 GiB available + 1 GiB of disk swap free.
  const MemoryState memory{8 * gib, 2 * gib + 512 * mib};
  const PreparePlan plan = plan_prepare(devices, swaps, memory, false);
  CHECK(plan.swap_off.empty());
  CHECK_THAT(plan.refusal, Contains("hibernation refused: 4.0 GiB swapped to VRAM (/dev/nbd0, "
                                    "/dev/nbd1)"));
  CHECK_THAT(plan.refusal, Contains("room for 3.5 GiB (512.0 MiB must stay free)"));
  CHECK_THAT(plan.refusal, Contains("close programs or add disk swap, then hibernate again"));
  // The headroom counts: just enough room without it is still refused, with
  // it the swapoff goes ahead.
  const uint64_t headroom = hibernate_headroom_bytes(memory.total_bytes);
  CHECK(headroom == 512 * mib);
  CHECK_FALSE(plan_prepare(devices, swaps, {8 * gib, 3 * gib}, false).refusal.empty());
  CHECK(plan_prepare(devices, swaps, {8 * gib, 3 * gib + headroom}, false).refusal.empty());
  CHECK(hibernate_headroom_bytes(512 * mib) == 64 * mib);
}

TEST_CASE("hibernate: /proc/meminfo and /sys/power/resume") {
  const auto memory = parse_meminfo(
      "MemTotal:        2013232 kB\nMemFree:          100000 kB\nMemAvailable:    1500000 kB\n");
  REQUIRE(memory);
  CHECK(memory->total_bytes == uint64_t{2013232} * 1024);
  CHECK(memory->available_bytes == uint64_t{1500000} * 1024);
  CHECK_FALSE(parse_meminfo("MemTotal: 1 kB\n"));
  CHECK_FALSE(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n"));
  CHECK_FALSE(resume_device_configured("0:0\n"));
  CHECK_FALSE(resume_device_configured(""));
  CHECK(resume_device_configured("254:32\n"));
}

TEST_CASE("hibernate: the record round-trips and refuses what is not one") {
  const HibernateRecord record{{{"0", "/dev/nbd0", "vramswap/0", 1000, true, 96 * mib},
                                {"x", "/dev/nbd5", "vramswap/x", -1, false, 0}}};
  std::string why;
  CHECK(record_from_json(record_to_json(record), why) == record);
  CHECK(record_from_json(record_to_json({}), why) == HibernateRecord{});
  for (const std::string bad :
       {"", "{", "[]", R"({"format": 2, "devices": []})", R"({"format": 1})",
        R"({"format": 1, "devices": [{"instance": "0"}]})",
        R"({"format": 1, "devices": [{"instance": "0", "device": "nbd0", "backend": "vramswap/0",
            "priority": 1, "discard": false}]})",
        R"({"format": 1, "devices": [{"instance": "0", "device": "/dev/nbd0",
            "backend": "vramswap/0", "priority": 40000, "discard": false}]})"}) {
    why.clear();
    CHECK_FALSE(record_from_json(bad, why));
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("hibernate: a record left by an earlier prepare keeps what this one did not take") {
  const HibernateSwap a{"0", "/dev/nbd0", "vramswap/0", 1000, false, 1};
  const HibernateSwap b{"1", "/dev/nbd1", "vramswap/1", 900, false, 2};
  HibernateSwap a_now = a;
  a_now.used_bytes = 5;
  const HibernateRecord merged = merge_records({{a_now}}, {{a, b}});
  CHECK(merged == HibernateRecord{{a_now, b}});
  CHECK(merge_records({}, {}) == HibernateRecord{});
}

TEST_CASE("hibernate resume: swaps on what is still the instance's and not swap already") {
  const HibernateRecord record{{{"0", "/dev/nbd0", "vramswap/0", 1000, true, 1},
                                {"1", "/dev/nbd1", "vramswap/1", 900, false, 1},
                                {"2", "/dev/nbd2", "vramswap/2", 800, false, 1},
                                {"3", "/dev/nbd3", "vramswap/3", 700, false, 1}}};
  const std::map<std::string, std::string> backends = {
      {"/dev/nbd0", "vramswap/0"}, {"/dev/nbd1", "vramswap/1"}, {"/dev/nbd2", "someone-else"}};
  const auto backend_of = [&](const std::string& device) -> std::optional<std::string> {
    const auto it = backends.find(device);
    if (it == backends.end()) return std::nullopt;
    return it->second;
  };
  const auto is_swap = [](const std::string& device) { return device == "/dev/nbd1"; };
  const std::vector<ResumeAction> actions = plan_resume(record, backend_of, is_swap);
  REQUIRE(actions.size() == 4);
  CHECK(actions[0].step == ResumeStep::swap_on);
  CHECK(actions[0].swap == record.devices[0]);
  CHECK(actions[1].step == ResumeStep::already_on);
  CHECK(actions[2].step == ResumeStep::not_the_same);
  CHECK_THAT(actions[2].why, Contains("someone-else"));
  CHECK(actions[3].step == ResumeStep::not_the_same);
  CHECK_THAT(actions[3].why, Contains("no longer connected"));
}

TEST_CASE("command line: hibernate prepare|resume") {
  CHECK(parse({"hibernate", "prepare"}).command == Command::hibernate);
  CHECK(parse({"hibernate", "prepare"}).hibernate_step == HibernateStep::prepare);
  CHECK(parse({"--config", "/tmp/c", "hibernate", "resume"}).hibernate_step ==
        HibernateStep::resume);
  for (const std::vector<std::string>& words :
       {std::vector<std::string>{"hibernate"}, {"hibernate", "now"}}) {
    try {
      parse(words);
      FAIL("accepted");
    } catch (const StartupError& e) {
      CHECK(e.exit_status() == exit_code::usage);
      CHECK_THAT(e.what(), Contains("hibernate needs prepare or resume"));
    }
  }
  try {
    parse({"hibernate", "resume", "extra"});
    FAIL("accepted");
  } catch (const StartupError& e) {
    CHECK_THAT(e.what(), Contains("unexpected argument \"extra\""));
  }
}
