// vramswap-socket-floor: the round trip of one 4 KiB NBD read over a Unix
// socket with no storage behind it, so that randread-4k-qd1 can be read
// against what the socket and the two threads' wake-ups alone cost on this
// machine.
//
// A client thread sends a 28-byte request and waits in poll() for the
// 16-byte reply header and 4 KiB of data, as fio's nbd engine does; a server
// thread answers each request at once. Two server styles: one that sleeps in
// recv() (a wake-up on each side per request) and one that spins on a
// non-blocking recv() (as the daemon does while busy_poll is on: only the
// client wakes up).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kRequestBytes = 28;
constexpr size_t kReplyBytes = 16 + 4096;
constexpr int kRounds = 50000;
constexpr int kWarmup = 2000;

bool recv_all(int fd, char* data, size_t size, bool spin, const std::atomic<bool>* stop) {
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd, data + got, size - got, spin ? MSG_DONTWAIT : 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      return false;
    } else if (stop && stop->load(std::memory_order_relaxed)) {
      return false;
    }
  }
  return true;
}

bool send_all(int fd, const char* data, size_t size) {
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// The client's side: wait in poll() for the whole reply, like an event loop.
bool client_receive(int fd, char* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, -1) != 1) return false;
    const ssize_t n = ::recv(fd, data + got, size - got, MSG_DONTWAIT);
    if (n <= 0 && errno != EAGAIN) return false;
    if (n > 0) got += static_cast<size_t>(n);
  }
  return true;
}

void measure(const char* label, bool spinning_server) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    std::perror("socketpair");
    std::exit(1);
  }
  std::atomic<bool> stop{false};
  std::thread server([&] {
    char request[kRequestBytes];
    std::vector<char> reply(kReplyBytes, 'r');
    while (recv_all(fds[1], request, sizeof request, spinning_server, &stop)) {
      if (!send_all(fds[1], reply.data(), reply.size())) break;
    }
  });
  char request[kRequestBytes] = {};
  std::vector<char> reply(kReplyBytes);
  std::vector<double> micros;
  micros.reserve(kRounds);
  for (int i = 0; i < kWarmup + kRounds; ++i) {
    const auto start = Clock::now();
    if (!send_all(fds[0], request, sizeof request) ||
        !client_receive(fds[0], reply.data(), reply.size())) {
      std::fprintf(stderr, "%s: the exchange failed\n", label);
      std::exit(1);
    }
    if (i >= kWarmup) {
      micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
  }
  stop.store(true);
  ::shutdown(fds[0], SHUT_RDWR);
  server.join();
  ::close(fds[0]);
  ::close(fds[1]);
  std::sort(micros.begin(), micros.end());
  std::printf("socket-floor 4KiB-read %s p50 %.1f us p99 %.1f us\n", label,
              micros[micros.size() / 2], micros[micros.size() * 99 / 100]);
}

}  // namespace

int main() {
  measure("sleeping-server", false);
  measure("spinning-server", true);
  return 0;
}
