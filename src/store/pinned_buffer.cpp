#include "store/pinned_buffer.hpp"

#include <utility>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"

namespace vramswap::store {

PinnedBuffer::PinnedBuffer(const cuda::Context& context, size_t bytes, unsigned int flags)
    : context_(&context), size_(bytes) {
  void* pointer = nullptr;
  const cuda::CUresult result = context.driver().cuMemHostAlloc(&pointer, bytes, flags);
  if (result != cuda::CUDA_SUCCESS) {
    std::string message = "cannot pin " + format_byte_size(bytes) +
                          " of host memory for staging: cuMemHostAlloc returned " +
                          context.driver().describe(result);
    message += result == cuda::CUDA_ERROR_INVALID_CONTEXT
                   ? " (this thread has no CUDA context: call Context::bind_current_thread())"
                   : "; free host memory or lower `connections`";
    throw StartupError(exit_code::unavailable, message);
  }
  data_ = static_cast<std::byte*>(pointer);
}

PinnedBuffer::~PinnedBuffer() {
  release();
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    release();
    context_ = std::exchange(other.context_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void PinnedBuffer::release() noexcept {
  if (!data_) return;
  // The destroying thread may not be one that bound the context.
  (void)context_->bind_current_thread();
  (void)context_->driver().cuMemFreeHost(data_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace vramswap::store
