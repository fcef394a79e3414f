// The busy-poll rule's decisions, on a made-up clock and machine: spin only
// while requests come closer together than the window, back off after a spin
// that found nothing, never on an oversubscribed machine or on battery, and an
// explicit busy_poll is obeyed as configured.

#include <catch2/catch.hpp>

#include <optional>

#include "engine/busy_poll_policy.hpp"

using namespace vramswap::engine;

namespace {

constexpr int64_t us = 1000;
constexpr int64_t ms = 1000 * us;

struct FakeLoad : MachineLoad {
  std::optional<unsigned> runnable = 1;
  unsigned cpu_count = 2;
  bool battery = false;
  unsigned reads = 0;
  std::optional<unsigned> runnable_threads() noexcept override {
    ++reads;
    return runnable;
  }
  unsigned cpus() noexcept override { return cpu_count; }
  bool on_battery() noexcept override { return battery; }
};

// A worker busy with requests 10 us apart (well within a 50 us window).
void burst(BusyPollPolicy& policy, int64_t& now, int requests = 3) {
  for (int i = 0; i < requests; ++i) {
    now += 10 * us;
    policy.work_found(now);
  }
}

}  // namespace

TEST_CASE("busy: requests closer than the window make the worker spin until the window ends") {
  FakeLoad load;
  BusyPollPolicy policy(BusyPollMode::adaptive, 50, load);
  int64_t now = 1'000 * ms;
  burst(policy, now);
  CHECK(policy.spin(now + 1 * us));
  CHECK(policy.spin(now + 49 * us));
  CHECK_FALSE(policy.spin(now + 50 * us));  // the window is over: sleep
}

TEST_CASE("idle: a lone request, or requests further apart than the window, never spin") {
  FakeLoad load;
  BusyPollPolicy policy(BusyPollMode::adaptive, 50, load);
  int64_t now = 1'000 * ms;
  policy.work_found(now);  // the first request after a long idle time
  CHECK_FALSE(policy.spin(now + 1 * us));
  for (int i = 0; i < 5; ++i) {  // a trickle: one request every 200 us
    now += 200 * us;
    policy.work_found(now);
    CHECK_FALSE(policy.spin(now + 1 * us));
  }
}

TEST_CASE(
    "a spin that finds nothing backs spinning off, doubling, and one that finds work ends it") {
  FakeLoad load;
  BusyPollPolicy policy(BusyPollMode::adaptive, 50, load);
  int64_t now = 1'000 * ms;
  burst(policy, now);
  REQUIRE(policy.spin(now + 1 * us));
  CHECK_FALSE(policy.spin(now + 60 * us));  // nothing came: 1 ms back-off
  CHECK(policy.backoff_ns() == BusyPollPolicy::min_backoff_ns);

  now += 100 * us;
  burst(policy, now);  // a new burst within the back-off: no spinning
  CHECK_FALSE(policy.spin(now + 1 * us));

  now += 2 * ms;  // after the back-off: spins, finds nothing again, twice as long
  burst(policy, now);
  REQUIRE(policy.spin(now + 1 * us));
  CHECK_FALSE(policy.spin(now + 60 * us));
  CHECK(policy.backoff_ns() == 2 * BusyPollPolicy::min_backoff_ns);

  now += 3 * ms;
  burst(policy, now);
  REQUIRE(policy.spin(now + 1 * us));
  policy.work_found(now + 20 * us);  // the spin caught a request
  CHECK(policy.backoff_ns() == 0);
  now += 20 * us;
  CHECK(policy.spin(now + 1 * us));

  for (int i = 0; i < 40; ++i) {  // bounded: never more than a second
    now += 2 * BusyPollPolicy::max_backoff_ns;
    burst(policy, now);
    REQUIRE(policy.spin(now + 1 * us));
    CHECK_FALSE(policy.spin(now + 60 * us));
  }
  CHECK(policy.backoff_ns() == BusyPollPolicy::max_backoff_ns);
}

TEST_CASE("oversubscribed: more runnable threads than CPUs, never spin") {
  FakeLoad load;
  load.cpu_count = 2;
  load.runnable = 3;
  BusyPollPolicy policy(BusyPollMode::adaptive, 50, load);
  int64_t now = 1'000 * ms;
  burst(policy, now);
  CHECK_FALSE(policy.spin(now + 1 * us));

  SECTION("the load is looked at again after 20 ms, not per request") {
    const unsigned reads = load.reads;
    burst(policy, now);
    CHECK_FALSE(policy.spin(now + 1 * us));
    CHECK(load.reads == reads);
    load.runnable = 2;  // as many as CPUs: spare enough
    now += BusyPollPolicy::load_recheck_ns;
    burst(policy, now);
    CHECK(policy.spin(now + 1 * us));
    CHECK(load.reads == reads + 1);
  }
  SECTION("an unknown load does not stop spinning") {
    load.runnable.reset();
    now += BusyPollPolicy::load_recheck_ns;
    burst(policy, now);
    CHECK(policy.spin(now + 1 * us));
  }
}

TEST_CASE("on battery: never spin, and back on mains, spinning resumes") {
  FakeLoad load;
  load.battery = true;
  BusyPollPolicy policy(BusyPollMode::adaptive, 50, load);
  int64_t now = 1'000 * ms;
  burst(policy, now);
  CHECK_FALSE(policy.spin(now + 1 * us));
  load.battery = false;
  now += BusyPollPolicy::battery_recheck_ns;
  burst(policy, now);
  CHECK(policy.spin(now + 1 * us));
}

TEST_CASE("an explicit busy_poll is obeyed whatever the load, and 0 never spins") {
  FakeLoad load;
  load.runnable = 16;
  load.battery = true;
  int64_t now = 1'000 * ms;
  BusyPollPolicy fixed(BusyPollMode::fixed, 50, load);
  fixed.work_found(now);  // even a lone request
  CHECK(fixed.spin(now + 49 * us));
  CHECK_FALSE(fixed.spin(now + 50 * us));
  CHECK(load.reads == 0);

  load.runnable = 1;
  load.battery = false;
  BusyPollPolicy off(BusyPollMode::fixed, 0, load);
  BusyPollPolicy adaptive_off(BusyPollMode::adaptive, 0, load);
  burst(off, now);
  burst(adaptive_off, now);
  CHECK_FALSE(off.spin(now + 1 * us));
  CHECK_FALSE(adaptive_off.spin(now + 1 * us));
}

TEST_CASE("the system's load and power sources read this machine") {
  SystemLoad system;
  CHECK(system.cpus() >= 1);
  const std::optional<unsigned> runnable = system.runnable_threads();
  REQUIRE(runnable);          // /proc/loadavg is there on every Linux
  CHECK(*runnable >= 1);      // this thread runs while it reads
  (void)system.on_battery();  // whatever the machine: it must answer, not crash
}
