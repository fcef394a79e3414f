// The sleep watch against a fake logind on a private bus (tests/fake_logind):
// the inhibitor's life around a sleep, the budget under logind's delay, and
// the daemon running on without logind.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "daemon/sleep_watch.hpp"
#include "fake_cuda_support.hpp"
#include "fake_logind.hpp"

using namespace vramswap;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

// Actions whose before_sleep blocks until the test opens the gate.
class GatedActions final : public daemon::SleepActions {
 public:
  std::string before_sleep() noexcept override {
    ++before_calls;
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [this] { return open_; });
    before_done = true;
    return "suspend: saved 4.0 MiB to the spill area in 0.0 s";
  }
  std::string after_resume() noexcept override {
    ++after_calls;
    return "resume: restored 4.0 MiB in 0.0 s";
  }
  std::string at_risk() const noexcept override { return "2.0 MiB still in VRAM"; }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

  std::atomic<int> before_calls{0};
  std::atomic<int> after_calls{0};
  std::atomic<bool> before_done{false};

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

template <typename Ready>
bool eventually(Ready ready, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++count;
  return count;
}

}  // namespace

TEST_CASE("sleep budget: a tenth under logind's delay, at most a second") {
  CHECK(daemon::sleep_budget(5s) == 4500ms);
  CHECK(daemon::sleep_budget(30s) == 29s);
  CHECK(daemon::sleep_budget(500ms) == 450ms);
  CHECK(daemon::sleep_budget(0s) == 0ms);
}

TEST_CASE(
    "sleep watch: the inhibitor is held from the start, let go only once before_sleep is done, "
    "and taken again on resume") {
  test::PrivateBus bus;
  test::FakeLogind logind(bus.address(), 5s);
  test::ScopedEnvironment environment;
  environment.set("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
  GatedActions actions;
  test::StderrCapture log;
  auto watch = daemon::SleepWatch::start(actions, "0");
  REQUIRE(watch);
  CHECK(logind.inhibitors_taken() == 1);
  CHECK(logind.inhibitors_held() == 1);
  const auto taken = logind.last_inhibit();
  CHECK(taken.what == "sleep");
  CHECK(taken.mode == "delay");
  CHECK(taken.who == "vramswap");
  CHECK_THAT(taken.why, Contains("vramswap@0"));

  logind.prepare_for_sleep(true);
  REQUIRE(eventually([&] { return actions.before_calls == 1; }));
  // Saving: logind must keep waiting.
  std::this_thread::sleep_for(300ms);
  CHECK(logind.inhibitors_held() == 1);
  actions.open();
  CHECK(logind.wait_for_held(0, 3s));
  CHECK(actions.before_done);

  logind.prepare_for_sleep(false);
  CHECK(logind.wait_for_taken(2, 3s));
  CHECK(logind.wait_for_held(1, 3s));
  CHECK(eventually([&] { return actions.after_calls == 1; }));
  watch.reset();
  // Stopping lets go of the inhibitor.
  CHECK(logind.wait_for_held(0, 3s));
  const std::string text = log.text();
  CHECK_THAT(text, Contains("suspend: saved 4.0 MiB to the spill area"));
  CHECK_THAT(text, Contains("resume: restored 4.0 MiB"));
  CHECK_THAT(text, !Contains("did not finish"));
}

TEST_CASE(
    "sleep watch: before_sleep past the budget lets the sleep go on at the budget, saying what "
    "is at risk") {
  test::PrivateBus bus;
  test::FakeLogind logind(bus.address(), 1s);  // budget 0.9 s
  test::ScopedEnvironment environment;
  environment.set("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
  GatedActions actions;
  test::StderrCapture log;
  auto watch = daemon::SleepWatch::start(actions, "0");
  REQUIRE(watch);
  const auto start = std::chrono::steady_clock::now();
  logind.prepare_for_sleep(true);
  CHECK(logind.wait_for_held(0, 3s));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 850ms);
  CHECK(waited < 2500ms);
  CHECK_FALSE(actions.before_done);  // still saving, yet logind was let go
  // Resume while the save still runs: a new inhibitor at once; the resume
  // action waits for the save.
  logind.prepare_for_sleep(false);
  CHECK(logind.wait_for_held(1, 3s));
  std::this_thread::sleep_for(100ms);
  CHECK(actions.after_calls == 0);
  actions.open();
  CHECK(eventually([&] { return actions.after_calls == 1; }));
  watch.reset();
  const std::string text = log.text();
  CHECK_THAT(text, Contains("did not finish within 0.9 s"));
  CHECK_THAT(text, Contains("2.0 MiB still in VRAM"));
  CHECK_THAT(text, Contains("InhibitDelayMaxSec"));
}

TEST_CASE("sleep watch: without logind on the bus, one line, and nothing to watch") {
  test::PrivateBus bus;
  test::ScopedEnvironment environment;
  environment.set("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
  GatedActions actions;
  test::StderrCapture log;
  CHECK_FALSE(daemon::SleepWatch::start(actions, "0"));
  const std::string text = log.text();
  CHECK(count_of(text, "sleep is not protected") == 1);
  CHECK_THAT(text, Contains("org.freedesktop.login1"));
  CHECK(actions.before_calls == 0);
}

TEST_CASE("sleep watch: without a system bus, one line, and nothing to watch") {
  test::TempDir dir;
  test::ScopedEnvironment environment;
  environment.set("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=" + dir.file("no-bus"));
  GatedActions actions;
  test::StderrCapture log;
  CHECK_FALSE(daemon::SleepWatch::start(actions, "0"));
  const std::string text = log.text();
  CHECK(count_of(text, "sleep is not protected") == 1);
  CHECK_THAT(text, Contains("system bus"));
}
