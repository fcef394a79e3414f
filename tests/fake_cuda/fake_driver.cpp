// A fake libcuda.so.1 for the test suite: the CUDA driver API subset of
// src/cuda/driver_api.hpp, with host memory behind it and fault injection,
// so that the real CUDA code path of the daemon runs on machines without a
// GPU. Test-only: never installed.
//
// Behaves like the real driver where the daemon could get it wrong:
//   - copies and memsets are asynchronous: they are queued per stream and
//     performed, in order, by cuStreamSynchronize (a daemon that reads a
//     staging buffer before synchronizing reads stale data, one that reuses
//     a source buffer too early writes the wrong data);
//   - arguments are validated: every byte of a device range must be mapped
//     and accessible (cuMemAlloc allocations and reserved ranges are
//     separated by unmapped gaps, so a copy that runs over the end of the
//     export is caught; inside a reserved range, back-to-back mappings of
//     several allocations form one range, as on the GPU), calls before cuInit fail with
//     CUDA_ERROR_NOT_INITIALIZED, and memory, stream and copy calls on a
//     thread without a current context fail with CUDA_ERROR_INVALID_CONTEXT
//     (a worker that forgot Context::bind_current_thread());
//   - device pointers are addresses the process cannot dereference
//     (non-canonical on x86-64): host code touching "VRAM" crashes;
//   - the virtual-memory calls (cuMemCreate, cuMemAddressReserve, cuMemMap,
//     cuMemSetAccess, cuMemUnmap, cuMemRelease, cuMemAddressFree) keep the
//     driver's rules: whole 2 MiB pages, mapping offset 0, no overlap, no
//     access before cuMemSetAccess, memory alive while a handle or mapping
//     holds it; cuMemExportToShareableHandle gives a duplicate of the
//     allocation's memfd, and cuMemImportFromShareableHandle in any process
//     reaches the same bytes.
//
// Configuration: VRAMSWAP_FAKE_* environment variables (fake_config.hpp),
// read at the first cuInit and again at any later cuInit made while the
// process holds no fake CUDA objects (contexts, allocations, streams, pinned
// memory), which lets one test process try several configurations.
//
// Fault injection:
//   - VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE=SIZE: cuMemAlloc and cuMemCreate fail with
//     CUDA_ERROR_OUT_OF_MEMORY once the device's allocations would exceed
//     SIZE, while cuMemGetInfo still reports the free memory of MEMORY -
//     RESERVED (another program took VRAM between our check and our ask);
//   - VRAMSWAP_FAKE_FAIL_COPY=N and VRAMSWAP_FAKE_FAIL_COPY_COUNT=K: copy
//     calls N .. N+K-1 (1-based, counted over the process) fail with
//     injected_copy_error; later ones work;
//   - VRAMSWAP_FAKE_LOSE_DEVICE_AFTER=N: copy calls after the Nth find every
//     device lost: from then on every call fails with lost_device_error,
//     and queued work is dropped;
//   - the control block (fake_cuda_control.hpp) does the same at run time,
//     refuses the Nth cuMemCreate with CUDA_ERROR_OUT_OF_MEMORY, and lets a
//     test play "another program" taking and giving back VRAM
//     (other_program_bytes: less free, and allocations that no longer fit
//     are refused);
//   - the control block's lose_memory: every device loses its memory at
//     once, as across a suspend without the driver preserving it (below);
//   - VRAMSWAP_FAKE_COPY_LATENCY_US=N: a slow GPU: a stream's queued work is
//     done N microseconds after the first of it was queued: cuStreamQuery
//     reports CUDA_ERROR_NOT_READY until then, cuStreamSynchronize waits
//     until then before doing it (a worker's round then lasts long enough
//     for others to interleave with it, as on a busy GPU);
//   - VRAMSWAP_FAKE_NO_KERNEL=1: cuModuleLoadData refuses every image, as a
//     driver too old for the PTX would (the daemon must fall back to DMA);
//   - VRAMSWAP_FAKE_NO_SHAREABLE=1: cuMemCreate refuses to make memory
//     exportable as a POSIX file descriptor (CUDA_ERROR_NOT_SUPPORTED), as
//     platforms without that handle type do.
//
// The copy kernel (src/store/copy_kernel.cu) cannot run here; cuLaunchKernel
// of it queues an operation that, when the stream's work runs, reads the
// kernel's table of BlockMoves from host memory then (as the GPU would) and
// performs each move, checking that every host range lies in mapped pinned
// memory and every device range is mapped and accessible, as the GPU's MMU would:
// a stray address is an illegal-address fault that loses the context.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cuda/driver_api.hpp"
#include "fake_backing.hpp"
#include "fake_config.hpp"
#include "fake_cuda_control.hpp"
#include "store/block_move.hpp"

using namespace vramswap::cuda;  // NOLINT: the API's own names, as in cuda.h

// Every entry point, declared from the shared list: a definition below whose
// signature differs from the loader's is a compile error (conflicting C
// declarations), and one that is missing fails the link (-Wl,--no-undefined
// with the reference table at the end of this file).
extern "C" {
#define FAKE_CUDA_DECLARE(member, symbol, since, parameters) \
  __attribute__((visibility("default"))) CUresult symbol parameters;
VRAMSWAP_CUDA_FUNCTIONS(FAKE_CUDA_DECLARE)
#ifndef VRAMSWAP_FAKE_CUDA_WITHOUT_UUID_V2
VRAMSWAP_CUDA_PREFERRED_FUNCTIONS(FAKE_CUDA_DECLARE)
#endif
#undef FAKE_CUDA_DECLARE
}

namespace vramswap::fake_cuda {

// What a lost GPU answers: once a GPU has fallen off the bus (Xid 79) or the
// driver has otherwise lost it, calls into it come back CUDA_ERROR_UNKNOWN
// (the code reports of such failures show), and that is what the daemon has
// to recognize as sticky. A loss here takes every fake device.
constexpr CUresult lost_device_error = CUDA_ERROR_UNKNOWN;
// An injected copy failure: a per-call error (the driver could not get the
// resources for this one copy), not sticky, so the next copy may work.
constexpr CUresult injected_copy_error = CUDA_ERROR_OUT_OF_MEMORY;
// A context whose GPU lost power (control block: lose_memory). Without
// NVreg_PreserveVideoMemoryAllocations the driver saves only its own
// essential state across a suspend ("loss of video memory contents ...
// can lead to failures such as rendering corruption and application
// crashes", NVIDIA's README, chapter "Configuring Power Management
// Support"); what CUDA programs report afterwards, in public bug reports,
// is "unspecified launch failure" (CUDA_ERROR_LAUNCH_FAILED, 719) from work
// in their existing context, with Xid 31 (MMU fault) in the kernel log: the
// context's page tables point at memory that no longer holds what they
// mapped. 719 is a sticky error: every later call in that context returns
// it, and only a context made anew works (a new process, or the primary
// context released by all and retained again). New contexts failing with
// CUDA_ERROR_UNKNOWN until nvidia_uvm is reloaded, also reported, is a
// driver bug of its own that the fake does not play.
constexpr CUresult context_lost_error = CUDA_ERROR_LAUNCH_FAILED;

constexpr int driver_version = 13000;
constexpr uint64_t gap_bytes = uint64_t{2} << 20;

// Physical memory: what cuMemAlloc, cuMemCreate and cuMemImportFromShareableHandle
// make. Reached through mappings (device addresses) and handles.
struct Allocation {
  Allocation(int device_index, uint64_t bytes, std::unique_ptr<Backing> memory, bool can_export)
      : device(device_index), size(bytes), backing(std::move(memory)), exportable(can_export) {}

