#include "store/copy_kernel.hpp"

#include "common/log.hpp"
#include "store/block_move.hpp"

namespace vramswap::store {

extern const char* const copy_kernel_ptx_text;  // copy_kernel_ptx.cpp, made from copy_kernel.ptx

std::unique_ptr<CopyKernel> CopyKernel::load(const cuda::Context& context) {
  const cuda::Driver& driver = context.driver();
  cuda::CUmodule module = nullptr;
  cuda::CUresult result = driver.cuModuleLoadData(&module, copy_kernel_ptx_text);
  cuda::CUfunction function = nullptr;
  if (result == cuda::CUDA_SUCCESS) {
    result = driver.cuModuleGetFunction(&function, module, block_move_kernel_name);
    if (result != cuda::CUDA_SUCCESS) (void)driver.cuModuleUnload(module);
  }
  if (result != cuda::CUDA_SUCCESS) {
    log_warning(
        "the copy kernel cannot run on this GPU (%s): small copies use the copy "
        "engines, one call each, which is slower under load",
        driver.describe(result).c_str());
    return nullptr;
  }
  return std::unique_ptr<CopyKernel>(new CopyKernel(context, module, function));
}

CopyKernel::~CopyKernel() {
  (void)context_->bind_current_thread();
  (void)context_->driver().cuModuleUnload(module_);
}

cuda::Status CopyKernel::launch(cuda::CUdeviceptr table, unsigned count,
                                cuda::CUstream stream) const noexcept {
  void* parameters[] = {&table};
  return context_->driver().cuLaunchKernel(function_, count, 1, 1, block_move_threads, 1, 1, 0,
                                           stream, parameters, nullptr);
}

}  // namespace vramswap::store
