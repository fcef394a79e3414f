#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/unique_fd.hpp"

namespace vramswap::systemd {

// logind's sleep hooks, over the system bus (or $DBUS_SYSTEM_BUS_ADDRESS, as
// sd-bus reads it; tests point it at a private bus): delay inhibitors and the
// PrepareForSleep signal (org.freedesktop.login1(5)).
//
// One thread owns an object: sd-bus connections are not thread-safe. The
// owner subscribes, then polls fd() for events() at most timeout_ms() and
// calls process(), which runs the callback for each signal that arrived.
class LogindSleep {
 public:
  // Connects. Throws std::runtime_error saying why when there is no system
  // bus.
  LogindSleep();
  ~LogindSleep();
  LogindSleep(const LogindSleep&) = delete;
  LogindSleep& operator=(const LogindSleep&) = delete;

  // Manager.Inhibit("sleep", who, why, "delay"): logind delays a sleep until
  // the returned descriptor is closed, at most InhibitDelayMaxSec. Throws
  // std::runtime_error with the bus's answer (no logind on the bus, ...).
  UniqueFd inhibit_sleep(const std::string& who, const std::string& why);
  // logind's InhibitDelayMaxUSec: how long it waits for delay inhibitors.
  // Throws std::runtime_error.
  std::chrono::microseconds inhibit_delay_max();

  // PrepareForSleep: `on_prepare(true)` before a sleep, `on_prepare(false)`
  // after resume. Throws std::runtime_error.
  void subscribe(std::function<void(bool)> on_prepare);

  int fd() const;
  short events() const;
  // -1: no deadline of the bus's own.
  int timeout_ms() const;
  // Reads and dispatches what arrived. False when the connection is gone
  // (the bus closed it, or logind's bus went away).
  bool process();

 private:
  struct Bus;
  std::unique_ptr<Bus> bus_;
  std::function<void(bool)> on_prepare_;
};

}  // namespace vramswap::systemd
