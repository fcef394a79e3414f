#include "systemd/notify.hpp"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.hpp"

namespace vramswap::systemd::notify {
namespace {

// systemd reads each STATUS as one line: a newline would start a new field.
std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

bool send(const std::string& message) {
  if (!under_systemd()) return false;
  int result = sd_notify(0, message.c_str());
  if (result > 0) return true;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    log_warning("cannot notify systemd (%s); the unit may time out or show a stale status",
                result < 0 ? std::strerror(-result) : "no socket");
  }
  return false;
}

}  // namespace

bool under_systemd() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket && *socket;
}

bool ready(std::string_view status_line) {
  return send("READY=1\nSTATUS=" + one_line(status_line));
}

bool status(std::string_view status_line) {
  return send("STATUS=" + one_line(status_line));
}

bool stopping() {
  return send("STOPPING=1");
}

bool extend_timeout(std::chrono::microseconds more) {
  return send("EXTEND_TIMEOUT_USEC=" + std::to_string(more.count()));
}

}  // namespace vramswap::systemd::notify
