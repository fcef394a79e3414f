#include <catch2/catch.hpp>

#include "common/byte_size.hpp"
#include "daemon/tier_policy.hpp"

using vramswap::GiB;
using vramswap::MiB;
using vramswap::daemon::TierAction;
using vramswap::daemon::TierDecision;
using vramswap::daemon::TierInputs;
using vramswap::daemon::TierPolicy;

namespace {

constexpr int64_t second = 1'000'000'000;
constexpr uint64_t chunk = 2 * MiB;

// An 8 GiB export on a GPU whose free VRAM the test sets.
TierInputs at(int64_t seconds, uint64_t free, uint64_t in_vram = 8 * GiB, bool battery = false) {
  TierInputs in;
  in.now_ns = seconds * second;
  in.gpu_free_bytes = free;
  in.on_battery = battery;
  in.vram_bytes = in_vram;
  in.elsewhere_bytes = 8 * GiB - in_vram;
  return in;
}

TierPolicy policy(bool release_on_battery = false) {
  return TierPolicy(GiB, release_on_battery, chunk, std::chrono::seconds(30),
                    std::chrono::seconds(30));
}

}  // namespace

TEST_CASE("free VRAM below the reserve evicts what the reserve lacks") {
  TierPolicy p = policy();
  CHECK(p.decide(at(0, 2 * GiB)).action == TierAction::none);
  const TierDecision d = p.decide(at(1, GiB / 4));
  CHECK(d.action == TierAction::evict);
  CHECK(d.bytes == GiB * 3 / 4);
  CHECK_FALSE(d.everything);
  CHECK(std::string(d.reason) == "another program needed VRAM");
  // Nothing left in VRAM: nothing to evict.
  CHECK(p.decide(at(2, 0, 0)).action == TierAction::none);
}

TEST_CASE("chunks come back only after free VRAM stayed above the reserve for the whole wait") {
  TierPolicy p = policy();
  // 2 GiB out of VRAM, 3 GiB free: above the reserve.
  CHECK(p.decide(at(100, 3 * GiB, 6 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(129, 3 * GiB, 6 * GiB)).action == TierAction::none);
  // The program took VRAM again for a moment: the wait starts over.
  CHECK(p.decide(at(130, GiB, 6 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(131, 3 * GiB, 6 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(160, 3 * GiB, 6 * GiB)).action == TierAction::none);
  const TierDecision d = p.decide(at(161, 3 * GiB, 6 * GiB));
  CHECK(d.action == TierAction::restore);
  CHECK(d.bytes == 2 * GiB);  // what fits above the reserve
  p.sweep_done(d, false, 161 * second, 8 * GiB);
  // A partial restore waits a whole while again before the next.
  CHECK(p.decide(at(162, 2 * GiB, 7 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(192, 2 * GiB, 7 * GiB)).action == TierAction::restore);
  // Less than a chunk above the reserve is not room.
  TierPolicy q = policy();
  CHECK(q.decide(at(0, GiB + chunk - 1, 6 * GiB)).action == TierAction::none);
  CHECK(q.decide(at(60, GiB + chunk - 1, 6 * GiB)).action == TierAction::none);
}

TEST_CASE("a failed sweep waits before the next of its kind") {
  TierPolicy p = policy();
  const TierDecision d = p.decide(at(0, 0));
  REQUIRE(d.action == TierAction::evict);
  p.sweep_done(d, true, 0, 7 * GiB);  // chunks busy or a move failed: some left
  CHECK(p.decide(at(10, 0)).action == TierAction::none);
  CHECK(p.decide(at(30, 0)).action == TierAction::evict);
}

TEST_CASE(
    "an eviction short only because VRAM held no more is no failure: the next one is at once") {
  // Chunks come back after 1 s of free VRAM; a failed sweep waits 30 s.
  TierPolicy p(GiB, false, chunk, std::chrono::seconds(1), std::chrono::seconds(30));
  // Another program leaves 0 free: the reserve lacks 1 GiB, but only 512 MiB
  // of the export is in VRAM. All of it goes; the sweep falls short.
  const TierDecision d = p.decide(at(0, 0, 512 * MiB));
  REQUIRE(d.action == TierAction::evict);
  CHECK(d.bytes == GiB);
  p.sweep_done(d, true, 0, 0);
  // The program gives the VRAM back and the chunks return a second later...
  CHECK(p.decide(at(1, 6 * GiB, 0)).action == TierAction::none);
  const TierDecision back = p.decide(at(2, 6 * GiB, 0));
  REQUIRE(back.action == TierAction::restore);
  p.sweep_done(back, false, 2 * second, 8 * GiB);
  // ...and when it takes the VRAM again, well within retry_after of the
  // short eviction, the chunks leave at once.
  CHECK(p.decide(at(3, 0)).action == TierAction::evict);
}

TEST_CASE("on battery everything leaves VRAM, and comes back at once on AC") {
  TierPolicy p = policy(true);
  const TierDecision d = p.decide(at(0, 6 * GiB, 8 * GiB, true));
  CHECK(d.action == TierAction::evict);
  CHECK(d.everything);
  CHECK(std::string(d.reason) == "on battery");
  CHECK(p.battery_released());
  // Free VRAM plenty, still on battery: nothing comes back.
  CHECK(p.decide(at(100, 14 * GiB, 0, true)).action == TierAction::none);
  // AC: no hysteresis.
  const TierDecision back = p.decide(at(101, 14 * GiB, 0, false));
  CHECK(back.action == TierAction::restore);
  CHECK(back.bytes == 13 * GiB);
  CHECK_FALSE(p.battery_released());
}

TEST_CASE("on_battery = keep ignores the battery") {
  TierPolicy p = policy(false);
  CHECK(p.decide(at(0, 6 * GiB, 8 * GiB, true)).action == TierAction::none);
}

TEST_CASE("an admin's release holds until the admin's restore, pressure still evicts") {
  TierPolicy p = policy();
  p.hold(true);
  CHECK(p.decide(at(0, 5 * GiB, 4 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(100, 5 * GiB, 4 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(101, 0, 4 * GiB)).action == TierAction::evict);
  p.hold(false);
  CHECK(p.decide(at(102, 5 * GiB, 4 * GiB)).action == TierAction::none);
  CHECK(p.decide(at(132, 5 * GiB, 4 * GiB)).action == TierAction::restore);
}
