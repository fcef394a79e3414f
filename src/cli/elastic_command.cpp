#include "cli/elastic_command.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cli/daemon_process.hpp"
#include "cli/status_report.hpp"
#include "common/exit_codes.hpp"
#include "common/printable.hpp"
#include "common/unique_fd.hpp"
#include "status/instance_status.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string verb_of(const status::ControlRequest& request) {
  return request.verb == status::ControlRequest::Verb::restore ? "restore" : "release";
}

std::string journal_hint(const std::string& instance) {
  return "journalctl -u " + systemd::service_unit_name(instance);
}

// No socket at the path: is the daemon not running, or running without one?
ControlOutcome no_socket(const ControlTarget& target) {
  const auto file = status::read_status_file(target.instance);
  if (file && check_daemon_process(file->pid, file->updated_unix) == DaemonProcess::running) {
    return {status_exit::trouble,
            "the daemon of " + target.instance + " (pid " + std::to_string(file->pid) +
                ") has no control socket " + target.socket_path + ": it could not make it (see " +
                journal_hint(target.instance) +
                ") or it is older than this vramswap (restart it: systemctl restart " +
                systemd::service_unit_name(target.instance) + ")"};
  }
  return {status_exit::not_running, target.instance + " is not running (no " + target.socket_path +
                                        "); start it (systemctl start " +
                                        systemd::service_unit_name(target.instance) +
                                        "), or see vramswap status"};
}

ControlOutcome connect_to(const ControlTarget& target, int fd) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (target.socket_path.size() >= sizeof addr.sun_path) {
    return {exit_code::usage, "the control socket's path " + target.socket_path +
                                  " is too long; use a shorter --runtime-dir"};
  }
  std::memcpy(addr.sun_path, target.socket_path.c_str(), target.socket_path.size() + 1);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return {};
  const int error = errno;
  if (error == ENOENT) return no_socket(target);
  if (error == ECONNREFUSED) {
    return {status_exit::not_running,
            target.instance + " is not running (" + target.socket_path +
                " is left over from a daemon that died); see vramswap status"};
  }
  if (error == EACCES || error == EPERM) {
    return {exit_code::no_permission,
            "cannot reach " + target.socket_path + ": " + std::strerror(error) +
                "; the control socket is root's only: run it as root (sudo)"};
  }
  return {exit_code::os_error,
          "cannot connect to " + target.socket_path + ": " + std::strerror(error)};
}

bool send_all(int fd, const std::string& text) {
  std::size_t sent = 0;
  while (sent < text.size()) {
    const ssize_t n = send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// The reply line without its "\n"; nothing on timeout (`timed_out` set) or
// when the daemon closed the connection first.
std::optional<std::string> read_line(int fd, Clock::time_point deadline, bool& timed_out) {
  std::string received;
  for (;;) {
    const auto end = received.find('\n');
    if (end != std::string::npos) return received.substr(0, end);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      return std::nullopt;
    }
    pollfd p = {fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno != EINTR) return std::nullopt;
    if (ready <= 0) continue;
    char buffer[512];
    const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    received.append(buffer, static_cast<std::size_t>(n));
    // A reply is one short line; anything longer is not our daemon.
    if (received.size() > 4 * status::control_line_max) return received;
  }
}

}  // namespace

ControlOutcome ask_daemon(const ControlTarget& target, const status::ControlRequest& request) {
  const std::string verb = verb_of(request);
  if (!target.root) {
    return {exit_code::no_permission, verb + " needs root (the control socket of " +
                                          target.instance +
                                          " is root's only); run it with sudo: sudo vramswap " +
                                          verb + " " + target.instance};
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {exit_code::os_error, std::string("socket(): ") + std::strerror(errno)};
  if (ControlOutcome failed = connect_to(target, fd.get()); !failed.line.empty()) return failed;
  const std::string lost = "the daemon of " + target.instance +
                           " closed the connection without an answer (is it stopping?); see " +
                           journal_hint(target.instance);
  if (!send_all(fd.get(), status::format_control_request(request))) {
    return {status_exit::trouble, lost};
  }
  bool timed_out = false;
  const std::optional<std::string> line =
      read_line(fd.get(), Clock::now() + target.timeout, timed_out);
  if (timed_out) {
    const auto minutes = std::chrono::duration_cast<std::chrono::minutes>(target.timeout).count();
    return {status_exit::trouble,
            "no answer from the daemon of " + target.instance + " within " +
                (minutes > 0 ? std::to_string(minutes) + " minutes"
                             : std::to_string(target.timeout.count()) + " ms") +
                "; the " + verb + " may still be running: see " + journal_hint(target.instance) +
                " and vramswap status"};
  }
  if (!line) return {status_exit::trouble, lost};
  const std::optional<status::ControlReply> reply = status::parse_control_reply(*line);
  if (!reply) {
    return {exit_code::software, "unexpected answer on " + target.socket_path + ": \"" +
                                     escape_unprintable(line->substr(0, 80)) + "\""};
  }
  // The daemon's line does not name the instance: the admin may ask several.
  return {reply->ok ? exit_code::ok : status_exit::trouble,
          target.instance + ": " + escape_unprintable(reply->text)};
}

int run_control(const std::string& instance, const status::ControlRequest& request) {
  ControlTarget target;
  target.instance = instance;
  target.socket_path = status::control_socket_path(instance);
  target.root = geteuid() == 0;
  const ControlOutcome outcome = ask_daemon(target, request);
  if (outcome.exit_status == exit_code::ok) {
    std::printf("%s\n", outcome.line.c_str());
  } else {
    std::fprintf(stderr, "vramswap: %s\n", outcome.line.c_str());
  }
  return outcome.exit_status;
}

}  // namespace vramswap::cli
