#include "store/pinned_buffer.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"

namespace vramswap::store {

PinnedBuffer::PinnedBuffer(const cuda::Context& context, size_t bytes, unsigned int flags)
    : context_(&context), size_(bytes), flags_(flags) {
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (memory == MAP_FAILED) {
    throw StartupError(exit_code::unavailable,
                       "cannot map " + format_byte_size(bytes) + " of host memory for staging: " +
                           std::strerror(errno) + "; free host memory or lower `connections`");
  }
  data_ = static_cast<std::byte*>(memory);
  const cuda::Status registered = attach();
  if (!registered.ok()) {
    munmap(data_, size_);
    data_ = nullptr;
    std::string message = "cannot pin " + format_byte_size(bytes) +
                          " of host memory for staging: cuMemHostRegister returned " +
                          context.driver().describe(registered.code());
    message += registered.code() == cuda::CUDA_ERROR_INVALID_CONTEXT
                   ? " (this thread has no CUDA context: call Context::bind_current_thread())"
                   : "; free host memory or lower `connections`";
    throw StartupError(exit_code::unavailable, message);
  }
}

PinnedBuffer::~PinnedBuffer() {
  release();
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      flags_(std::exchange(other.flags_, 0)),
      attached_(std::exchange(other.attached_, false)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    release();
    context_ = std::exchange(other.context_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    flags_ = std::exchange(other.flags_, 0);
    attached_ = std::exchange(other.attached_, false);
  }
  return *this;
}

cuda::Status PinnedBuffer::attach() noexcept {
  if (attached_ || !data_) return cuda::Status();
  const cuda::Status registered = context_->driver().cuMemHostRegister(data_, size_, flags_);
  attached_ = registered.ok();
  return registered;
}

cuda::Status PinnedBuffer::detach() noexcept {
  if (!attached_) return cuda::Status();
  attached_ = false;  // even when the driver refuses: its context is going away
  return context_->driver().cuMemHostUnregister(data_);
}

void PinnedBuffer::release() noexcept {
  if (!data_) return;
  if (attached_) {
    // The destroying thread may not be one that bound the context.
    (void)context_->bind_current_thread();
    (void)detach();
  }
  munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace vramswap::store
