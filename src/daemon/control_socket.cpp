#include "daemon/control_socket.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "common/log.hpp"
#include "common/printable.hpp"
#include "common/startup_error.hpp"
#include "status/control_protocol.hpp"

namespace vramswap::daemon {
namespace {

constexpr const char* no_tier =
    "this device has no spill area (spill = no in /etc/vramswap.conf, or it could not be "
    "created: see the journal)";
// A reply is one short line: it fits any socket buffer at once, so this only
// bounds a client that stopped reading and filled its buffer with nothing.
constexpr auto reply_timeout = std::chrono::seconds(1);
// After accept() fails for want of descriptors, before the next try.
constexpr int accept_backoff_ms = 100;

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw StartupError(exit_code::os_error, "control socket " + path + ": " + why);
}

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Removes a dead daemon's socket at `path`; refuses anything else there.
void clear_path(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    fail(path, std::string("cannot inspect it: ") + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) fail(path, "exists and is not a socket; refusing to delete it");
  // Ours, stale: the instance lock keeps every other daemon of this name away.
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail(path, std::string("cannot remove the stale socket: ") + std::strerror(errno));
  }
}

// Waits for `events` on `fd` until `deadline`; false on timeout or when the
// wake descriptor fired (the daemon stops).
bool wait_for(int fd, short events, int wake, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd fds[2] = {{fd, events, 0}, {wake, POLLIN, 0}};
    const int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return false;
    if (n <= 0) continue;
    if (fds[1].revents) return false;
    if (fds[0].revents) return true;
  }
}

void send_reply(int client, int wake, const std::string& reply) {
  const auto deadline = std::chrono::steady_clock::now() + reply_timeout;
  std::size_t sent = 0;
  while (sent < reply.size()) {
    const ssize_t n =
        send(client, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wait_for(client, POLLOUT, wake, deadline)) continue;
    return;  // the client is gone, or stopped reading: nobody to tell
  }
}

std::string duration_text(std::chrono::milliseconds duration) {
  if (duration.count() % 1000 != 0) return std::to_string(duration.count()) + " ms";
  return std::to_string(duration.count() / 1000) + " s";
}

}  // namespace

ControlSocket::ControlSocket(Options options) : options_(std::move(options)) {
  const std::string& path = options_.path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) fail(path, "path too long for a Unix socket");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // The runtime directory, as the lock and the status file make it.
  const std::string dir = parent_of(path);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    fail(path, "cannot create " + dir + ": " + std::strerror(errno));
  }
  clear_path(path);

  listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) fail(path, std::string("socket(): ") + std::strerror(errno));
  // Born private: the file takes its mode from the umask at bind(). The
  // umask is the process's, but the daemon's other threads create no files
  // (only the main thread, this one, does), and SO_PEERCRED is checked on
  // every client anyway.
  const mode_t old_umask = umask(0177);
  const int bound = bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) fail(path, std::string("bind(): ") + std::strerror(bind_errno));
  if (listen(listener_.get(), 16) != 0) {
    const int error = errno;
    unlink(path.c_str());
    fail(path, std::string("listen(): ") + std::strerror(error));
  }
  wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) {
    const int error = errno;
    unlink(path.c_str());
    fail(path, std::string("eventfd(): ") + std::strerror(error));
  }
  thread_ = std::thread([this] { serve(); });
}

ControlSocket::~ControlSocket() {
  stop();
}

void ControlSocket::stop() {
  if (thread_.joinable()) {
    stopping_.store(true);
    const uint64_t one = 1;
    ssize_t ignored = write(wake_.get(), &one, sizeof one);
    (void)ignored;
    if (in_request_.load()) {
      log_notice("waiting for the admin's request in progress to stop (between two chunks)");
    }
    thread_.join();
  }
  // Unlink before close: a client never finds a path whose socket is closed
  // but still there to connect to and be refused by.
  if (listener_) {
    unlink(options_.path.c_str());
    listener_.reset();
  }
}

