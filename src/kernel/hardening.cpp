#include "kernel/hardening.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace vramswap::kernel {
namespace {

std::atomic<bool> g_memory_locked{false};
std::atomic<bool> g_oom_protected{false};
std::atomic<uint32_t> g_io_flusher_threads{0};
std::atomic<uint32_t> g_io_flusher_failed_threads{0};
std::atomic<int> g_io_flusher_errno{0};

const char* io_flusher_hint(int error) {
  switch (error) {
    case EPERM:
      return "it needs CAP_SYS_RESOURCE, which this process lacks or this host withholds";
    case EINVAL:
      return "the kernel is older than 5.6";
    default:
      return "unexpected error";
  }
}

}  // namespace

bool limit_thread_stacks(size_t bytes) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  int error = pthread_attr_setstacksize(&attr, bytes);
  if (error == 0) error = pthread_setattr_default_np(&attr);
  pthread_attr_destroy(&attr);
  if (error != 0) {
    log_warning(
        "cannot set the threads' stack size (%s): every thread keeps glibc's default stack, "
        "locked in RAM in full",
        std::strerror(error));
    return false;
  }
  return true;
}

bool lock_memory() {
  if (sanitizer_disables_memory_lock) {
    log_warning(
        "cannot lock the daemon in memory (an AddressSanitizer or ThreadSanitizer build, where "
        "mlockall does nothing): the daemon can be paged out while the kernel waits on it to "
        "swap, and the machine can deadlock; use a build without sanitizers for real swap");
    return false;
  }
  if (::mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
    g_memory_locked.store(true, std::memory_order_relaxed);
    return true;
  }
  const int error = errno;
  log_warning(
      "cannot lock the daemon in memory (mlockall: %s): the daemon can be paged out while the "
      "kernel waits on it to swap, and the machine can deadlock; run as root or raise "
      "LimitMEMLOCK",
      std::strerror(error));
  return false;
}

bool become_io_flusher() {
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0) {
    g_io_flusher_threads.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const int error = errno;
  g_io_flusher_failed_threads.fetch_add(1, std::memory_order_relaxed);
  int no_error_yet = 0;
  if (g_io_flusher_errno.compare_exchange_strong(no_error_yet, error, std::memory_order_relaxed)) {
    log_warning(
        "cannot mark the I/O threads as I/O flushers (PR_SET_IO_FLUSHER: %s; %s): memory "
        "allocations on the daemon's I/O path may recurse into reclaim and wait on the daemon's "
        "own device",
        std::strerror(error), io_flusher_hint(error));
  }
  return false;
}

bool protect_from_oom() {
  UniqueFd fd(::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
  static constexpr char never_kill_score[] = "-1000";
  bool written = fd && ::write(fd.get(), never_kill_score, sizeof never_kill_score - 1) ==
                           static_cast<ssize_t>(sizeof never_kill_score - 1);
  if (written) {
    g_oom_protected.store(true, std::memory_order_relaxed);
    return true;
  }
  log_warning(
      "cannot protect the daemon from the OOM killer (oom_score_adj: %s): if it is killed, every "
      "page swapped to it is lost with it; run as root or set OOMScoreAdjust=-1000 in the unit",
      std::strerror(errno));
  return false;
}

HardeningState hardening_state() {
  HardeningState state;
  state.memory_locked = g_memory_locked.load(std::memory_order_relaxed);
  state.oom_protected = g_oom_protected.load(std::memory_order_relaxed);
  state.io_flusher_threads = g_io_flusher_threads.load(std::memory_order_relaxed);
  state.io_flusher_failed_threads = g_io_flusher_failed_threads.load(std::memory_order_relaxed);
  state.io_flusher_errno = g_io_flusher_errno.load(std::memory_order_relaxed);
  return state;
}

}  // namespace vramswap::kernel
