#include "store/copy_stream.hpp"

#include <string>
#include <utility>

#include "common/startup_error.hpp"

namespace vramswap {

using cuda::CUdeviceptr;
using cuda::Status;

CopyStream::CopyStream(const VramStore& store, const CopyKernel* kernel, size_t max_moves)
    : store_(&store) {
  const cuda::Driver& driver = store.context().driver();
  const cuda::CUresult result = driver.cuStreamCreate(&stream_, cuda::CU_STREAM_NON_BLOCKING);
  if (result != cuda::CUDA_SUCCESS) {
    stream_ = nullptr;
    std::string message = "cannot create a CUDA stream on GPU " +
                          std::to_string(store.context().device_index()) +
                          ": cuStreamCreate returned " + driver.describe(result);
    message += result == cuda::CUDA_ERROR_INVALID_CONTEXT
                   ? " (this thread has no CUDA context: call Context::bind_current_thread())"
                   : "; check that nvidia-smi works and dmesg for GPU errors";
    throw StartupError(exit_code::unavailable, message);
  }
  if (kernel) moves_ = std::make_unique<MoveTable>(store.context(), *kernel, max_moves);
}

bool CopyStream::map(const PinnedBuffer& buffer) { return moves_ && moves_->map(buffer); }

CopyStream::~CopyStream() {
  destroy();
}

CopyStream::CopyStream(CopyStream&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      stream_(std::exchange(other.stream_, nullptr)),
      moves_(std::move(other.moves_)),
      flushed_(std::exchange(other.flushed_, false)),
      flush_status_(std::exchange(other.flush_status_, Status())) {}

CopyStream& CopyStream::operator=(CopyStream&& other) noexcept {
  if (this != &other) {
    destroy();
    store_ = std::exchange(other.store_, nullptr);
    stream_ = std::exchange(other.stream_, nullptr);
    moves_ = std::move(other.moves_);
    flushed_ = std::exchange(other.flushed_, false);
    flush_status_ = std::exchange(other.flush_status_, Status());
  }
  return *this;
}

void CopyStream::destroy() noexcept {
  if (!stream_) return;
  (void)store_->context().bind_current_thread();
  (void)store_->context().driver().cuStreamDestroy(stream_);
  stream_ = nullptr;
}

Status CopyStream::write(uint64_t export_offset, const void* pinned_src, size_t len,
                         void* tag) noexcept {
  if (pinned_src == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  const auto* source = static_cast<const std::byte*>(pinned_src);
  const auto copy = store_->context().driver().cuMemcpyHtoDAsync;
  return store_->for_each_extent(
      export_offset, len, [&](CUdeviceptr device_ptr, uint64_t bytes, uint64_t done) {
        auto* host = const_cast<std::byte*>(source + done);
        if (moves_ && moves_->add(host, device_ptr, bytes, /*to_device=*/true, tag)) {
          return Status();
        }
        return Status(copy(device_ptr, host, bytes, stream_));
      });
}

Status CopyStream::read(void* pinned_dst, uint64_t export_offset, size_t len, void* tag) noexcept {
  if (pinned_dst == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  auto* destination = static_cast<std::byte*>(pinned_dst);
  const auto copy = store_->context().driver().cuMemcpyDtoHAsync;
  return store_->for_each_extent(
      export_offset, len, [&](CUdeviceptr device_ptr, uint64_t bytes, uint64_t done) {
        if (moves_ &&
            moves_->add(destination + done, device_ptr, bytes, /*to_device=*/false, tag)) {
          return Status();
        }
        return Status(copy(destination + done, device_ptr, bytes, stream_));
      });
}

Status CopyStream::zero(uint64_t export_offset, uint64_t len) noexcept {
  const auto memset = store_->context().driver().cuMemsetD8Async;
  return store_->for_each_extent(export_offset, len,
                                 [&](CUdeviceptr device_ptr, uint64_t bytes, uint64_t) {
                                   return Status(memset(device_ptr, 0, bytes, stream_));
                                 });
}

Status CopyStream::flush() noexcept {
  if (flushed_) return flush_status_;
  flushed_ = true;
  flush_status_ = moves_ ? moves_->submit(stream_) : Status();
  return flush_status_;
}

bool CopyStream::busy() const noexcept {
  return store_->context().driver().cuStreamQuery(stream_) == cuda::CUDA_ERROR_NOT_READY;
}

Status CopyStream::synchronize() noexcept {
  const Status submitted = flush();
  // Wait even if the launch failed: copies queued by DMA must finish before
  // their buffers are reused.
  const Status synchronized = store_->context().driver().cuStreamSynchronize(stream_);
  if (moves_) moves_->clear();
  flushed_ = false;
  flush_status_ = Status();
  return submitted.ok() ? synchronized : submitted;
}

CopyStream::Outcome CopyStream::synchronize(void (*lost)(void* tag)) noexcept {
  const Status submitted = flush();
  const cuda::Driver& driver = store_->context().driver();
  Status synchronized = driver.cuStreamSynchronize(stream_);
  Outcome outcome;
  if (!submitted.ok()) {
    outcome.error = submitted;
    ++outcome.failed_calls;
    if (synchronized.ok() && !submitted.sticky()) {
      outcome.failed_calls += moves_->redo(stream_, lost);
      synchronized = driver.cuStreamSynchronize(stream_);
    } else {
      outcome.all_lost = true;
    }
  }
  if (!synchronized.ok()) {
    if (outcome.error.ok()) outcome.error = synchronized;
    ++outcome.failed_calls;
    outcome.all_lost = true;
  }
  if (moves_) moves_->clear();
  flushed_ = false;
  flush_status_ = Status();
  return outcome;
}

}  // namespace vramswap