  int device;
  uint64_t size;
  std::unique_ptr<Backing> backing;  // replaced once, by the first export
  // Held shared while queued work touches `backing`, exclusively while an
  // export replaces it. A leaf: nothing else is locked under it, except the
  // pool registry when the replaced backing goes.
  mutable std::shared_mutex backing_lock;
  bool exportable;     // created with CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR (or imported)
  int references = 1;  // its handle and its mappings; guarded by g_lock. At 0 the
                       // device's memory is free again (queued work may still
                       // hold the backing until it ran).
};

// Device addresses [base, base + size) reaching `allocation` from offset 0.
struct Mapping {
  uint64_t size;
  std::shared_ptr<Allocation> allocation;
  bool accessible;  // cuMemSetAccess granted read/write (cuMemAlloc: always)
  bool mem_alloc;   // made by cuMemAlloc: only cuMemFree takes it away
};

// A range of device addresses from cuMemAddressReserve.
struct Reservation {
  int device;  // the context's device at reservation time (freed with it)
  uint64_t size;
};

// One contiguous piece of a device range, inside one allocation.
struct Piece {
  std::shared_ptr<Allocation> allocation;
  uint64_t offset;
  uint64_t length;
};

struct Operation {
  enum Kind { host_to_device, device_to_host, fill, block_moves } kind;
  std::shared_ptr<Allocation> allocation;  // keeps the memory alive until the work ran
  uint64_t offset;                         // into the allocation
  const void* source;
  void* destination;
  size_t length;  // block_moves: the number of table entries
  unsigned char value;
};

}  // namespace vramswap::fake_cuda

using vramswap::fake_cuda::Allocation;
using vramswap::fake_cuda::Operation;

// The driver's opaque handle types, defined by the "driver".
struct vramswap::cuda::CUstream_st {
  CUctx_st* context = nullptr;
  // Guards queue, and is held while the queue runs so that work on one
  // stream runs in order even when two threads synchronize it.
  std::mutex mutex;
  std::vector<Operation> queue;
  std::chrono::steady_clock::time_point first_queued;  // of the work in `queue`
};

struct vramswap::cuda::CUevent_st {
  CUstream_st* stream = nullptr;  // where it was last recorded
};

// The only module and function the fake knows: the copy kernel.
struct vramswap::cuda::CUmod_st {};
struct vramswap::cuda::CUfunc_st {};

struct vramswap::cuda::CUctx_st {
  int device = 0;
  int references = 0;                    // guarded by g_lock
  std::atomic<bool> active{false};       // retained and not fully released since
  std::atomic<bool> lost_memory{false};  // its GPU lost power: calls fail until reset
  CUstream_st null_stream;               // stream 0, the legacy default stream
};

