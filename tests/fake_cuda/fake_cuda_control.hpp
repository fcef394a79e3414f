#pragma once

// The fake CUDA driver's control block: a small file that the fake maps
// (MAP_SHARED) when VRAMSWAP_FAKE_CONTROL=/path names it, so that a test
// process can inject faults into, and read counters of, a daemon running on
// the fake. Map the file read/write (MAP_SHARED) and use the atomics.
//
// Protocol: at cuInit the fake creates (or truncates and reuses) the file,
// zeroes every field, fills in version, size and pid, and stores `magic` last
// with release ordering. A test waits until magic == control_magic (acquire)
// before trusting anything else; it may poke the fields from then on. A later
// cuInit of the same process while it holds no CUDA objects (the fake then
// rereads its environment) initializes the block again.
//
// Layout (little-endian, natural alignment; offsets for tests in other
// languages, e.g. Python's struct "<IIII14Q"):
//    0 u32 magic                  0x43465356 ("VSFC" in memory)
//    4 u32 version                control_version; bumped on any layout change
//    8 u32 size                   sizeof(Control) as written by the fake
//   12 u32 pid                    the process that initialized the block
//   16 u64 fail_next_copies   in  the next K copy calls fail (counts down)
//   24 u64 lose_device        in  non-zero: every device is lost from now on
//   32 u64 copies             out copy calls accepted (HtoD, DtoH, memset)
//   40 u64 bytes_host_to_device out bytes of accepted HtoD copies
//   48 u64 bytes_device_to_host out bytes of accepted DtoH copies
//   56 u64 bytes_zeroed       out bytes of accepted memsets
//   64 u64 syncs              out cuStreamSynchronize calls that ran a queue
//   72 u64 bytes_allocated    out bytes of live allocations (cuMemAlloc, cuMemCreate,
//                                 imported handles) on every device
//   80 u64 failed_copies      out copy calls failed by injection or lost device
//   88 u64 creates            out cuMemCreate calls with valid arguments since cuInit
//                                 (those refused for memory included)
//   96 u64 fail_create_at     in  the cuMemCreate call with this number (1-based,
//                                 as `creates` counts) fails with
//                                 CUDA_ERROR_OUT_OF_MEMORY; 0: none. To refuse
//                                 the next one: store creates + 1.
//  104 u64 other_program_bytes in VRAM "another program" holds on every device:
//                                 cuMemGetInfo reports that much less free, and
//                                 cuMemAlloc and cuMemCreate fail with
//                                 CUDA_ERROR_OUT_OF_MEMORY when a request would
//                                 not fit beside it. Store to take VRAM, lower
//                                 to give it back; memory already allocated is
//                                 kept (free then reads as 0).
//  112 u64 live_contexts      out primary contexts retained and not yet released, on
//                                 every device (a retain taking a device's primary
//                                 context from 0 references counts 1, its last
//                                 release takes it back)
//  120 u64 lose_memory        in  raise it (fetch_add(1)) to make every device lose
//                                 its memory, once per change, as a GPU does across a
//                                 suspend without NVreg_PreserveVideoMemoryAllocations:
//                                 every live allocation's written bytes become
//                                 lost_memory_pattern, and every primary context
//                                 retained then is lost: its calls fail with
//                                 CUDA_ERROR_LAUNCH_FAILED (fake_driver.cpp says why
//                                 that one), its clean-up calls let go and report
//                                 it, until its last release resets it; a retain
//                                 after that gets a fresh, working context.
// "Copy calls" are cuMemcpyHtoDAsync_v2, cuMemcpyDtoHAsync_v2 and
// cuMemsetD8Async. Counters are updated when a call is accepted (queued),
// not when the queued work runs at cuStreamSynchronize.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace vramswap::fake_cuda {

inline constexpr uint32_t control_magic = 0x43465356;
inline constexpr uint32_t control_version = 5;

// What lost memory reads as, repeated from each allocation's offset 0 over
// every byte that had been written (never-written pages stay zeros, so that
// losing a 16 GiB fake GPU commits no host memory). 16 bytes, no NUL.
inline constexpr char lost_memory_pattern[16] = {'f', 'a', 'k', 'e', ':', ' ', 'V', 'R',
                                                 'A', 'M', ' ', 'l', 'o', 's', 't', '\n'};

struct Control {
  std::atomic<uint32_t> magic;
  std::atomic<uint32_t> version;
  std::atomic<uint32_t> size;
  std::atomic<uint32_t> pid;
  std::atomic<uint64_t> fail_next_copies;
  std::atomic<uint64_t> lose_device;
  std::atomic<uint64_t> copies;
  std::atomic<uint64_t> bytes_host_to_device;
  std::atomic<uint64_t> bytes_device_to_host;
  std::atomic<uint64_t> bytes_zeroed;
  std::atomic<uint64_t> syncs;
  std::atomic<uint64_t> bytes_allocated;
  std::atomic<uint64_t> failed_copies;
  std::atomic<uint64_t> creates;
  std::atomic<uint64_t> fail_create_at;
  std::atomic<uint64_t> other_program_bytes;
  std::atomic<uint64_t> live_contexts;
  std::atomic<uint64_t> lose_memory;
};

// Shared between processes: the atomics must not hide a lock, and must have
// the plain integers' layout.
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(std::atomic<uint64_t>) == 8);
static_assert(sizeof(Control) == 128);

}  // namespace vramswap::fake_cuda
