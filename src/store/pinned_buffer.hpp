#pragma once

#include <cstddef>

#include "cuda/context.hpp"
#include "cuda/error.hpp"

namespace vramswap::store {

// Page-locked host memory: the staging area of a worker. Copies between VRAM
// and pinned memory run asynchronously at full PCIe speed; from ordinary
// (pageable) memory the driver would stage them through a buffer of its own,
// synchronously and at a fraction of the speed.
//
// The memory is ours (an anonymous mapping, locked like the rest of the
// daemon by mlockall) and registered with the context (cuMemHostRegister),
// rather than the driver's (cuMemHostAlloc), so that it outlives the context:
// detach() unregisters it, the context may then be released (elastic VRAM
// lets the GPU power down on battery) while the bytes and their address stay,
// and attach() registers the same memory with the context retained again.
//
// Allocate these at startup: pinning is slow, and memory pinned here cannot be
// swapped, which is what a swap daemon's own buffers need anyway.
// The calling thread must be bound to the context (Context binds its
// creator). The context must outlive the buffer.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // Throws StartupError(unavailable) when the memory cannot be had or pinned.
  // `flags` are CU_MEMHOSTREGISTER_* (DEVICEMAP: the copy kernel reaches it).
  PinnedBuffer(const cuda::Context& context, size_t bytes, unsigned int flags = 0);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

  // Unregisters the memory from the context (it stays readable and writable
  // here, its bytes kept); no-op when detached. The calling thread must be
  // bound to the context.
  cuda::Status detach() noexcept;
  // Registers it again (after the context was retained again); no-op when
  // attached.
  cuda::Status attach() noexcept;
  bool attached() const noexcept { return attached_; }

 private:
  void release() noexcept;

  const cuda::Context* context_ = nullptr;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  unsigned int flags_ = 0;
  bool attached_ = false;
};

}  // namespace vramswap::store
