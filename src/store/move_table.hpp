#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/driver_api.hpp"
#include "cuda/error.hpp"
#include "store/block_move.hpp"
#include "store/pinned_buffer.hpp"

namespace vramswap::store {

class CopyKernel;

// One round's copies, collected so that they go to the GPU as one launch of
// the copy kernel instead of one driver call each. The table lives in mapped
// pinned memory that the kernel reads; only host memory registered with
// map() (pinned buffers registered with CU_MEMHOSTREGISTER_DEVICEMAP) can take
// part, anything else is copied by the caller the usual way.
class MoveTable {
 public:
  MoveTable(const cuda::Context& context, const CopyKernel& copy_kernel, size_t capacity);

  // Lets the kernel reach `buffer` (false if the driver cannot map it).
  bool map(const PinnedBuffer& buffer);

  // Adds a move of one VRAM extent; false when `host` is not in a mapped
  // buffer, the copy is large enough for DMA (dma_copy_bytes) or the table is
  // full: the caller copies it by DMA then.
  bool add(std::byte* host, cuda::CUdeviceptr device, uint64_t bytes, bool to_device) noexcept;
  size_t size() const noexcept { return count_; }

  // Queues what was added on `stream`: one kernel launch, or for a single
  // move a DMA copy (its latency is lower). The table must not change until
  // the stream has finished it: call clear() only after synchronizing.
  cuda::Status submit(cuda::CUstream stream) const noexcept;
  void clear() noexcept { count_ = 0; }

  // Before the context is released: the table's memory and the GPU's view
  // of every mapped buffer go (the buffers' owners detach those). attach()
  // finds them again once the context and the buffers are back.
  cuda::Status detach() noexcept;
  cuda::Status attach() noexcept;

 private:
  struct Region {
    std::byte* host;
    size_t size;
    cuda::CUdeviceptr device;  // where the GPU sees `host`
  };

  const cuda::Context* context_;
  const CopyKernel* copy_kernel_;
  PinnedBuffer table_;
  cuda::CUdeviceptr table_device_ = 0;
  size_t capacity_;
  size_t count_ = 0;
  std::vector<std::byte*> host_of_;  // each entry's host pointer, for the DMA path
  std::vector<Region> regions_;
};

}  // namespace vramswap::store
