#include "systemd/logind.hpp"

#include <fcntl.h>
#include <poll.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "systemd/bus_call.hpp"

namespace vramswap::systemd {
namespace {

constexpr const char* logind = "org.freedesktop.login1";
constexpr const char* manager_path = "/org/freedesktop/login1";
constexpr const char* manager_interface = "org.freedesktop.login1.Manager";

}  // namespace

struct LogindSleep::Bus {
  sd_bus* bus = nullptr;
  sd_bus_slot* match = nullptr;
  ~Bus() {
    sd_bus_slot_unref(match);
    sd_bus_flush_close_unref(bus);
  }
};

LogindSleep::LogindSleep() : bus_(std::make_unique<Bus>()) {
  if (const int r = sd_bus_open_system(&bus_->bus); r < 0) {
    bus_->bus = nullptr;
    throw std::runtime_error(std::string("cannot connect to the system bus: ") + std::strerror(-r));
  }
}

void LogindSleep::subscribe(std::function<void(bool)> on_prepare) {
  on_prepare_ = std::move(on_prepare);
  auto handler = [](sd_bus_message* message, void* self, sd_bus_error*) -> int {
    int sleeping = 0;
    if (sd_bus_message_read(message, "b", &sleeping) < 0) return 0;
    static_cast<LogindSleep*>(self)->on_prepare_(sleeping != 0);
    return 0;
  };
  if (const int r = sd_bus_match_signal(bus_->bus, &bus_->match, logind, manager_path,
                                        manager_interface, "PrepareForSleep", handler, this);
      r < 0) {
    throw std::runtime_error(std::string("cannot subscribe to logind's PrepareForSleep: ") +
                             std::strerror(-r));
  }
}

LogindSleep::~LogindSleep() = default;

UniqueFd LogindSleep::inhibit_sleep(const std::string& who, const std::string& why) {
  BusError error;
  BusMessage reply;
  const int r = sd_bus_call_method(bus_->bus, logind, manager_path, manager_interface, "Inhibit",
                                   &error.error, &reply.message, "ssss", "sleep", who.c_str(),
                                   why.c_str(), "delay");
  if (r < 0)
    throw std::runtime_error("logind refused a sleep inhibitor: " +
                             describe_bus_failure(r, error.error));
  int fd = -1;
  if (const int read = sd_bus_message_read(reply.message, "h", &fd); read < 0) {
    throw std::runtime_error(std::string("logind's inhibitor reply is malformed: ") +
                             std::strerror(-read));
  }
  // The message owns its descriptor: keep a copy of our own.
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    throw std::runtime_error(std::string("cannot keep logind's inhibitor: ") +
                             std::strerror(errno));
  }
  return UniqueFd(own);
}

std::chrono::microseconds LogindSleep::inhibit_delay_max() {
  BusError error;
  uint64_t usec = 0;
  const int r = sd_bus_get_property_trivial(bus_->bus, logind, manager_path, manager_interface,
                                            "InhibitDelayMaxUSec", &error.error, 't', &usec);
  if (r < 0) {
    throw std::runtime_error("cannot read logind's InhibitDelayMaxUSec: " +
                             describe_bus_failure(r, error.error));
  }
  return std::chrono::microseconds(usec);
}

int LogindSleep::fd() const {
  return sd_bus_get_fd(bus_->bus);
}

short LogindSleep::events() const {
  const int events = sd_bus_get_events(bus_->bus);
  return static_cast<short>(events < 0 ? POLLIN : events);
}

int LogindSleep::timeout_ms() const {
  uint64_t until = 0;  // absolute, CLOCK_MONOTONIC, microseconds
  if (sd_bus_get_timeout(bus_->bus, &until) <= 0 || until == UINT64_MAX) return -1;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t now_us = uint64_t(now.tv_sec) * 1'000'000 + uint64_t(now.tv_nsec) / 1000;
  return until <= now_us ? 0 : static_cast<int>((until - now_us + 999) / 1000);
}

bool LogindSleep::process() {
  for (;;) {
    const int r = sd_bus_process(bus_->bus, nullptr);
    if (r < 0) return false;
    if (r == 0) return true;
  }
}

}  // namespace vramswap::systemd
