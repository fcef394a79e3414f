// vramswap-socket-floor: the round trip of one 4 KiB NBD read over a Unix
// socket with no storage behind it, so that randread-4k-qd1 can be read
// against what the socket and the two threads' wake-ups alone cost on this
// machine; and the throughput of Unix stream sockets carrying 1 MiB writes,
// so that seqwrite-1m can be read against what the socket alone carries.
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

// `pairs` writer/reader thread pairs, each on its own socket pair, for two
// seconds: each writer sends 1 MiB at a time (as fio's nbd engine sends a
// 1 MiB write's payload), each reader receives into a buffer of
// `reader_bytes` and does nothing else. A writer's send buffer is the system
// default (what fio's libnbd client gets) unless `writer_sndbuf` is given.
// What one connection's stream can carry with one thread at each end.
void stream(unsigned pairs, size_t reader_bytes, int writer_sndbuf) {
  constexpr size_t kChunk = 1 << 20;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::vector<std::thread> threads;
  std::vector<int> sockets;
  for (unsigned i = 0; i < pairs; ++i) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      std::perror("socketpair");
      std::exit(1);
    }
    if (writer_sndbuf > 0) {
      ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &writer_sndbuf, sizeof writer_sndbuf);
    }
    sockets.push_back(fds[0]);
    sockets.push_back(fds[1]);
    threads.emplace_back([fd = fds[0], &stop] {
      std::vector<char> chunk(kChunk, 'w');
      while (!stop.load(std::memory_order_relaxed) && send_all(fd, chunk.data(), chunk.size())) {
      }
      ::shutdown(fd, SHUT_WR);
    });
    threads.emplace_back([fd = fds[1], reader_bytes, &received] {
      std::vector<char> buffer(reader_bytes);
      uint64_t total = 0;
      for (;;) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n <= 0) break;
        total += static_cast<uint64_t>(n);
      }
      received += total;
    });
  }
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop.store(true);
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (int fd : sockets) ::close(fd);
  std::printf("socket-stream 1MiB-writes %u-pairs reader-buffer %zu KiB writer-sndbuf %s %.2f GB/s\n",
              pairs, reader_bytes >> 10, writer_sndbuf > 0 ? "4MiB" : "default",
              static_cast<double>(received.load()) / seconds / 1e9);
}

}  // namespace

int main() {
  measure("sleeping-server", false);
  measure("spinning-server", true);
  for (unsigned pairs : {1u, 4u}) {
    for (int sndbuf : {0, 4 << 20}) {
      for (size_t reader : {size_t{256} << 10, size_t{2} << 20}) stream(pairs, reader, sndbuf);
    }
  }
  return 0;
}
