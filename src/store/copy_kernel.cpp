#include "store/copy_kernel.hpp"

#include "common/log.hpp"
#include "store/block_move.hpp"

namespace vramswap::store {

extern const char* const copy_kernel_ptx_text;  // copy_kernel_ptx.cpp, made from copy_kernel.ptx

cuda::CUresult CopyKernel::load_module(const cuda::Driver& driver, cuda::CUmodule* module,
                                       cuda::CUfunction* function) noexcept {
  cuda::CUresult result = driver.cuModuleLoadData(module, copy_kernel_ptx_text);
  if (result != cuda::CUDA_SUCCESS) return result;
  result = driver.cuModuleGetFunction(function, *module, block_move_kernel_name);
  if (result != cuda::CUDA_SUCCESS) {
    (void)driver.cuModuleUnload(*module);
    *module = nullptr;
    *function = nullptr;
  }
  return result;
}

std::unique_ptr<CopyKernel> CopyKernel::load(const cuda::Context& context) {
  const cuda::Driver& driver = context.driver();
  cuda::CUmodule module = nullptr;
  cuda::CUfunction function = nullptr;
  const cuda::CUresult result = load_module(driver, &module, &function);
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
  if (!module_) return;
  (void)context_->bind_current_thread();
  (void)detach();
}

cuda::Status CopyKernel::detach() noexcept {
  if (!module_) return cuda::Status();
  const cuda::Status unloaded = context_->driver().cuModuleUnload(module_);
  module_ = nullptr;
  function_ = nullptr;
  return unloaded;
}

cuda::Status CopyKernel::attach() noexcept {
  if (module_) return cuda::Status();
  return load_module(context_->driver(), &module_, &function_);
}

cuda::Status CopyKernel::launch(cuda::CUdeviceptr table, unsigned count,
                                cuda::CUstream stream) const noexcept {
  if (!function_) return cuda::CUDA_ERROR_INVALID_CONTEXT;
  void* parameters[] = {&table};
  return context_->driver().cuLaunchKernel(function_, count, 1, 1, block_move_threads, 1, 1, 0,
                                           stream, parameters, nullptr);
}

}  // namespace vramswap::store
