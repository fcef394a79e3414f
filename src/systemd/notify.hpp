#pragma once

// Telling systemd how the service is doing (sd_notify(3)), for Type=notify
// units: READY once swap is served, STATUS lines for `systemctl status`,
// STOPPING at shutdown. Outside systemd (no $NOTIFY_SOCKET) every call does
// nothing and returns false.
//
// Each call formats a message and sends a datagram: call them on state
// changes and from a periodic status timer, never per request.

#include <chrono>
#include <string_view>

namespace vramswap::systemd::notify {

// Whether systemd gave us a notification socket ($NOTIFY_SOCKET).
bool under_systemd();

// READY=1 with a STATUS line: startup is done, swap can be used.
bool ready(std::string_view status_line);

// STATUS=...: the one line `systemctl status` shows.
bool status(std::string_view status_line);

// STOPPING=1: shutdown has begun.
bool stopping();

// EXTEND_TIMEOUT_USEC=...: asks systemd for more time before it gives up on
// the current start or stop (swapoff of a large, full area can take minutes).
bool extend_timeout(std::chrono::microseconds more);

}  // namespace vramswap::systemd::notify
