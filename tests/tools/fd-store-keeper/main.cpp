// fd-store-keeper: runs a daemon as systemd runs a Type=notify service with
// FileDescriptorStoreMax= and Restart=on-failure, where there is no systemd
// (the initramfs VM): it serves $NOTIFY_SOCKET, keeps what the daemon stores
// there (FDSTORE=1) and, when the daemon is killed by a signal, starts it
// again at once with the stored descriptors ($LISTEN_FDS, $LISTEN_FDNAMES).
//
// Usage: fd-store-keeper NOTIFY_PATH PID_FILE COMMAND [ARG...]
//   PID_FILE holds the running daemon's pid, rewritten at each start.
// Says on stderr when each daemon is ready and how it ended. Exits with the
// daemon's status once it exits by itself (0 after a clean stop or
// handover), 1 on its own errors.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "fd_store_host.hpp"

namespace {

using vramswap::UniqueFd;
using vramswap::test::FdStoreHost;
using vramswap::test::PassedFds;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fd-store-keeper: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

UniqueFd bind_notify_socket(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) die("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) die("the notify path is too long");
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
  return fd;
}

pid_t start(char** command, const std::string& notify_path, const PassedFds& passed) {
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
    passed.install_in_child();
    execvp(command[0], command);
    std::fprintf(stderr, "fd-store-keeper: cannot run %s: %s\n", command[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

void write_pid(const std::string& path, pid_t pid) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) die("cannot write the pid file");
  std::fprintf(f, "%d\n", static_cast<int>(pid));
  std::fclose(f);
  if (rename(tmp.c_str(), path.c_str()) != 0) die("rename of the pid file");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: fd-store-keeper NOTIFY_PATH PID_FILE COMMAND [ARG...]\n");
    return 1;
  }
  const std::string notify_path = argv[1], pid_file = argv[2];
  char** command = argv + 3;
  const UniqueFd notify = bind_notify_socket(notify_path);
  FdStoreHost host(/*keep=*/true);
  pid_t daemon = start(command, notify_path, host.passed());
  write_pid(pid_file, daemon);
  for (;;) {
    pollfd p{notify.get(), POLLIN, 0};
    poll(&p, 1, 100);
    FdStoreHost::Message message;
    while (host.receive(notify.get(), message)) {
      if (message.ready) {
        std::fprintf(stderr, "fd-store-keeper: pid %d ready, %zu descriptors stored\n",
                     static_cast<int>(daemon), host.stored().size());
      }
      message = {};
    }
    int status = 0;
    if (waitpid(daemon, &status, WNOHANG) != daemon) continue;
    if (WIFEXITED(status)) {
      std::fprintf(stderr, "fd-store-keeper: pid %d exited with status %d\n",
                   static_cast<int>(daemon), WEXITSTATUS(status));
      return WEXITSTATUS(status);
    }
    // Killed: what Restart=on-failure does, without RestartSec=.
    std::fprintf(stderr,
                 "fd-store-keeper: pid %d killed by signal %d; starting it again with %zu "
                 "stored descriptors\n",
                 static_cast<int>(daemon), WTERMSIG(status), host.stored().size());
    daemon = start(command, notify_path, host.passed());
    write_pid(pid_file, daemon);
  }
}
