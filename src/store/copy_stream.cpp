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

bool CopyStream::map(const PinnedBuffer& buffer) {
  return moves_ && moves_->map(buffer);
}

CopyStream::~CopyStream() {
  destroy();
}

CopyStream::CopyStream(CopyStream&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      stream_(std::exchange(other.stream_, nullptr)),
      moves_(std::move(other.moves_)),
      held_(std::exchange(other.held_, HeldCopy{})),
      queue_status_(std::exchange(other.queue_status_, Status())),
      flushed_(std::exchange(other.flushed_, false)),
      flush_status_(std::exchange(other.flush_status_, Status())) {}

CopyStream& CopyStream::operator=(CopyStream&& other) noexcept {
  if (this != &other) {
    destroy();
    store_ = std::exchange(other.store_, nullptr);
    stream_ = std::exchange(other.stream_, nullptr);
    moves_ = std::move(other.moves_);
    held_ = std::exchange(other.held_, HeldCopy{});
    queue_status_ = std::exchange(other.queue_status_, Status());
    flushed_ = std::exchange(other.flushed_, false);
    flush_status_ = std::exchange(other.flush_status_, Status());
  }
  return *this;
}

void CopyStream::destroy() noexcept {
  if (!stream_) return;
  (void)store_->context().bind_current_thread();
  send_held();  // as documented: work queued before destruction completes
  (void)store_->context().driver().cuStreamDestroy(stream_);
  stream_ = nullptr;
}

Status CopyStream::write(uint64_t export_offset, const void* pinned_src, size_t len) noexcept {
  if (pinned_src == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  auto* source = const_cast<std::byte*>(static_cast<const std::byte*>(pinned_src));
  hold(source, store_->base() + export_offset, len, /*to_device=*/true);
  return Status();
}

Status CopyStream::read(void* pinned_dst, uint64_t export_offset, size_t len) noexcept {
  if (pinned_dst == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  hold(static_cast<std::byte*>(pinned_dst), store_->base() + export_offset, len,
       /*to_device=*/false);
  return Status();
}

// A copy that continues the held one, in the same direction, on both sides,
// joins it (the export is one range of device addresses, so any two adjacent
// pieces of it can be one copy); anything else sends the held copy on its way
// and is held instead.
void CopyStream::hold(std::byte* host, CUdeviceptr device, uint64_t bytes,
                      bool to_device) noexcept {
  if (held_.bytes > 0 && held_.to_device == to_device && held_.host + held_.bytes == host &&
      held_.device + held_.bytes == device) {
    held_.bytes += bytes;
    return;
  }
  send_held();
  held_ = HeldCopy{host, device, bytes, to_device};
}

// Queues the held copy: in the copy kernel's table when it is small enough,
// else by DMA. A failure to queue it is an asynchronous error of the round.
void CopyStream::send_held() noexcept {
  if (held_.bytes == 0) return;
  const HeldCopy copy = std::exchange(held_, HeldCopy{});
  if (moves_ && moves_->add(copy.host, copy.device, copy.bytes, copy.to_device)) return;
  const cuda::Driver& driver = store_->context().driver();
  const Status status(copy.to_device
                          ? driver.cuMemcpyHtoDAsync(copy.device, copy.host, copy.bytes, stream_)
                          : driver.cuMemcpyDtoHAsync(copy.host, copy.device, copy.bytes, stream_));
  if (!status.ok() && queue_status_.ok()) queue_status_ = status;
}

Status CopyStream::zero(uint64_t export_offset, uint64_t len) noexcept {
  send_held();  // in order: a zero-fill after a write of the same bytes wins
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  return store_->context().driver().cuMemsetD8Async(store_->base() + export_offset, 0, len,
                                                    stream_);
}

Status CopyStream::flush() noexcept {
  if (flushed_) return flush_status_;
  flushed_ = true;
  send_held();
  flush_status_ = std::exchange(queue_status_, Status());
  if (moves_) {
    const Status submitted = moves_->submit(stream_);
    if (flush_status_.ok()) flush_status_ = submitted;
  }
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

}  // namespace vramswap
