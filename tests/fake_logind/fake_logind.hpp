#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vramswap::test {

// A dbus-daemon of the test's own (session policy: anyone may own any name),
// listening on a socket in a private directory; stopped with the object.
class PrivateBus {
 public:
  // Throws std::runtime_error when dbus-daemon cannot be started.
  PrivateBus();
  ~PrivateBus();
  PrivateBus(const PrivateBus&) = delete;
  PrivateBus& operator=(const PrivateBus&) = delete;

  // "unix:path=...", for DBUS_SYSTEM_BUS_ADDRESS.
  std::string address() const { return "unix:path=" + socket_; }

 private:
  std::string directory_;
  std::string socket_;
  pid_t pid_ = -1;
};

// org.freedesktop.login1 on a bus, as far as sleep goes: Manager.Inhibit
// (the descriptor it returns is a pipe's write end; the inhibitor is held
// until every copy of it is closed, as with logind's FIFO), the
// InhibitDelayMaxUSec property and the PrepareForSleep signal. Served by a
// thread of its own.
class FakeLogind {
 public:
  struct Inhibit {
    std::string what, who, why, mode;
  };

  FakeLogind(const std::string& address, std::chrono::microseconds inhibit_delay_max);
  ~FakeLogind();
  FakeLogind(const FakeLogind&) = delete;
  FakeLogind& operator=(const FakeLogind&) = delete;

  // Emits PrepareForSleep(sleeping).
  void prepare_for_sleep(bool sleeping);
  // Inhibit calls answered so far, and the last one's arguments.
  size_t inhibitors_taken() const;
  Inhibit last_inhibit() const;
  // Inhibitors whose descriptor is still open somewhere.
  size_t inhibitors_held() const;
  // Waits until inhibitors_held() == count; false on timeout.
  bool wait_for_held(size_t count, std::chrono::milliseconds timeout) const;
  bool wait_for_taken(size_t count, std::chrono::milliseconds timeout) const;

 private:
  friend struct FakeLogindHandlers;
  struct Bus;
  void serve();

  std::unique_ptr<Bus> bus_;
  uint64_t delay_usec_;
  mutable std::mutex mutex_;  // guards the bus and what follows
  std::vector<int> read_ends_;
  Inhibit last_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace vramswap::test