void ControlSocket::serve() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents || stopping_.load()) return;
    if (!fds[0].revents) continue;
    UniqueFd client(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!client) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The client stays in the backlog: try again in a moment, not in a
        // busy loop.
        pollfd wake = {wake_.get(), POLLIN, 0};
        poll(&wake, 1, accept_backoff_ms);
      }
      continue;
    }
    serve_client(client.get());
  }
}

void ControlSocket::serve_client(int client) {
  ucred peer{};
  socklen_t length = sizeof peer;
  if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 || !options_.may_ask(peer)) {
    log_warning("control socket: refused a request of uid %u (pid %d): only root may ask",
                static_cast<unsigned>(peer.uid), static_cast<int>(peer.pid));
    send_reply(client, wake_.get(),
               status::format_control_reply(
                   {false, "only root may release or restore VRAM (you are uid " +
                               std::to_string(peer.uid) + "); run it with sudo"}));
    return;
  }

  // One line, within the timeout.
  const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  std::string received;
  std::size_t end = std::string::npos;
  while (end == std::string::npos) {
    if (received.size() >= status::control_line_max) {
      send_reply(client, wake_.get(),
                 status::format_control_reply(
                     {false, "request longer than " + std::to_string(status::control_line_max) +
                                 " bytes; send one line: release all, release BYTES or restore"}));
      return;
    }
    if (!wait_for(client, POLLIN, wake_.get(), deadline)) {
      if (stopping_.load()) return;
      send_reply(client, wake_.get(),
                 status::format_control_reply(
                     {false, "no request within " + duration_text(options_.request_timeout) +
                                 "; send one line: release all, release BYTES or restore"}));
      return;
    }
    char buffer[status::control_line_max];
    const ssize_t n = recv(client, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return;  // gone without a request
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    received.append(buffer, static_cast<std::size_t>(n));
    end = received.find('\n');
  }
  std::string line = received.substr(0, end);
  // Typed by hand through a tool that ends lines with CR LF.
  if (!line.empty() && line.back() == '\r') line.pop_back();
  send_reply(client, wake_.get(), answer(line, peer));
}

std::string ControlSocket::answer(const std::string& line, const ucred& peer) {
  const status::ParsedRequest parsed = status::parse_control_request(line);
  if (!parsed.request) {
    log_info("control socket: pid %d sent a request that is none: %s", static_cast<int>(peer.pid),
             parsed.error.c_str());
    return status::format_control_reply({false, parsed.error});
  }
  if (!options_.elastic) return status::format_control_reply({false, no_tier});
  if (stopping_.load()) {
    return status::format_control_reply({false, "the daemon is stopping; nothing was moved"});
  }
  const status::ControlRequest& request = *parsed.request;
  std::string asked = status::format_control_request(request);
  asked.pop_back();
  log_info("control socket: %s (asked by pid %d)", asked.c_str(), static_cast<int>(peer.pid));
  ElasticControl::Answer result;
  in_request_.store(true);
  try {
    result = request.verb == status::ControlRequest::Verb::restore
                 ? options_.elastic->restore()
                 : options_.elastic->release(request.bytes == status::ControlRequest::all_bytes
                                                 ? ElasticControl::all_bytes
                                                 : request.bytes);
  } catch (const std::exception& e) {
    result = {false, std::string("internal error: ") + e.what()};
  }
  in_request_.store(false);
  log_info("control socket: %s: %s%s", asked.c_str(),
           result.ok ? "" : "failed: ", escape_unprintable(result.line).c_str());
  return status::format_control_reply({result.ok, result.line});
}

std::unique_ptr<ControlSocket> open_control_socket(const std::string& instance,
                                                   ElasticControl* elastic) {
  ControlSocket::Options options;
  options.path = status::control_socket_path(instance);
  options.elastic = elastic;
  try {
    return std::make_unique<ControlSocket>(std::move(options));
  } catch (const std::exception& e) {
    log_warning(
        "%s; the device is served all the same, but vramswap release and restore cannot "
        "reach it",
        e.what());
    return nullptr;
  }
}

}  // namespace vramswap::daemon
