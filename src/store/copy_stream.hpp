#pragma once

#include <cstddef>
#include <cstdint>

#include <memory>

#include "cuda/error.hpp"
#include "store/move_table.hpp"
#include "store/vram_store.hpp"

namespace vramswap {

// One CUDA stream and the copies a worker thread queues on it.
//
// One per worker thread: a stream is an ordered queue, so workers sharing one
// would wait on each other's copies. The thread using it must have called
// Context::bind_current_thread() (calls fail with CUDA_ERROR_INVALID_CONTEXT
// otherwise).
//
// Copies are asynchronous, like the driver's:
//   - after write() returns ok, `pinned_src` is still being read: do not
//     change or reuse it until synchronize() has returned;
//   - after read() returns ok, `pinned_dst` is not filled yet: it is valid
//     only once synchronize() has returned ok;
//   - a failed round may have queued some of its copies: still synchronize()
//     before reusing the buffer, and treat the whole round as failed.
//
// Fewer, larger copies: a write() or read() is held back until the next call
// that does not continue it, flush() or synchronize(), and a call whose host
// and VRAM ranges both continue the held copy's, in the same direction, joins
// it. A payload received in many pieces into one staging buffer, or reads
// staged back to back, then cost one copy call instead of one per piece. A
// held copy that the driver refuses to queue fails the round: its error
// comes back from flush() and synchronize(), like every asynchronous error
// (write() and read() themselves only refuse bad arguments).
// Buffers must be pinned (PinnedBuffer) for the copies to be asynchronous and
// fast. The hot path: these calls allocate nothing, log nothing, take no lock
// of ours. Errors come back as a Status (is it sticky? see cuda::is_sticky);
// the caller decides what to log, rate-limited.
//
// Offsets are export offsets (0 .. store.size()). A range outside the export
// returns CUDA_ERROR_INVALID_VALUE and touches nothing: callers validate
// requests first, this is defence in depth.
//
// With a copy kernel, copies smaller than kDmaCopyBytes between VRAM and
// buffers given to map() are not queued at once but collected, and
// synchronize() sends them as one kernel launch (or, if only one, as one DMA
// copy): many small copies then cost one driver call instead of one each.
// Their errors, like every asynchronous error, come back from synchronize().
class CopyStream {
 public:
  // Creates a non-blocking stream in the store's context; the calling thread
  // must be bound. Throws StartupError(unavailable) on failure. `kernel`
  // (optional, shared) collects up to `max_moves` small copies per sync.
  explicit CopyStream(const VramStore& store, const CopyKernel* kernel = nullptr,
                      size_t max_moves = 16384);
  // Lets small copies to and from `buffer` (allocated with
  // CU_MEMHOSTALLOC_DEVICEMAP) go through the copy kernel. False, and they
  // use DMA, without a kernel or if the driver cannot map it.
  bool map(const PinnedBuffer& buffer);
  // Destroys the stream; work still queued completes first (as in CUDA).
  ~CopyStream();
  CopyStream(CopyStream&& other) noexcept;
  CopyStream& operator=(CopyStream&& other) noexcept;
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;

  // Queues host -> VRAM: export bytes [export_offset, +len) = pinned_src[0, len).
  cuda::Status write(uint64_t export_offset, const void* pinned_src, size_t len) noexcept;
  // Queues VRAM -> host: pinned_dst[0, len) = export bytes [export_offset, +len).
  cuda::Status read(void* pinned_dst, uint64_t export_offset, size_t len) noexcept;
  // Queues zero-filling export bytes [export_offset, +len) (discard, write
  // zeroes).
  cuda::Status zero(uint64_t export_offset, uint64_t len) noexcept;
  // Sends the collected small copies on their way without waiting, so the
  // caller can do other work (receive the next payloads) while the GPU copies.
  // Nothing may be queued after it until synchronize(). An error is returned
  // here and again by synchronize().
  cuda::Status flush() noexcept;
  // After flush(): true while queued work has not completed; once false, it
  // has completed or failed (synchronize() says which) and its buffers are free.
  bool busy() const noexcept;
  // Waits until everything queued so far has completed; the first error of a
  // queued copy is returned here.
  cuda::Status synchronize() noexcept;

  cuda::CUstream handle() const noexcept { return stream_; }

 private:
  void destroy() noexcept;

  // One copy not queued yet, so that the next may join it (see above).
  struct HeldCopy {
    std::byte* host = nullptr;
    cuda::CUdeviceptr device = 0;
    uint64_t bytes = 0;
    bool to_device = false;
  };
  void hold(std::byte* host, cuda::CUdeviceptr device, uint64_t bytes, bool to_device) noexcept;
  void send_held() noexcept;

  const VramStore* store_ = nullptr;
  cuda::CUstream stream_ = nullptr;
  std::unique_ptr<MoveTable> moves_;
  HeldCopy held_;
  cuda::Status queue_status_;  // the first held copy the driver refused this round
  bool flushed_ = false;       // the move table is on the GPU: only synchronize() may follow
  cuda::Status flush_status_;
};

}  // namespace vramswap
