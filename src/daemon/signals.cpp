#include "daemon/signals.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/startup_error.hpp"

namespace vramswap::daemon {
namespace {

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);
  return set;
}

}  // namespace

void block_signals() {
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

UniqueFd open_signalfd() {
  const sigset_t set = handled_signals();
  UniqueFd fd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) {
    throw StartupError(exit_code::os_error, std::string("signalfd: ") + std::strerror(errno));
  }
  return fd;
}

SignalEvent read_signals(int signal_fd) {
  SignalEvent event = SignalEvent::none;
  signalfd_siginfo info{};
  while (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGUSR2) {
      event = SignalEvent::restart;
    } else if (info.ssi_signo == SIGHUP) {
      if (event == SignalEvent::none) event = SignalEvent::reload;
    } else if (event != SignalEvent::restart) {
      event = SignalEvent::stop;
    }
  }
  return event;
}

}  // namespace vramswap::daemon
