#pragma once

#include <cstddef>

#include "cuda/context.hpp"

namespace vramswap::store {

// Page-locked host memory from cuMemHostAlloc: the staging area of a worker.
// Copies between VRAM and pinned memory run asynchronously at full PCIe
// speed; from ordinary (pageable) memory the driver would stage them through
// a buffer of its own, synchronously and at a fraction of the speed.
//
// Allocate these at startup: pinning is slow, and memory pinned here cannot be
// swapped, which is what a swap daemon's own buffers need anyway.
// The calling thread must be bound to the context (Context binds its
// creator). The context must outlive the buffer.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // Throws StartupError(unavailable) when the memory cannot be pinned.
  // `flags` are CU_MEMHOSTALLOC_* (0: the right choice for staging read and
  // written by the CPU; WRITECOMBINED only helps buffers the CPU never reads).
  PinnedBuffer(const cuda::Context& context, size_t bytes, unsigned int flags = 0);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

 private:
  void release() noexcept;

  const cuda::Context* context_ = nullptr;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vramswap::store