namespace {

using namespace vramswap::fake_cuda;  // NOLINT

// Pinned host memory the fake knows: its own (cuMemHostAlloc) or the
// caller's (cuMemHostRegister, which the fake must never unmap).
struct HostAllocation {
  size_t size;
  CUctx_st* context;
  bool device_mapped;  // CU_MEMHOSTALLOC_DEVICEMAP / CU_MEMHOSTREGISTER_DEVICEMAP
  bool registered;
};

struct Device {
  uint64_t allocated = 0;  // bytes of live allocations
  CUdeviceptr next_address = 0;
};

// g_lock guards the configuration and the registries below. Setup calls take
// it exclusively; copy calls share it only while they look up their stream
// and allocation, and cuStreamSynchronize runs a queue under that stream's
// own mutex only: workers copying on their own streams do not serialize.
// Lock order: a stream's mutex first, then g_lock (the copy kernel's moves
// look up allocations while their stream runs), never the other way.
std::shared_mutex g_lock;
std::atomic<bool> g_initialized{false};
Config g_config;
Device g_devices[max_devices];
CUctx_st g_contexts[max_devices];           // primary contexts; static, so handles never dangle
std::map<CUdeviceptr, Mapping> g_mappings;  // by base address
using MappingIt = std::map<CUdeviceptr, Mapping>::iterator;
// The 2 MiB granules of g_mappings' mappings that cover whole granules, each
// to its mapping (added and erased with it, by add_mapping_locked and
// erase_mapping_locked): a copy finds its mapping in one hash lookup, not a
// tree search among thousands of 2 MiB chunk mappings, which a GPU's page
// tables do not charge the CPU either. Other mappings are found in the tree.
constexpr uint64_t granule_bytes = 2 * 1024 * 1024;
std::unordered_map<uint64_t, MappingIt> g_granules;
std::map<CUmemGenericAllocationHandle, std::shared_ptr<Allocation>> g_handles;
std::map<CUdeviceptr, Reservation> g_reservations;  // by base address
CUmemGenericAllocationHandle g_last_handle = 0;
uint64_t g_create_calls = 0;  // cuMemCreate calls since cuInit (fault injection)
std::unordered_set<CUstream_st*> g_streams;
std::map<uintptr_t, HostAllocation> g_host_allocations;  // by address
std::unordered_set<CUmod_st*> g_modules;
std::unordered_set<CUevent_st*> g_events;
CUfunc_st g_copy_kernel;
std::atomic<uint64_t> g_copy_calls{0};
std::atomic<bool> g_lost{false};
std::atomic<Control*> g_control{nullptr};
// The control block's lose_memory value last acted on.
std::atomic<uint64_t> g_memory_losses_seen{0};

thread_local CUctx_st* t_current = nullptr;

// Device pointers: non-canonical x86-64 addresses (bits 48..63 are not a sign
// extension of bit 47), so host code dereferencing one crashes at once; one
// 2^44-byte region per device.
CUdeviceptr device_base(int device) {
  return CUdeviceptr{0xfa00'0000'0000'0000} + (CUdeviceptr(device) << 44);
}

Control* control() {
  return g_control.load(std::memory_order_acquire);
}

void count(std::atomic<uint64_t> Control::*field, uint64_t amount) {
  if (Control* block = control()) (block->*field).fetch_add(amount, std::memory_order_relaxed);
}

bool lost() {
  if (g_lost.load(std::memory_order_acquire)) return true;
  Control* block = control();
  if (block && block->lose_device.load(std::memory_order_acquire) != 0) {
    g_lost.store(true, std::memory_order_release);
    return true;
  }
  return false;
}

void notice_memory_loss();

// Initialized, and the device not lost.
CUresult ready() {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  if (lost()) return lost_device_error;
  notice_memory_loss();
  return CUDA_SUCCESS;
}

// Whether the calling thread's context lost its memory (and is not reset).
bool context_lost() {
  const CUctx_st* context = t_current;
  return context && context->lost_memory.load(std::memory_order_acquire);
}

// ready(), and the calling thread's context usable: for calls made in a
// context.
CUresult ready_in_context() {
  if (const CUresult result = ready(); result != CUDA_SUCCESS) return result;
  return context_lost() ? context_lost_error : CUDA_SUCCESS;
}

// What a clean-up call (free, release, unmap, destroy) reports after letting
// go: the device's or the context's loss, if any.
CUresult clean_up_result(bool device_lost) {
  if (device_lost) return lost_device_error;
  return context_lost() ? context_lost_error : CUDA_SUCCESS;
}

CUctx_st* current_context() {
  CUctx_st* context = t_current;
  return context && context->active.load(std::memory_order_acquire) ? context : nullptr;
}

bool idle_locked() {
  if (!g_mappings.empty() || !g_handles.empty() || !g_reservations.empty() || !g_streams.empty() ||
      !g_host_allocations.empty() || !g_modules.empty() || !g_events.empty()) {
    return false;
  }
  for (const CUctx_st& context : g_contexts) {
    if (context.references != 0) return false;
  }
  return true;
}

bool valid_device_locked(CUdevice device) {
  return device >= 0 && device < g_config.devices;
}

void report(const std::string& line) {
  std::fprintf(stderr, "fake libcuda: %s\n", line.c_str());
}

// Maps (creating or reusing) the control file and initializes it.
bool map_control(const std::string& path, std::string& error) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "opening " + path + ": " + std::strerror(errno);
    return false;
  }
  void* address = MAP_FAILED;
  if (ftruncate(fd, sizeof(Control)) == 0) {
    address = mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  const int saved_errno = errno;
  close(fd);
  if (address == MAP_FAILED) {
    error = "mapping " + path + ": " + std::strerror(saved_errno);
    return false;
  }
  auto* block = static_cast<Control*>(address);
  block->magic.store(0, std::memory_order_relaxed);
  for (auto field :
       {&Control::fail_next_copies, &Control::lose_device, &Control::copies,
        &Control::bytes_host_to_device, &Control::bytes_device_to_host, &Control::bytes_zeroed,
        &Control::syncs, &Control::bytes_allocated, &Control::failed_copies, &Control::creates,
        &Control::fail_create_at, &Control::other_program_bytes, &Control::live_contexts,
        &Control::lose_memory}) {
    (block->*field).store(0, std::memory_order_relaxed);
  }
  block->version.store(control_version, std::memory_order_relaxed);
  block->size.store(sizeof(Control), std::memory_order_relaxed);
  block->pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
  block->magic.store(control_magic, std::memory_order_release);
  // A block mapped by an earlier configuration stays mapped: a thread might
  // still hold the pointer, and it is a few bytes.
  g_control.store(block, std::memory_order_release);
  return true;
}

// (Re)configures from the environment; g_lock held exclusively, process idle.
CUresult configure_locked() {
  Config config;
  std::string error;
  if (!read_config(config, error)) {
    report(error);
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (config.init_error != 0) return static_cast<CUresult>(config.init_error);
  if (config.devices == 0) return CUDA_ERROR_NO_DEVICE;
  if (config.control_path.empty()) {
    g_control.store(nullptr, std::memory_order_release);
  } else if (!map_control(config.control_path, error)) {
    report(error);
    return CUDA_ERROR_OPERATING_SYSTEM;
  }
  g_config = std::move(config);
  for (int device = 0; device < max_devices; ++device) {
    g_devices[device] = Device{0, device_base(device)};
    g_contexts[device].device = device;
    g_contexts[device].null_stream.context = &g_contexts[device];
  }
  g_last_handle = 0;
  g_create_calls = 0;
  g_copy_calls.store(0, std::memory_order_relaxed);
  g_lost.store(false, std::memory_order_release);
  g_memory_losses_seen.store(0, std::memory_order_release);
  return CUDA_SUCCESS;
}

// VRAM of the device that is ours to allocate: the total less the driver's
// own and what "another program" holds now (control block), never below 0.
uint64_t usable_bytes() {
  const uint64_t usable = g_config.memory - g_config.reserved;
  const Control* block = control();
  const uint64_t other = block ? block->other_program_bytes.load(std::memory_order_relaxed) : 0;
  return other < usable ? usable - other : 0;
}

// What cuMemGetInfo reports free on `device`.
uint64_t free_bytes_locked(int device) {
  const uint64_t usable = usable_bytes();
  const uint64_t allocated = g_devices[device].allocated;
  return allocated < usable ? usable - allocated : 0;
}

// Drops one reference (a handle or a mapping) to an allocation; the last
// one gives the device its memory back. The backing itself goes once queued
// work holding it has run.
void unreference_locked(Allocation& allocation) {
  if (--allocation.references > 0) return;
  g_devices[allocation.device].allocated -= allocation.size;
  count(&Control::bytes_allocated, 0 - allocation.size);
}

// A new allocation of `bytes` on `device`, counted against its memory, with
// one reference (its handle or its cuMemAlloc mapping). Applies the
// out-of-memory limits.
CUresult new_allocation_locked(int device_index, uint64_t bytes, bool exportable,
                               std::shared_ptr<Allocation>& made) {
  Device& device = g_devices[device_index];
  if (bytes > free_bytes_locked(device_index)) return CUDA_ERROR_OUT_OF_MEMORY;
  // The injected race: more is free, but the driver refuses above the limit.
  if (g_config.alloc_fail_above != unlimited &&
      device.allocated + bytes > g_config.alloc_fail_above) {
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  std::string error;
  int error_number = 0;
  auto backing = Backing::create(g_config.backing_dir, device_index, bytes, error, error_number);
  if (!backing) {
    report(error);
    // The host being short of memory is the fake's out-of-memory; anything
    // else (a stale file in the backing directory) is a setup error that
    // must not look like VRAM running out.
    return error_number == ENOMEM || error_number == ENOSPC || error_number == EFBIG
               ? CUDA_ERROR_OUT_OF_MEMORY
               : CUDA_ERROR_OPERATING_SYSTEM;
  }
  made = std::make_shared<Allocation>(device_index, bytes, std::move(backing), exportable);
  device.allocated += bytes;
  count(&Control::bytes_allocated, bytes);
  return CUDA_SUCCESS;
}

// A fresh device address range of `bytes` (rounded to the driver's pages) on
// `device`, followed by an unmapped page so that ranges never touch.
CUdeviceptr take_addresses_locked(int device_index, uint64_t bytes, uint64_t alignment) {
  Device& device = g_devices[device_index];
  if (alignment > 1)
    device.next_address = (device.next_address + alignment - 1) / alignment * alignment;
  const CUdeviceptr base = device.next_address;
  device.next_address += (bytes + gap_bytes - 1) / gap_bytes * gap_bytes + gap_bytes;
  return base;
}

// Whether a mapping covers whole granules only (it has them to itself).
bool on_granules(const MappingIt& it) {
  return it->first % granule_bytes == 0 && it->second.size % granule_bytes == 0;
}

MappingIt add_mapping_locked(CUdeviceptr base, Mapping mapping) {
  const auto [it, added] = g_mappings.emplace(base, std::move(mapping));
  if (added && on_granules(it)) {
    for (uint64_t at = base; at < base + it->second.size; at += granule_bytes)
      g_granules.emplace(at / granule_bytes, it);
  }
  return it;
}

MappingIt erase_mapping_locked(MappingIt it) {
  if (on_granules(it)) {
    for (uint64_t at = it->first; at < it->first + it->second.size; at += granule_bytes)
      g_granules.erase(at / granule_bytes);
  }
  return g_mappings.erase(it);
}

// What the driver does when a primary context's last reference goes: the
// context is reset and everything allocated in it is freed. Exported
// descriptors keep their memory (a memfd) alive on their own.
void reset_context_locked(CUctx_st& context) {
  context.active.store(false, std::memory_order_release);
  context.lost_memory.store(false, std::memory_order_release);
  count(&Control::live_contexts, uint64_t{0} - 1);
  for (auto it = g_mappings.begin(); it != g_mappings.end();) {
    if (it->second.allocation->device == context.device) {
      unreference_locked(*it->second.allocation);
      it = erase_mapping_locked(it);
    } else {
      ++it;
    }
  }
  for (auto it = g_handles.begin(); it != g_handles.end();) {
    if (it->second->device == context.device) {
      unreference_locked(*it->second);
      it = g_handles.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(g_reservations,
                [&](const auto& entry) { return entry.second.device == context.device; });
  for (auto it = g_streams.begin(); it != g_streams.end();) {
    if ((*it)->context == &context) {
      delete *it;
      it = g_streams.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = g_host_allocations.begin(); it != g_host_allocations.end();) {
    if (it->second.context == &context) {
      if (!it->second.registered) munmap(reinterpret_cast<void*>(it->first), it->second.size);
      it = g_host_allocations.erase(it);
    } else {
      ++it;
    }
  }
  std::lock_guard queue_lock(context.null_stream.mutex);
  context.null_stream.queue.clear();
}

// The control block's lose_memory changed: every device loses its memory,
// once per change. Called at the start of driver calls (ready()), never with
// g_lock or a stream's mutex held. Queued work of a lost context is dropped
// when its stream runs (run_queue_locked).
void notice_memory_loss() {
  const Control* block = control();
  if (!block) return;
  const uint64_t wanted = block->lose_memory.load(std::memory_order_acquire);
  if (wanted == g_memory_losses_seen.load(std::memory_order_acquire)) return;
  std::unique_lock lock(g_lock);
  if (wanted == g_memory_losses_seen.load(std::memory_order_relaxed)) return;
  g_memory_losses_seen.store(wanted, std::memory_order_release);
  for (CUctx_st& context : g_contexts) {
    if (context.references > 0) context.lost_memory.store(true, std::memory_order_release);
  }
  std::unordered_set<Allocation*> scribbled;
  auto scribble = [&](Allocation& allocation) {
    if (!scribbled.insert(&allocation).second) return;
    std::unique_lock backing_lock(allocation.backing_lock);
    if (!allocation.backing->scribble(lost_memory_pattern, sizeof lost_memory_pattern)) {
      report(std::string("cannot scribble over lost memory: ") + std::strerror(errno));
    }
  };
  for (auto& [base, mapping] : g_mappings)
    scribble(*mapping.allocation);
  for (auto& [handle, allocation] : g_handles)
    scribble(*allocation);
}

// The mapping holding `pointer`, or g_mappings.end().
MappingIt mapping_at_locked(CUdeviceptr pointer) {
  if (const auto granule = g_granules.find(pointer / granule_bytes); granule != g_granules.end()) {
    return granule->second;
  }
  auto it = g_mappings.upper_bound(pointer);
  if (it == g_mappings.begin()) return g_mappings.end();
  --it;
  return pointer - it->first < it->second.size ? it : g_mappings.end();
}

// Cuts [pointer, pointer + length) into its pieces, one per mapping it
// crosses (a reserved range maps many allocations back to back, and one copy
// may span them, as on the GPU). False when any byte is unmapped, not
// accessible, or (device >= 0) on another device: the range is invalid.
bool resolve_locked(CUdeviceptr pointer, uint64_t length, int device, std::vector<Piece>& pieces) {
  pieces.clear();
  auto it = mapping_at_locked(pointer);
  while (length > 0) {
    if (it == g_mappings.end() || it->first > pointer) return false;
    const Mapping& mapping = it->second;
    if (!mapping.accessible || (device >= 0 && mapping.allocation->device != device)) return false;
    const uint64_t into = pointer - it->first;
    const uint64_t piece = std::min<uint64_t>(length, mapping.size - into);
    pieces.push_back({mapping.allocation, into, piece});
    pointer += piece;
    length -= piece;
    ++it;
  }
  return true;
}

// Empties a thread's reused piece list when the call ends, so that it holds
// no allocation alive (its memory would not go back to the host).
struct PiecesCleared {
  std::vector<Piece>& pieces;
  ~PiecesCleared() { pieces.clear(); }
};

// The mappings that make up exactly [pointer, pointer + bytes), back to back:
// [first, last). False when the range starts or ends inside a mapping or
// has a hole.
bool whole_mappings_locked(CUdeviceptr pointer, uint64_t bytes,
                           std::map<CUdeviceptr, Mapping>::iterator& first,
                           std::map<CUdeviceptr, Mapping>::iterator& last) {
  first = g_mappings.find(pointer);
  if (first == g_mappings.end() || bytes == 0) return false;
  last = first;
  CUdeviceptr at = pointer;
  const CUdeviceptr end = pointer + bytes;
  while (at < end) {
    if (last == g_mappings.end() || last->first != at || last->second.mem_alloc) return false;
    at += last->second.size;
    ++last;
  }
  return at == end;
}

// The reservation holding all of [pointer, pointer + bytes), or end().
std::map<CUdeviceptr, Reservation>::iterator reservation_holding_locked(CUdeviceptr pointer,
                                                                        uint64_t bytes) {
  auto it = g_reservations.upper_bound(pointer);
  if (it == g_reservations.begin()) return g_reservations.end();
  --it;
  const uint64_t into = pointer - it->first;
  return into < it->second.size && bytes <= it->second.size - into ? it : g_reservations.end();
}

// Whether [pointer, pointer + length) lies in one pinned host allocation made
// with CU_MEMHOSTALLOC_DEVICEMAP (the only host memory a kernel may touch).
bool mapped_host_range_locked(uintptr_t pointer, size_t length) {
  auto it = g_host_allocations.upper_bound(pointer);
  if (it == g_host_allocations.begin()) return false;
  --it;
  const uintptr_t into = pointer - it->first;
  return it->second.device_mapped && into < it->second.size && length <= it->second.size - into;
}

// Counts a copy call and applies the injected faults.
CUresult admit_copy_call() {
  const uint64_t call = g_copy_calls.fetch_add(1, std::memory_order_relaxed) + 1;
  if (g_config.lose_device_after != unlimited && call > g_config.lose_device_after) {
    g_lost.store(true, std::memory_order_release);
    return lost_device_error;
  }
  if (g_config.fail_copy != 0 && call >= g_config.fail_copy &&
      call - g_config.fail_copy < g_config.fail_copy_count) {
    return injected_copy_error;
  }
  if (Control* block = control()) {
    uint64_t pending = block->fail_next_copies.load(std::memory_order_relaxed);
    while (pending > 0) {
      if (block->fail_next_copies.compare_exchange_weak(pending, pending - 1,
                                                        std::memory_order_relaxed)) {
        return injected_copy_error;
      }
    }
  }
  return CUDA_SUCCESS;
}

CUresult enqueue(Operation::Kind kind, CUdeviceptr device_pointer, const void* source,
                 void* destination, size_t length, unsigned char value, CUstream handle) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  if (lost()) {
    count(&Control::failed_copies, 1);
    return lost_device_error;
  }
  notice_memory_loss();
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (context->lost_memory.load(std::memory_order_acquire)) {
    count(&Control::failed_copies, 1);
    return context_lost_error;
  }

  std::shared_lock lock(g_lock);
  if (const CUresult admitted = admit_copy_call(); admitted != CUDA_SUCCESS) {
    count(&Control::failed_copies, 1);
    return admitted;
  }
  if (handle && !g_streams.contains(handle)) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st* stream = handle ? handle : &context->null_stream;
  if (stream->context != context) return CUDA_ERROR_INVALID_CONTEXT;
  if (length == 0) return CUDA_SUCCESS;
  if (kind == Operation::host_to_device && !source) return CUDA_ERROR_INVALID_VALUE;
  if (kind == Operation::device_to_host && !destination) return CUDA_ERROR_INVALID_VALUE;
  thread_local std::vector<Piece> pieces;
  const PiecesCleared cleared{pieces};
  if (!resolve_locked(device_pointer, length, context->device, pieces)) {
    return CUDA_ERROR_INVALID_VALUE;
  }

  // The stream's mutex is never taken under g_lock: a sync holds it while
  // the copy kernel's moves take g_lock (lock order: stream, then g_lock).
  lock.unlock();
  {
    std::lock_guard queue_lock(stream->mutex);
    if (stream->queue.empty()) stream->first_queued = std::chrono::steady_clock::now();
    size_t done = 0;  // into the host buffer
    for (Piece& piece : pieces) {
      stream->queue.push_back(
          {kind, std::move(piece.allocation), piece.offset,
           source ? static_cast<const unsigned char*>(source) + done : nullptr,
           destination ? static_cast<unsigned char*>(destination) + done : nullptr, piece.length,
           value});
      done += piece.length;
    }
  }
  count(&Control::copies, 1);
  switch (kind) {
    case Operation::host_to_device:
      count(&Control::bytes_host_to_device, length);
      break;
    case Operation::device_to_host:
      count(&Control::bytes_device_to_host, length);
      break;
    case Operation::fill:
      count(&Control::bytes_zeroed, length);
      break;
    case Operation::block_moves:  // counted when the table is read
      break;
  }
  return CUDA_SUCCESS;
}

// The copy kernel "running": reads its table now, as the GPU would, and
// performs every move, faulting like the GPU's MMU on a stray address.
CUresult run_block_moves(const Operation& operation) {
  const auto* moves = static_cast<const vramswap::store::BlockMove*>(operation.source);
  std::shared_lock lock(g_lock);
  if (!mapped_host_range_locked(reinterpret_cast<uintptr_t>(moves),
                                operation.length * sizeof(vramswap::store::BlockMove))) {
    report("copy kernel: its table is not in mapped pinned memory (illegal address)");
    g_lost.store(true, std::memory_order_release);
    return CUDA_ERROR_ILLEGAL_ADDRESS;
  }
  thread_local std::vector<Piece> pieces;
  const PiecesCleared cleared{pieces};
  for (size_t i = 0; i < operation.length; ++i) {
    const vramswap::store::BlockMove move = moves[i];
    if (move.bytes > vramswap::store::max_block_move_bytes ||
        !resolve_locked(move.device, move.bytes, /*device=*/-1, pieces) ||
        !mapped_host_range_locked(move.host, move.bytes)) {
      report("copy kernel: move " + std::to_string(i) + " touches memory it may not (host " +
             std::to_string(move.host) + ", device " + std::to_string(move.device) + ", " +
             std::to_string(move.bytes) + " bytes): illegal address");
      g_lost.store(true, std::memory_order_release);
      return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    auto* host = reinterpret_cast<unsigned char*>(move.host);
    for (const Piece& piece : pieces) {
      std::shared_lock backing_lock(piece.allocation->backing_lock);
      const bool done = move.to_device
                            ? piece.allocation->backing->write(piece.offset, host, piece.length)
                            : piece.allocation->backing->read(piece.offset, host, piece.length);
      if (!done) {
        report(std::string("host memory behind the fake VRAM failed: ") + std::strerror(errno));
        return CUDA_ERROR_OPERATING_SYSTEM;
      }
      host += piece.length;
    }
    count(move.to_device ? &Control::bytes_host_to_device : &Control::bytes_device_to_host,
          move.bytes);
  }
  return CUDA_SUCCESS;
}

// When the work queued on a stream is done (VRAMSWAP_FAKE_COPY_LATENCY_US).
std::chrono::steady_clock::time_point done_at(const CUstream_st& stream) {
  return stream.first_queued + std::chrono::microseconds(g_config.copy_latency_us);
}

// Runs a stream's queue in order; the stream's mutex is held.
CUresult run_queue_locked(CUstream_st& stream) {
  CUresult result = CUDA_SUCCESS;
  for (const Operation& operation : stream.queue) {
    if (lost()) {
      result = lost_device_error;
      break;
    }
    if (stream.context->lost_memory.load(std::memory_order_acquire)) {
      result = context_lost_error;
      break;
    }
    if (operation.kind == Operation::block_moves) {
      result = run_block_moves(operation);
      if (result != CUDA_SUCCESS) break;
      continue;
    }
    // An export may give the allocation a backing of its own meanwhile.
    std::shared_lock backing_lock(operation.allocation->backing_lock);
    const Backing& backing = *operation.allocation->backing;
    bool done = false;
    switch (operation.kind) {
      case Operation::block_moves:
        break;
      case Operation::host_to_device:
        done = backing.write(operation.offset, operation.source, operation.length);
        break;
      case Operation::device_to_host:
        done = backing.read(operation.offset, operation.destination, operation.length);
        break;
      case Operation::fill:
        done = backing.fill(operation.offset, operation.value, operation.length);
        break;
    }
    if (!done) {
      report(std::string("host memory behind the fake VRAM failed: ") + std::strerror(errno));
      result = CUDA_ERROR_OPERATING_SYSTEM;
      break;
    }
  }
  stream.queue.clear();  // keeps its capacity for the next batch
  return result;
}

// The stream a handle names for the calling thread's context, or an error.
CUresult resolve_stream(CUstream handle, CUstream_st*& stream) {
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  std::shared_lock lock(g_lock);
  if (handle && !g_streams.contains(handle)) return CUDA_ERROR_INVALID_HANDLE;
  stream = handle ? handle : &context->null_stream;
  return stream->context == context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

}  // namespace

#define FAKE_TRY(expression)                                                        \
  do {                                                                              \
    if (const CUresult fake_result_ = (expression); fake_result_ != CUDA_SUCCESS) { \
      return fake_result_;                                                          \
    }                                                                               \
  } while (0)

extern "C" {

// --- Initialization and version ---------------------------------------------

CUresult cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  std::unique_lock lock(g_lock);
  if (g_initialized.load(std::memory_order_relaxed) && !idle_locked()) {
    return lost() ? lost_device_error : CUDA_SUCCESS;
  }
  g_initialized.store(false, std::memory_order_release);
  FAKE_TRY(configure_locked());
  g_initialized.store(true, std::memory_order_release);
  return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int* version) {
  if (!version) return CUDA_ERROR_INVALID_VALUE;
  *version = driver_version;
  return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char** name) {
  if (!name) return CUDA_ERROR_INVALID_VALUE;
  *name = result_name(error);
  return *name ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char** text) {
  if (!text) return CUDA_ERROR_INVALID_VALUE;
  *text = result_text(error);
  return *text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// --- Devices -----------------------------------------------------------------

CUresult cuDeviceGetCount(int* count) {
  FAKE_TRY(ready());
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  *count = g_config.devices;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  FAKE_TRY(ready());
  if (!device) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int length, CUdevice device) {
  FAKE_TRY(ready());
  if (!name || length <= 0) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  std::snprintf(name, static_cast<size_t>(length), "%s", g_config.name.c_str());
  return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  FAKE_TRY(ready());
  if (!bytes) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  *bytes = g_config.memory;
  return CUDA_SUCCESS;
}

// Deterministic per index: "GPU-face00NN-5a5a-..." with the rest derived
// from the index, so UUIDs differ early (prefix matching can be tested) and
// share a prefix (ambiguity can be tested).
CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice device) {
  FAKE_TRY(ready());
  if (!uuid) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  uint64_t mix = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(device + 1);
  uuid->bytes[0] = 0xfa;
  uuid->bytes[1] = 0xce;
  uuid->bytes[2] = 0x00;
  uuid->bytes[3] = static_cast<unsigned char>(device);
  uuid->bytes[4] = 0x5a;
  uuid->bytes[5] = 0x5a;
  for (int i = 6; i < 16; ++i) {
    mix ^= mix >> 29;
    mix *= 0xbf58476d1ce4e5b9ull;
    uuid->bytes[i] = static_cast<unsigned char>(mix >> 56);
  }
  return CUDA_SUCCESS;
}

#ifndef VRAMSWAP_FAKE_CUDA_WITHOUT_UUID_V2
CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device) {
  return cuDeviceGetUuid(uuid, device);
}
#endif

// "0000:01:00.0", "0000:3B:00.0", ...: buses with hex letters, so that case
// folding is exercised.
CUresult cuDeviceGetPCIBusId(char* bus_id, int length, CUdevice device) {
  FAKE_TRY(ready());
  if (!bus_id || length <= 0) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  const unsigned bus = (0x01u + 0x3au * static_cast<unsigned>(device)) & 0xffu;
  std::snprintf(bus_id, static_cast<size_t>(length), "0000:%02X:00.0", bus);
  return CUDA_SUCCESS;
}

// --- Contexts ----------------------------------------------------------------

CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  FAKE_TRY(ready());
  if (!context) return CUDA_ERROR_INVALID_VALUE;
  std::unique_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  CUctx_st& primary = g_contexts[device];
  if (primary.references++ == 0) count(&Control::live_contexts, 1);
  primary.active.store(true, std::memory_order_release);
  *context = &primary;
  return CUDA_SUCCESS;
}

// On a lost device this still lets go (the application is cleaning up) and
// then reports the loss.
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  std::unique_lock lock(g_lock);
  if (!valid_device_locked(device)) return CUDA_ERROR_INVALID_DEVICE;
  CUctx_st& primary = g_contexts[device];
  if (primary.references == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (--primary.references == 0) reset_context_locked(primary);
  return lost() ? lost_device_error : CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext context) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) {
    t_current = nullptr;
    return lost() ? lost_device_error : CUDA_SUCCESS;
  }
  FAKE_TRY(ready());
  std::shared_lock lock(g_lock);
  for (int device = 0; device < g_config.devices; ++device) {
    if (context == &g_contexts[device]) {
      t_current = context;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_CONTEXT;
}

// --- Memory --------------------------------------------------------------------

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (!free_bytes || !total_bytes) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  *total_bytes = g_config.memory;
  *free_bytes = free_bytes_locked(context->device);
  return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr* pointer, size_t bytes) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (!pointer || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  std::unique_lock lock(g_lock);
  std::shared_ptr<Allocation> allocation;
  FAKE_TRY(new_allocation_locked(context->device, bytes, /*exportable=*/false, allocation));
  const CUdeviceptr base = take_addresses_locked(context->device, bytes, 0);
  add_mapping_locked(base, Mapping{bytes, std::move(allocation), /*accessible=*/true,
                                   /*mem_alloc=*/true});
  *pointer = base;
  return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr pointer) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  if (!device_lost && !current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::unique_lock lock(g_lock);
  const auto it = g_mappings.find(pointer);
  if (it == g_mappings.end() || !it->second.mem_alloc) {
    return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  }
  unreference_locked(*it->second.allocation);
  erase_mapping_locked(it);
  return clean_up_result(device_lost);
}

// --- Virtual memory management --------------------------------------------------
// Physical allocations (handles) are memfds (or files in the backing
// directory), so an exported handle is a duplicate of that descriptor and a
// process importing it reaches the same bytes; the memory lives as long as
// any descriptor, handle or mapping of it does, as with the real driver.

// The device a CUmemAllocationProp names, after checking what the fake knows.
CUresult allocation_device(const CUmemAllocationProp* prop, int& device) {
  if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if ((prop->requestedHandleTypes & ~CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != 0) {
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  std::shared_lock lock(g_lock);
  if (!valid_device_locked(prop->location.id)) return CUDA_ERROR_INVALID_DEVICE;
  device = prop->location.id;
  return CUDA_SUCCESS;
}

CUresult cuMemGetAllocationGranularity(size_t* granularity, const CUmemAllocationProp* prop,
                                       CUmemAllocationGranularity_flags option) {
  FAKE_TRY(ready_in_context());
  if (!granularity || (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
                       option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  int device = 0;
  FAKE_TRY(allocation_device(prop, device));
  *granularity = gap_bytes;  // the driver's 2 MiB pages
  return CUDA_SUCCESS;
}

CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t bytes,
                     const CUmemAllocationProp* prop, unsigned long long flags) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (!handle || flags != 0 || bytes == 0 || bytes % gap_bytes != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  int device = 0;
  FAKE_TRY(allocation_device(prop, device));
  if (g_config.no_shareable && prop->requestedHandleTypes != CU_MEM_HANDLE_TYPE_NONE) {
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  std::unique_lock lock(g_lock);
  const uint64_t call = ++g_create_calls;
  count(&Control::creates, 1);
  if (Control* block = control();
      block && block->fail_create_at.load(std::memory_order_relaxed) == call) {
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  std::shared_ptr<Allocation> allocation;
  FAKE_TRY(new_allocation_locked(
      device, bytes, prop->requestedHandleTypes == CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
      allocation));
  *handle = ++g_last_handle;
  g_handles.emplace(*handle, std::move(allocation));
  return CUDA_SUCCESS;
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  std::unique_lock lock(g_lock);
  const auto it = g_handles.find(handle);
  if (it == g_handles.end()) return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  unreference_locked(*it->second);  // its mappings keep the memory until unmapped
  g_handles.erase(it);
  return clean_up_result(device_lost);
}

CUresult cuMemAddressReserve(CUdeviceptr* pointer, size_t bytes, size_t alignment,
                             CUdeviceptr address, unsigned long long flags) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (!pointer || bytes == 0 || bytes % gap_bytes != 0 || flags != 0 ||
      (alignment & (alignment - 1)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  (void)address;  // a hint; the fake never honours it, as the driver need not
  std::unique_lock lock(g_lock);
  const CUdeviceptr base = take_addresses_locked(context->device, bytes, alignment);
  g_reservations.emplace(base, Reservation{context->device, bytes});
  *pointer = base;
  return CUDA_SUCCESS;
}

CUresult cuMemAddressFree(CUdeviceptr pointer, size_t bytes) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  std::unique_lock lock(g_lock);
  const auto it = g_reservations.find(pointer);
  if (it == g_reservations.end() || it->second.size != bytes) {
    return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  }
  // Still mapped inside: unmap first.
  const auto mapped = g_mappings.lower_bound(pointer);
  if (mapped != g_mappings.end() && mapped->first < pointer + bytes) {
    return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  }
  g_reservations.erase(it);
  return clean_up_result(device_lost);
}

// Offset must be 0 and the whole range inside one reservation, free of other
// mappings, in whole 2 MiB pages, as the driver requires. Not accessible
// until cuMemSetAccess.
CUresult cuMemMap(CUdeviceptr pointer, size_t bytes, size_t offset,
                  CUmemGenericAllocationHandle handle, unsigned long long flags) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (bytes == 0 || offset != 0 || flags != 0 || pointer % gap_bytes != 0 ||
      bytes % gap_bytes != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::unique_lock lock(g_lock);
  const auto found = g_handles.find(handle);
  if (found == g_handles.end()) return CUDA_ERROR_INVALID_HANDLE;
  if (bytes > found->second->size) return CUDA_ERROR_INVALID_VALUE;
  if (reservation_holding_locked(pointer, bytes) == g_reservations.end()) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const auto overlap = g_mappings.lower_bound(pointer);
  if ((overlap != g_mappings.end() && overlap->first < pointer + bytes) ||
      mapping_at_locked(pointer) != g_mappings.end()) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  ++found->second->references;
  add_mapping_locked(pointer,
                     Mapping{bytes, found->second, /*accessible=*/false, /*mem_alloc=*/false});
  return CUDA_SUCCESS;
}

// The range must be made of whole mappings, back to back (several at once is
// how the driver's own samples unmap a grown range).
CUresult cuMemUnmap(CUdeviceptr pointer, size_t bytes) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  std::unique_lock lock(g_lock);
  std::map<CUdeviceptr, Mapping>::iterator first, last;
  if (!whole_mappings_locked(pointer, bytes, first, last)) {
    return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  }
  for (auto it = first; it != last;) {
    unreference_locked(*it->second.allocation);
    it = erase_mapping_locked(it);
  }
  return clean_up_result(device_lost);
}

// Read/write for the devices named, over whole mappings back to back. The
// fake knows no read-only access.
CUresult cuMemSetAccess(CUdeviceptr pointer, size_t bytes, const CUmemAccessDesc* descriptors,
                        size_t count) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (!descriptors || count == 0) return CUDA_ERROR_INVALID_VALUE;
  std::unique_lock lock(g_lock);
  for (size_t i = 0; i < count; ++i) {
    const CUmemAccessDesc& access = descriptors[i];
    if (access.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        !valid_device_locked(access.location.id) ||
        (access.flags != CU_MEM_ACCESS_FLAGS_PROT_NONE &&
         access.flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  std::map<CUdeviceptr, Mapping>::iterator first, last;
  if (!whole_mappings_locked(pointer, bytes, first, last)) return CUDA_ERROR_INVALID_VALUE;
  for (auto it = first; it != last; ++it) {
    for (size_t i = 0; i < count; ++i) {
      if (descriptors[i].location.id == it->second.allocation->device) {
        it->second.accessible = descriptors[i].flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      }
    }
  }
  return CUDA_SUCCESS;
}

// The shareable handle of a POSIX file descriptor type is an int: a new
// descriptor of the allocation's memfd, owned by the caller.
CUresult cuMemExportToShareableHandle(void* shareable_handle, CUmemGenericAllocationHandle handle,
                                      CUmemAllocationHandleType handle_type,
                                      unsigned long long flags) {
  FAKE_TRY(ready_in_context());
  if (!shareable_handle || flags != 0 || handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::unique_lock lock(g_lock);
  const auto found = g_handles.find(handle);
  if (found == g_handles.end()) return CUDA_ERROR_INVALID_HANDLE;
  Allocation& allocation = *found->second;
  if (!allocation.exportable) return CUDA_ERROR_INVALID_VALUE;
  // Out of the device's pool into a memfd of its own, once: what the
  // descriptor reaches must be this allocation alone. No queued work touches
  // it meanwhile (it takes the backing lock too).
  if (std::unique_lock backing_lock(allocation.backing_lock); !allocation.backing->own()) {
    std::unique_ptr<Backing> own = allocation.backing->detach();
    if (!own) return CUDA_ERROR_OPERATING_SYSTEM;
    allocation.backing = std::move(own);
  }
  const int fd = fcntl(allocation.backing->descriptor(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return CUDA_ERROR_OPERATING_SYSTEM;
  *static_cast<int*>(shareable_handle) = fd;
  return CUDA_SUCCESS;
}

// `os_handle` is the descriptor itself, cast to a pointer (as cuda.h says);
// the caller keeps it. The import counts against the importing context's
// device.
CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle* handle, void* os_handle,
                                        CUmemAllocationHandleType handle_type) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (!handle || handle_type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(os_handle));
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      static_cast<uint64_t>(st.st_size) % gap_bytes != 0) {
    return CUDA_ERROR_INVALID_VALUE;  // not a descriptor the fake exported
  }
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return CUDA_ERROR_OPERATING_SYSTEM;
  const auto bytes = static_cast<uint64_t>(st.st_size);
  std::unique_lock lock(g_lock);
  g_devices[context->device].allocated += bytes;
  count(&Control::bytes_allocated, bytes);
  *handle = ++g_last_handle;
  g_handles.emplace(*handle, std::make_shared<Allocation>(context->device, bytes,
                                                          Backing::adopt(own, bytes), true));
  return CUDA_SUCCESS;
}

// Pinned host memory: plain anonymous memory here (it is page-locked by
// whatever mlockall the process did, which is what pinning means).
CUresult cuMemHostAlloc(void** pointer, size_t bytes, unsigned int flags) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  constexpr unsigned int known_flags =
      CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED;
  if (!pointer || bytes == 0 || (flags & ~known_flags) != 0) return CUDA_ERROR_INVALID_VALUE;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  std::unique_lock lock(g_lock);
  g_host_allocations.emplace(
      reinterpret_cast<uintptr_t>(memory),
      HostAllocation{bytes, context, (flags & CU_MEMHOSTALLOC_DEVICEMAP) != 0, false});
  *pointer = memory;
  return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void* pointer) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  if (!device_lost && !current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::unique_lock lock(g_lock);
  const auto it = g_host_allocations.find(reinterpret_cast<uintptr_t>(pointer));
  if (it == g_host_allocations.end() || it->second.registered) {
    return device_lost ? lost_device_error : CUDA_ERROR_INVALID_VALUE;
  }
  munmap(pointer, it->second.size);
  g_host_allocations.erase(it);
  return clean_up_result(device_lost);
}

// Page-locks the caller's memory for this context (here: records it; the
// process's mlockall does the locking). As the real driver, it refuses a
// range that overlaps one registered already, and the registration ends
// with the context.
CUresult cuMemHostRegister_v2(void* pointer, size_t bytes, unsigned int flags) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  constexpr unsigned int known_flags = CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP;
  if (!pointer || bytes == 0 || (flags & ~known_flags) != 0) return CUDA_ERROR_INVALID_VALUE;
  const auto start = reinterpret_cast<uintptr_t>(pointer);
  std::unique_lock lock(g_lock);
  auto next = g_host_allocations.lower_bound(start);
  if (next != g_host_allocations.end() && next->first < start + bytes) {
    return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  }
  if (next != g_host_allocations.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.size > start) {
      return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    }
  }
  g_host_allocations.emplace(
      start, HostAllocation{bytes, context, (flags & CU_MEMHOSTREGISTER_DEVICEMAP) != 0, true});
  return CUDA_SUCCESS;
}

CUresult cuMemHostUnregister(void* pointer) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  if (!device_lost && !current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::unique_lock lock(g_lock);
  const auto it = g_host_allocations.find(reinterpret_cast<uintptr_t>(pointer));
  if (it == g_host_allocations.end() || !it->second.registered) {
    return device_lost ? lost_device_error : CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  }
  g_host_allocations.erase(it);
  return clean_up_result(device_lost);
}

// --- Streams and copies ------------------------------------------------------------

CUresult cuStreamCreate(CUstream* stream, unsigned int flags) {
  FAKE_TRY(ready_in_context());
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (!stream || (flags & ~CU_STREAM_NON_BLOCKING) != 0) return CUDA_ERROR_INVALID_VALUE;
  auto created = std::make_unique<CUstream_st>();
  created->context = context;
  std::unique_lock lock(g_lock);
  g_streams.insert(created.get());
  *stream = created.release();
  return CUDA_SUCCESS;
}

// Work still queued runs first, as the driver completes it before releasing
// the stream.
CUresult cuStreamDestroy_v2(CUstream stream) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  const bool device_lost = lost();
  if (!device_lost && !current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  {
    std::unique_lock lock(g_lock);
    if (!stream || g_streams.erase(stream) == 0) {
      return device_lost ? lost_device_error : CUDA_ERROR_INVALID_HANDLE;
    }
  }
  CUresult result = CUDA_SUCCESS;
  {
    std::lock_guard queue_lock(stream->mutex);
    result = run_queue_locked(*stream);
  }
  delete stream;
  return device_lost ? lost_device_error : result;  // a lost context's work failed: result says so
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination, const void* source, size_t bytes,
                              CUstream stream) {
  return enqueue(Operation::host_to_device, destination, source, nullptr, bytes, 0, stream);
}

CUresult cuMemcpyDtoHAsync_v2(void* destination, CUdeviceptr source, size_t bytes,
                              CUstream stream) {
  return enqueue(Operation::device_to_host, source, nullptr, destination, bytes, 0, stream);
}

CUresult cuMemsetD8Async(CUdeviceptr destination, unsigned char value, size_t count,
                         CUstream stream) {
  return enqueue(Operation::fill, destination, nullptr, nullptr, count, value, stream);
}

CUresult cuStreamSynchronize(CUstream handle) {
  FAKE_TRY(ready_in_context());
  CUstream_st* stream = nullptr;
  FAKE_TRY(resolve_stream(handle, stream));
  std::lock_guard queue_lock(stream->mutex);
  if (!stream->queue.empty()) std::this_thread::sleep_until(done_at(*stream));
  const CUresult result = run_queue_locked(*stream);
  count(&Control::syncs, 1);
  return result;
}

// --- Mapped host memory, the copy kernel, queries and events --------------------
// Unified addressing: mapped pinned memory has the same address on both sides.
CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* device_pointer, void* host, unsigned int flags) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (!device_pointer || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!mapped_host_range_locked(reinterpret_cast<uintptr_t>(host), 1)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *device_pointer = reinterpret_cast<CUdeviceptr>(host);
  return CUDA_SUCCESS;
}

CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
  std::unique_lock lock(g_lock);
  if (g_config.no_kernel) return CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
  const std::string ptx(static_cast<const char*>(image));
  if (ptx.find(".version") == std::string::npos ||
      ptx.find(std::string(".entry ") + vramswap::store::block_move_kernel_name + "(") ==
          std::string::npos) {
    return CUDA_ERROR_INVALID_PTX;
  }
  auto* created = new CUmod_st;
  g_modules.insert(created);
  *module = created;
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  FAKE_TRY(ready_in_context());
  if (!function || !name) return CUDA_ERROR_INVALID_VALUE;
  std::shared_lock lock(g_lock);
  if (!g_modules.contains(module)) return CUDA_ERROR_INVALID_HANDLE;
  if (std::string_view(name) != vramswap::store::block_move_kernel_name)
    return CUDA_ERROR_NOT_FOUND;
  *function = &g_copy_kernel;
  return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule module) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  std::unique_lock lock(g_lock);
  if (g_modules.erase(module) == 0) return CUDA_ERROR_INVALID_HANDLE;
  delete module;
  return lost() ? lost_device_error : CUDA_SUCCESS;
}

// Only the copy kernel: one thread block per table entry, its one parameter
// the table's device-visible address. Counts as one copy call for fault
// injection.
CUresult cuLaunchKernel(CUfunction function, unsigned int grid_x, unsigned int grid_y,
                        unsigned int grid_z, unsigned int block_x, unsigned int block_y,
                        unsigned int block_z, unsigned int shared_bytes, CUstream handle,
                        void** parameters, void** extra) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  if (lost()) {
    count(&Control::failed_copies, 1);
    return lost_device_error;
  }
  CUctx_st* context = current_context();
  if (!context) return CUDA_ERROR_INVALID_CONTEXT;
  if (function != &g_copy_kernel) return CUDA_ERROR_INVALID_HANDLE;
  if (grid_x == 0 || grid_y != 1 || grid_z != 1 || block_x == 0 || block_x > 1024 || block_y != 1 ||
      block_z != 1 || shared_bytes != 0 || !parameters || !parameters[0] || extra) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::shared_lock lock(g_lock);
  if (const CUresult admitted = admit_copy_call(); admitted != CUDA_SUCCESS) {
    count(&Control::failed_copies, 1);
    return admitted;
  }
  if (handle && !g_streams.contains(handle)) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st* stream = handle ? handle : &context->null_stream;
  if (stream->context != context) return CUDA_ERROR_INVALID_CONTEXT;
  const CUdeviceptr table = *static_cast<const CUdeviceptr*>(parameters[0]);
  lock.unlock();  // lock order: stream, then g_lock (see enqueue)
  {
    std::lock_guard queue_lock(stream->mutex);
    if (stream->queue.empty()) stream->first_queued = std::chrono::steady_clock::now();
    stream->queue.push_back({Operation::block_moves, nullptr, 0,
                             reinterpret_cast<const void*>(table), nullptr, grid_x, 0});
  }
  count(&Control::copies, 1);
  return CUDA_SUCCESS;
}

// Work is done when someone asks (once VRAMSWAP_FAKE_COPY_LATENCY_US has
// passed): a query runs what is queued and reports it complete, like a GPU
// that happened to be done by then.
CUresult cuStreamQuery(CUstream handle) {
  FAKE_TRY(ready_in_context());
  CUstream_st* stream = nullptr;
  FAKE_TRY(resolve_stream(handle, stream));
  std::lock_guard queue_lock(stream->mutex);
  if (!stream->queue.empty() && std::chrono::steady_clock::now() < done_at(*stream)) {
    return CUDA_ERROR_NOT_READY;
  }
  return run_queue_locked(*stream);
}

CUresult cuEventCreate(CUevent* event, unsigned int flags) {
  FAKE_TRY(ready_in_context());
  if (!current_context()) return CUDA_ERROR_INVALID_CONTEXT;
  if (!event || (flags & ~(CU_EVENT_DISABLE_TIMING | 0x1u | 0x4u)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  auto* created = new CUevent_st;
  std::unique_lock lock(g_lock);
  g_events.insert(created);
  *event = created;
  return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream handle) {
  FAKE_TRY(ready_in_context());
  CUstream_st* stream = nullptr;
  FAKE_TRY(resolve_stream(handle, stream));
  std::shared_lock lock(g_lock);
  if (!g_events.contains(event)) return CUDA_ERROR_INVALID_HANDLE;
  event->stream = stream;
  return CUDA_SUCCESS;
}

CUresult event_complete(CUevent event) {
  FAKE_TRY(ready_in_context());
  CUstream_st* stream = nullptr;
  {
    std::shared_lock lock(g_lock);
    if (!g_events.contains(event)) return CUDA_ERROR_INVALID_HANDLE;
    stream = event->stream;
  }
  if (!stream) return CUDA_SUCCESS;  // never recorded: complete
  std::lock_guard queue_lock(stream->mutex);
  return run_queue_locked(*stream);
}

CUresult cuEventQuery(CUevent event) {
  return event_complete(event);
}

CUresult cuEventSynchronize(CUevent event) {
  const CUresult result = event_complete(event);
  count(&Control::syncs, 1);
  return result;
}

CUresult cuEventDestroy_v2(CUevent event) {
  if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED;
  std::unique_lock lock(g_lock);
  if (g_events.erase(event) == 0) return CUDA_ERROR_INVALID_HANDLE;
  delete event;
  return lost() ? lost_device_error : CUDA_SUCCESS;
}

}  // extern "C"

// Takes the address of every entry point of the shared list, so that a
// missing one fails the link (-Wl,--no-undefined) instead of the tests.
#define FAKE_CUDA_ADDRESS(member, symbol, since, parameters) reinterpret_cast<void*>(&symbol),
[[maybe_unused]] __attribute__((used)) static void* const every_entry_point[] = {
    VRAMSWAP_CUDA_FUNCTIONS(FAKE_CUDA_ADDRESS)
#ifndef VRAMSWAP_FAKE_CUDA_WITHOUT_UUID_V2
        VRAMSWAP_CUDA_PREFERRED_FUNCTIONS(FAKE_CUDA_ADDRESS)
#endif
};
#undef FAKE_CUDA_ADDRESS
