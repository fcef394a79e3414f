#include "cuda/context.hpp"

#include "common/startup_error.hpp"

namespace vramswap::cuda {
namespace {

[[noreturn]] void throw_context_error(const Driver& driver, int index, const char* call,
                                      CUresult result) {
  std::string message = "cannot use GPU " + std::to_string(index) + ": " + call + " returned " +
                        driver.describe(result);
  if (result == CUDA_ERROR_DEVICE_UNAVAILABLE) {
    message +=
        "; the GPU's compute mode forbids it or another program holds it exclusively "
        "(nvidia-smi -q -d COMPUTE shows the mode)";
  } else {
    message += "; check that nvidia-smi works and dmesg for GPU errors";
  }
  throw StartupError(exit_code::unavailable, message);
}

}  // namespace

Context::Context(const Driver& driver, int device_index)
    : driver_(&driver), device_index_(device_index) {
  CUresult result = driver.cuDeviceGet(&device_, device_index);
  if (result != CUDA_SUCCESS) throw_context_error(driver, device_index, "cuDeviceGet", result);
  result = driver.cuDevicePrimaryCtxRetain(&context_, device_);
  if (result != CUDA_SUCCESS) {
    throw_context_error(driver, device_index, "cuDevicePrimaryCtxRetain", result);
  }
  result = driver.cuCtxSetCurrent(context_);
  if (result != CUDA_SUCCESS) {
    (void)driver.cuDevicePrimaryCtxRelease(device_);
    throw_context_error(driver, device_index, "cuCtxSetCurrent", result);
  }
  retained_ = true;
}

Context::~Context() {
  (void)release();
}

Status Context::release() noexcept {
  if (!retained_) return Status();
  retained_ = false;
  // Leave no thread pointing at a context about to be reset (only this one
  // can be reached from here; the others are gone, done or detached).
  (void)driver_->cuCtxSetCurrent(nullptr);
  return driver_->cuDevicePrimaryCtxRelease(device_);
}

Status Context::retain() noexcept {
  if (retained_) return Status();
  CUcontext context = nullptr;
  if (const CUresult result = driver_->cuDevicePrimaryCtxRetain(&context, device_);
      result != CUDA_SUCCESS) {
    return result;
  }
  if (const CUresult result = driver_->cuCtxSetCurrent(context); result != CUDA_SUCCESS) {
    (void)driver_->cuDevicePrimaryCtxRelease(device_);
    return result;
  }
  context_ = context;
  retained_ = true;
  return Status();
}

Status Context::bind_current_thread() const noexcept {
  return driver_->cuCtxSetCurrent(context_);
}

MemoryInfo Context::memory_info() const {
  CUresult result = driver_->cuCtxSetCurrent(context_);
  if (result != CUDA_SUCCESS)
    throw_context_error(*driver_, device_index_, "cuCtxSetCurrent", result);
  size_t free_bytes = 0, total_bytes = 0;
  result = driver_->cuMemGetInfo(&free_bytes, &total_bytes);
  if (result != CUDA_SUCCESS) throw_context_error(*driver_, device_index_, "cuMemGetInfo", result);
  return {free_bytes, total_bytes};
}

}  // namespace vramswap::cuda
