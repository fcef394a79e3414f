#pragma once

#include <memory>

#include "cuda/context.hpp"
#include "cuda/error.hpp"

namespace vramswap::store {

// The copy kernel (copy_kernel.cu), loaded from its PTX through the driver
// API: one launch moves every block of a round between mapped pinned host
// memory and VRAM (see block_move.hpp). One per context, shared by workers.
class CopyKernel {
 public:
  // Nothing when this driver or GPU cannot load the kernel (a driver too old
  // for the PTX, say); the reason is logged once and copies use DMA.
  static std::unique_ptr<CopyKernel> load(const cuda::Context& context);
  ~CopyKernel();
  CopyKernel(const CopyKernel&) = delete;
  CopyKernel& operator=(const CopyKernel&) = delete;

  // Queues one launch over `count` table entries at device-visible address
  // `table` on `stream`. Allocates nothing. CUDA_ERROR_INVALID_CONTEXT while
  // detached.
  cuda::Status launch(cuda::CUdeviceptr table, unsigned count,
                      cuda::CUstream stream) const noexcept;

  // Unloads the module before the context is released; attach() loads it
  // again in the context retained again (see Context::release()).
  cuda::Status detach() noexcept;
  cuda::Status attach() noexcept;

 private:
  CopyKernel(const cuda::Context& context, cuda::CUmodule module, cuda::CUfunction function)
      : context_(&context), module_(module), function_(function) {}
  // Loads the module and finds the kernel; on failure holds nothing.
  static cuda::CUresult load_module(const cuda::Driver& driver, cuda::CUmodule* module,
                                    cuda::CUfunction* function) noexcept;

  const cuda::Context* context_;
  cuda::CUmodule module_;
  cuda::CUfunction function_;
};

}  // namespace vramswap::store
