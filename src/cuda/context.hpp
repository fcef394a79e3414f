#pragma once

#include <cstdint>

#include "cuda/driver.hpp"
#include "cuda/error.hpp"

namespace vramswap::cuda {

struct MemoryInfo {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};

// The chosen GPU's primary context, retained for the object's lifetime.
//
// CUDA calls act on the calling thread's *current* context. The driver keeps
// that per thread, so EVERY thread that touches CUDA through this context
// (allocating, creating streams, copying, synchronizing, freeing) must first
// call bind_current_thread() once; a thread that did not gets
// CUDA_ERROR_INVALID_CONTEXT from those calls (the fake driver checks this
// too). The constructor binds the constructing thread.
//
// The primary context is the one the runtime API and nvidia-smi's accounting
// share; retaining it (rather than creating our own) costs no extra context
// memory when something else in the process uses CUDA too.
//
// Lifetime: everything allocated in the context (VramStore, PinnedBuffer,
// CopyStream) must be destroyed before the Context: releasing the last
// reference resets the primary context, which frees all of it behind their
// backs. The Driver must outlive the Context.
class Context {
 public:
  // Retains the primary context of CUDA device `device_index` (a
  // DeviceInfo::index) and binds it to the calling thread. Throws
  // StartupError(unavailable) if the GPU refuses (e.g. compute mode
  // "prohibited" or "exclusive process" held by another program).
  Context(const Driver& driver, int device_index);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // cuCtxSetCurrent: makes this context the calling thread's current one.
  // Cheap; call it once at the start of every thread that uses CUDA.
  Status bind_current_thread() const noexcept;

  // cuMemGetInfo on this GPU, binding the calling thread. Throws StartupError.
  MemoryInfo memory_info() const;

  // Lets go of the primary context (cuDevicePrimaryCtxRelease) and unbinds
  // the calling thread: with no other user in the process the driver
  // destroys it, and with it everything allocated in it, so the GPU holds
  // nothing of ours and may power down. Everything allocated in the context
  // must be detached first (PinnedBuffer, CopyStream, CopyKernel, VramStore)
  // and no other thread may use it meanwhile. No-op when released.
  Status release() noexcept;
  // Retains it again and binds the calling thread; every other thread must
  // bind again before it touches CUDA. No-op when retained.
  Status retain() noexcept;
  bool retained() const noexcept { return retained_; }

  const Driver& driver() const noexcept { return *driver_; }
  int device_index() const noexcept { return device_index_; }
  CUdevice device() const noexcept { return device_; }
  CUcontext handle() const noexcept { return context_; }

 private:
  const Driver* driver_;
  int device_index_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  bool retained_ = false;
};

}  // namespace vramswap::cuda
