#pragma once

#include <string>

namespace vramswap::daemon {

// What the daemon does around a system sleep (SleepWatch calls it when
// logind announces one). The daemon's elastic tier implements it; tests use
// their own.
class SleepActions {
 public:
  virtual ~SleepActions() = default;
  // Before the system sleeps: put every swapped page where the sleep cannot
  // lose it, and hold it there until after_resume(). Blocks until done;
  // returns the journal line ("suspend: saved 5.2 GiB to the spill area in
  // 2.4 s"). The watcher does not wait past logind's delay (it lets the
  // sleep go on and says so), so this may still run when the system sleeps.
  virtual std::string before_sleep() noexcept = 0;
  // After resume: bring the pages back as far as the other triggers allow;
  // returns the journal line.
  virtual std::string after_resume() noexcept = 0;
  // What a sleep would still lose now ("1.2 GiB still in VRAM"), read from
  // another thread while before_sleep() runs; empty when nothing.
  virtual std::string at_risk() const noexcept { return {}; }
};

}  // namespace vramswap::daemon
