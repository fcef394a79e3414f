#pragma once

// Process hardening for a daemon the kernel waits on while it reclaims memory.
// Each step that fails logs one warning naming the risk and is recorded for
// the daemon's status; none is fatal, since the daemon still works, only less
// safely under memory pressure.

#include <cstddef>
#include <cstdint>

namespace vramswap::kernel {

struct HardeningState {
  bool memory_locked = false;  // lock_memory() succeeded
  bool oom_protected = false;  // protect_from_oom() succeeded
  // become_io_flusher() calls, by outcome (one per thread that called it).
  uint32_t io_flusher_threads = 0;
  uint32_t io_flusher_failed_threads = 0;
  int io_flusher_errno = 0;  // of the first failure
};

// AddressSanitizer and ThreadSanitizer turn mlockall into a no-op that
// reports success (locking their terabytes of shadow mappings is impossible):
// in such builds lock_memory() says so instead of pretending.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitizer_disables_memory_lock = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitizer_disables_memory_lock = true;
#else
inline constexpr bool sanitizer_disables_memory_lock = false;
#endif
#else
inline constexpr bool sanitizer_disables_memory_lock = false;
#endif

// The stack size of every thread created from now on in this process (ours
// and the CUDA driver's, unless it asks for its own). A locked process keeps
// each thread's whole stack resident, and glibc's default stack is
// RLIMIT_STACK (usually 8 MiB): 16 workers would pin 128 MiB for stacks that
// use a few KiB. Call it first in main, before any thread exists. Returns
// false (and logs) only if glibc refuses the size.
inline constexpr size_t thread_stack_bytes = size_t{1} << 20;
bool limit_thread_stacks(size_t bytes = thread_stack_bytes);

// mlockall(MCL_CURRENT | MCL_FUTURE): every page of the daemon, present and
// future, stays in RAM, so the kernel never has to page the daemon in while
// it waits on the daemon to swap. Call it once, after the big allocations
// are mapped, before serving. Needs CAP_IPC_LOCK or a large enough
// RLIMIT_MEMLOCK (systemd: LimitMEMLOCK=infinity).
bool lock_memory();

// prctl(PR_SET_IO_FLUSHER) for the calling thread: its memory allocations no
// longer start I/O to reclaim memory (no recursion into our own device), and
// it is not throttled as a dirtier of pages. The flag is per thread: every
// thread on the I/O path (each worker) calls this once when it starts. The
// first failure in the process logs a warning; later ones are only counted,
// so 16 workers produce one line, not 16. Needs CAP_SYS_RESOURCE and
// Linux 5.6; some hosts refuse it even to root (seen on the GPU machine).
bool become_io_flusher();

// oom_score_adj = -1000: the OOM killer never picks the daemon, whose death
// would take every swapped page with it. Needs CAP_SYS_RESOURCE to lower it
// (systemd: OOMScoreAdjust=-1000 does the same before we start).
bool protect_from_oom();

// What the calls above achieved so far in this process.
HardeningState hardening_state();

}  // namespace vramswap::kernel
