#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/limits.hpp"

namespace vramswap::engine {

// What the machine says about spare CPU: injectable, so that the policy's
// decisions can be tested on any machine.
class MachineLoad {
 public:
  virtual ~MachineLoad() = default;
  // Threads runnable right now (running or waiting for a CPU), or nothing if
  // unknown.
  virtual std::optional<unsigned> runnable_threads() noexcept = 0;
  // CPUs this process may run on.
  virtual unsigned cpus() noexcept = 0;
  // True while the machine runs on battery.
  virtual bool on_battery() noexcept = 0;
};

// /proc/loadavg's runnable count, the affinity mask, and the batteries under
// /sys/class/power_supply (found once, at construction: the reads on the way
// allocate nothing). Tests name another directory laid out the same way.
class SystemLoad final : public MachineLoad {
 public:
  static constexpr const char* default_power_supply_dir = "/sys/class/power_supply";
  explicit SystemLoad(const std::string& power_supply_dir = default_power_supply_dir);
  std::optional<unsigned> runnable_threads() noexcept override;
  unsigned cpus() noexcept override { return cpus_; }
  bool on_battery() noexcept override;

 private:
  unsigned cpus_;
  std::vector<std::string> battery_status_paths_;
};

// Whether a worker that found no work should poll its sockets again at once
// (spin) or sleep in epoll_wait until a socket wakes it.
//
// Spinning saves the wake-up latency of the next request, but only if one
// comes within the spin window, and only if the CPU it burns is spare. So in
// adaptive mode the worker spins only when:
//   - the last two rounds with work came within the window of each other
//     (requests arrive closer together than the window: the next one will
//     likely be caught); a lone request, or a trickle, sleeps at once;
//   - the last spin did not come up empty: a spin that found nothing backs
//     spinning off, for 1 ms, then twice as long after each further empty
//     spin, up to 1 s; a spin that finds work ends the back-off;
//   - the machine is not oversubscribed (more runnable threads than CPUs:
//     the spinning thread would take the core a client or the user's own
//     program needs) and not on battery. Both are looked at every 20 ms and
//     every 10 s at most, and only while the policy would spin.
// Explicitly configured (fixed mode), it spins the configured time after every
// round with work, whatever the load: the administrator's choice.
//
// The clock is the caller's (monotonic nanoseconds), so tests drive it. One
// per worker thread; not thread-safe; allocates nothing after construction.
class BusyPollPolicy {
 public:
  static constexpr int64_t min_backoff_ns = 1'000'000;
  static constexpr int64_t max_backoff_ns = 1'000'000'000;
  static constexpr int64_t load_recheck_ns = 20'000'000;
  static constexpr int64_t battery_recheck_ns = 10'000'000'000;

  BusyPollPolicy(BusyPollMode mode, unsigned window_us, MachineLoad& load) noexcept;

  // The worker found work at `now_ns` (a round with something to do).
  void work_found(int64_t now_ns) noexcept;
  // The worker found nothing: true to poll again without sleeping.
  bool spin(int64_t now_ns) noexcept;

  bool spinning() const noexcept { return spinning_; }
  int64_t backoff_ns() const noexcept { return backoff_ns_; }

 private:
  bool machine_has_spare_cpu(int64_t now_ns) noexcept;

  BusyPollMode mode_;
  int64_t window_ns_;
  MachineLoad& load_;
  int64_t last_work_ns_ = INT64_MIN / 2;
  int64_t last_gap_ns_ = INT64_MAX;
  bool spinning_ = false;  // polling without sleep since the last work
  int64_t backoff_ns_ = 0;
  int64_t backoff_until_ns_ = INT64_MIN;
  int64_t load_checked_ns_ = INT64_MIN / 2;
  int64_t battery_checked_ns_ = INT64_MIN / 2;
  bool oversubscribed_ = false;
  bool on_battery_ = false;
};

}  // namespace vramswap::engine
