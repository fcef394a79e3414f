#include "store/copy_stream.hpp"

#include <string>
#include <utility>

#include "common/startup_error.hpp"

namespace vramswap::store {

using cuda::CUdeviceptr;
using cuda::Status;

CopyStream::CopyStream(const VramStore& store, const CopyKernel* copy_kernel, size_t max_moves,
                       size_t max_parts)
    : store_(&store), parts_(max_parts) {
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
  if (copy_kernel) moves_ = std::make_unique<MoveTable>(store.context(), *copy_kernel, max_moves);
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
      parts_(std::move(other.parts_)),
      round_(std::exchange(other.round_, Round{})) {}

CopyStream& CopyStream::operator=(CopyStream&& other) noexcept {
  if (this != &other) {
    destroy();
    store_ = std::exchange(other.store_, nullptr);
    stream_ = std::exchange(other.stream_, nullptr);
    moves_ = std::move(other.moves_);
    parts_ = std::move(other.parts_);
    round_ = std::exchange(other.round_, Round{});
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

Status CopyStream::detach() noexcept {
  if (!stream_) return Status();
  Status first = synchronize();
  if (moves_) {
    if (const Status detached = moves_->detach(); first.ok()) first = detached;
  }
  if (const Status destroyed = store_->context().driver().cuStreamDestroy(stream_); first.ok()) {
    first = destroyed;
  }
  stream_ = nullptr;
  return first;
}

Status CopyStream::attach() noexcept {
  if (stream_) return Status();
  const cuda::Driver& driver = store_->context().driver();
  cuda::CUstream stream = nullptr;
  if (const Status created = driver.cuStreamCreate(&stream, cuda::CU_STREAM_NON_BLOCKING);
      !created.ok()) {
    return created;
  }
  stream_ = stream;
  return moves_ ? moves_->attach() : Status();
}

Status CopyStream::write(uint64_t export_offset, const void* pinned_src, size_t len,
                         void* tag) noexcept {
  if (!stream_) return cuda::CUDA_ERROR_INVALID_CONTEXT;
  if (pinned_src == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  auto* source = const_cast<std::byte*>(static_cast<const std::byte*>(pinned_src));
  hold(source, store_->base() + export_offset, len, /*to_device=*/true, tag);
  return Status();
}

Status CopyStream::read(void* pinned_dst, uint64_t export_offset, size_t len, void* tag) noexcept {
  if (!stream_) return cuda::CUDA_ERROR_INVALID_CONTEXT;
  if (pinned_dst == nullptr && len != 0) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  hold(static_cast<std::byte*>(pinned_dst), store_->base() + export_offset, len,
       /*to_device=*/false, tag);
  return Status();
}

// A copy that continues the held one, in the same direction, on both sides,
// joins it (the export is one range of device addresses, so any two adjacent
// pieces of it can be one copy); anything else sends the held copy on its way
// and is held instead.
void CopyStream::hold(std::byte* host, CUdeviceptr device, uint64_t bytes, bool to_device,
                      void* tag) noexcept {
  HeldCopy& held = round_.held;
  if (held.bytes > 0 && held.to_device == to_device && held.host + held.bytes == host &&
      held.device + held.bytes == device) {
    held.bytes += bytes;
    record_part(tag, host, device, bytes, to_device, /*joins_held=*/true);
    return;
  }
  send_held();
  held = HeldCopy{host, device, bytes, to_device, round_.part_count, false};
  record_part(tag, host, device, bytes, to_device, /*joins_held=*/false);
}

// Bytes of the same tag that continue the held copy's last part extend it:
// one part per tag per call.
void CopyStream::record_part(void* tag, std::byte* host, CUdeviceptr device, uint64_t bytes,
                             bool to_device, bool joins_held) noexcept {
  if (joins_held && round_.part_count > round_.held.first_part &&
      parts_[round_.part_count - 1].tag == tag) {
    parts_[round_.part_count - 1].bytes += bytes;
    return;
  }
  if (round_.part_count == parts_.size()) {
    round_.held.unrecorded = true;
    return;
  }
  parts_[round_.part_count++] = Part{tag, host, device, bytes, to_device, false, false};
}

// Queues the held copy: in the copy kernel's table when it is small enough,
// else by DMA.
void CopyStream::send_held() noexcept {
  if (round_.held.bytes == 0) return;
  const HeldCopy copy = std::exchange(round_.held, HeldCopy{});
  if (moves_ && moves_->add(copy.host, copy.device, copy.bytes, copy.to_device)) {
    for (size_t i = copy.first_part; i < round_.part_count; ++i)
      parts_[i].batched = true;
    round_.batched_unrecorded |= copy.unrecorded;
    return;
  }
  const cuda::Driver& driver = store_->context().driver();
  const Status status(copy.to_device
                          ? driver.cuMemcpyHtoDAsync(copy.device, copy.host, copy.bytes, stream_)
                          : driver.cuMemcpyDtoHAsync(copy.host, copy.device, copy.bytes, stream_));
  if (!status.ok()) call_failed(status, copy.first_part, round_.part_count, copy.unrecorded);
}

// The move table goes as one launch (or one DMA copy if it holds one move).
// Its parts are not contiguous in the round's record when DMA copies came
// between them: gathered by their mark.
void CopyStream::submit_moves() noexcept {
  if (!moves_ || moves_->size() == 0) return;
  const Status status = moves_->submit(stream_);
  if (status.ok()) return;
  size_t batched = 0, only = 0;
  for (size_t i = 0; i < round_.part_count; ++i) {
    if (parts_[i].batched) {
      ++batched;
      only = i;
    }
  }
  if (batched == 1) {
    call_failed(status, only, only + 1, round_.batched_unrecorded);
    return;
  }
  note_failure(status);
  if (status.sticky() || round_.batched_unrecorded) {
    round_.all_lost = true;
    return;
  }
  for (size_t i = 0; i < round_.part_count; ++i) {
    if (parts_[i].batched) redo(parts_[i]);
  }
}

// A call that carried parts_[first_part, end_part) failed, and queued
// nothing. A lone part is lost (the call was its own); several are redone
// one call each, so that each lands or fails on its own.
void CopyStream::call_failed(Status status, size_t first_part, size_t end_part,
                             bool unrecorded) noexcept {
  note_failure(status);
  if (status.sticky() || unrecorded) {
    round_.all_lost = true;
  } else if (end_part - first_part == 1) {
    lose(parts_[first_part]);
  } else {
    for (size_t i = first_part; i < end_part; ++i)
      redo(parts_[i]);
  }
}

// Queues one part again as its own DMA call. Once the GPU is gone (a sticky
// error), redoing is pointless: the round is lost anyway.
void CopyStream::redo(Part& part) noexcept {
  if (round_.all_lost) return;
  const Status status = copy_by_dma(part);
  if (status.ok()) return;
  note_failure(status);
  if (status.sticky()) round_.all_lost = true;
  lose(part);
}

void CopyStream::lose(Part& part) noexcept {
  part.lost = true;
  round_.any_lost = true;
}

void CopyStream::note_failure(Status status) noexcept {
  if (round_.failed_calls++ == 0) round_.error = status;
}

Status CopyStream::copy_by_dma(const Part& part) const noexcept {
  const cuda::Driver& driver = store_->context().driver();
  return part.to_device ? driver.cuMemcpyHtoDAsync(part.device, part.host, part.bytes, stream_)
                        : driver.cuMemcpyDtoHAsync(part.host, part.device, part.bytes, stream_);
}

Status CopyStream::zero(uint64_t export_offset, uint64_t len) noexcept {
  if (!stream_) return cuda::CUDA_ERROR_INVALID_CONTEXT;
  send_held();  // in order: a zero-fill after a write of the same bytes wins
  if (!store_->contains(export_offset, len)) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (len == 0) return Status();
  return store_->context().driver().cuMemsetD8Async(store_->base() + export_offset, 0, len,
                                                    stream_);
}

Status CopyStream::flush() noexcept {
  if (!round_.flushed) {
    round_.flushed = true;
    send_held();
    submit_moves();
  }
  return round_.error;
}

bool CopyStream::busy() const noexcept {
  return store_->context().driver().cuStreamQuery(stream_) == cuda::CUDA_ERROR_NOT_READY;
}

Status CopyStream::synchronize() noexcept {
  return synchronize(nullptr).error;
}

CopyStream::Outcome CopyStream::synchronize(void (*lost)(void* tag)) noexcept {
  (void)flush();
  // Wait even if a call failed: copies queued before it must finish before
  // their buffers are reused.
  const Status synchronized = store_->context().driver().cuStreamSynchronize(stream_);
  if (!synchronized.ok()) {
    note_failure(synchronized);
    round_.all_lost = true;
  }
  if (lost && round_.any_lost && !round_.all_lost) {
    for (size_t i = 0; i < round_.part_count; ++i) {
      if (parts_[i].lost && parts_[i].tag) lost(parts_[i].tag);
    }
  }
  const Outcome outcome{round_.error, round_.failed_calls, round_.all_lost};
  if (moves_) moves_->clear();
  round_ = Round{};
  return outcome;
}

}  // namespace vramswap::store
