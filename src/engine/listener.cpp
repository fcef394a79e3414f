#include "engine/listener.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "engine/socket_buffers.hpp"

namespace vramswap::engine {

Listener::Listener(UniqueFd socket, std::string path, ConnectionPool& pool,
                   std::function<void(Connection*)> assign)
    : socket_(std::move(socket)),
      path_(std::move(path)),
      pool_(pool),
      assign_(std::move(assign)),
      stop_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!stop_) {
    throw StartupError(exit_code::os_error,
                       std::string("cannot create an eventfd: ") + std::strerror(errno));
  }
}

Listener::~Listener() {
  stop_and_join();
  if (socket_) unlink(path_.c_str());
}

void Listener::start() {
  thread_ = std::thread([this] { run(); });
}

void Listener::stop_and_join() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  ssize_t ignored = ::write(stop_.get(), &one, sizeof one);
  (void)ignored;
  thread_.join();
}

void Listener::run() noexcept {
  pollfd fds[3] = {
      {socket_.get(), POLLIN, 0}, {pool_.released_fd(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  // While every client slot is taken, later clients wait in the backlog. The
  // socket is still watched until one is seen waiting (to say so), then not
  // until a slot is released: the listener never spins on a waiting client.
  bool waiting_seen = false;
  for (;;) {
    const bool slot_free = pool_.client_slot_free();
    fds[0].events = slot_free || !waiting_seen ? POLLIN : 0;
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      log_error("listener: poll failed: %s", std::strerror(errno));
      return;
    }
    if (fds[2].revents) return;
    if (fds[1].revents) {
      uint64_t counter = 0;
      ssize_t ignored = ::read(pool_.released_fd(), &counter, sizeof counter);
      (void)ignored;
      waiting_seen = false;
    }
    if (!fds[0].revents) continue;
    if (pool_.client_slot_free()) {
      accept_all();
    } else if (!waiting_seen) {
      waiting_seen = true;
      note_client_waiting();
    }
  }
}

void Listener::note_client_waiting() noexcept {
  static LogRateLimit waits(std::chrono::minutes(1));
  uint64_t suppressed = 0;
  if (!waits.allow(suppressed)) return;
  log_warning(
      "listener: all %zu client connection slots are in use; new clients wait in the listen "
      "backlog until a client disconnects (the kernel's connections have their own slots)%s",
      pool_.client_slots(),
      suppressed ? (" (" + std::to_string(suppressed) + " more times since the last line)").c_str()
                 : "");
}

void Listener::accept_all() noexcept {
  static LogRateLimit accept_errors;
  for (;;) {
    Connection* slot = pool_.acquire(Origin::client);
    if (!slot) return;
    const int fd = accept4(socket_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      pool_.release(slot);
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return;
      uint64_t suppressed = 0;
      if (accept_errors.allow(suppressed)) {
        log_warning("listener: accept failed: %s (clients wait in the backlog)",
                    std::strerror(err));
      }
      // Out of file descriptors or memory: back off briefly instead of spinning.
      usleep(100'000);
      return;
    }
    enlarge_socket_buffers(fd);
    slot->fd = fd;
    assign_(slot);
  }
}

}  // namespace vramswap::engine
