#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/unique_fd.hpp"
#include "daemon/sleep_actions.hpp"
#include "systemd/logind.hpp"

namespace vramswap::daemon {

// How long before_sleep may take: logind waits for delay inhibitors at most
// InhibitDelayMaxSec (5 s by default) and then sleeps anyway; the inhibitor
// is let go a little earlier (a tenth, at most a second), so that the line
// saying so is written before the system sleeps.
std::chrono::milliseconds sleep_budget(std::chrono::microseconds inhibit_delay_max) noexcept;

// For a device without a spill area: one line saying whether a sleep can
// lose its swapped pages (unless the NVIDIA driver says it preserves video
// memory, it can).
void say_sleep_without_spill_area();

// Keeps swapped pages safe across a system sleep (vramswapd(8), SLEEP): holds
// a logind delay inhibitor while the daemon runs; when logind announces a
// sleep (PrepareForSleep(true)) it runs SleepActions::before_sleep() and
// closes the inhibitor once that is done, or once the budget (above) is
// spent, with a line saying what is still at risk; on resume
// (PrepareForSleep(false)) it takes a new inhibitor and runs after_resume().
// Each action's line goes to the journal.
//
// Two threads of its own, none on the I/O path: one owns the bus connection
// (sd-bus is not thread-safe) and keeps the budget, the other runs the
// actions, which block (the elastic tier's thread does the moves); actions
// run one at a time, in the order logind announced them.
class SleepWatch {
 public:
  // Watches for `actions`, which must outlive the watch. Without a system
  // bus or logind, logs one line saying that sleep is not protected and why,
  // and returns nothing: the daemon runs on.
  static std::unique_ptr<SleepWatch> start(SleepActions& actions, const std::string& instance);
  ~SleepWatch();
  SleepWatch(const SleepWatch&) = delete;
  SleepWatch& operator=(const SleepWatch&) = delete;

 private:
  enum class Action : uint8_t { none, before_sleep, after_resume };

  SleepWatch(SleepActions& actions, std::string instance,
             std::unique_ptr<systemd::LogindSleep> logind, UniqueFd inhibitor,
             std::chrono::milliseconds budget);
  void watch() noexcept;
  void act() noexcept;
  void prepare(bool sleeping) noexcept;
  void take_inhibitor() noexcept;
  void post(Action action) noexcept;

  SleepActions& actions_;
  std::string instance_;
  std::unique_ptr<systemd::LogindSleep> logind_;  // the watch thread's only
  UniqueFd inhibitor_;                            // the watch thread's only
  std::chrono::milliseconds budget_;
  UniqueFd stop_fd_;  // eventfd: end both threads
  UniqueFd done_fd_;  // eventfd: an action finished
  // The watch thread's: a before_sleep under way, and when its budget ends.
  bool saving_ = false;
  std::chrono::steady_clock::time_point saving_deadline_;
  bool said_inhibit_failed_ = false;

  std::mutex mutex_;  // guards what follows
  std::condition_variable wake_actor_;
  std::deque<Action> queue_;  // in logind's order
  bool stopping_ = false;
  bool before_sleep_done_ = false;  // for the watch thread: a before_sleep finished

  std::thread watcher_;
  std::thread actor_;
};

}  // namespace vramswap::daemon
