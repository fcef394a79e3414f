#pragma once

#include <cstddef>
#include <cstdint>

#include <memory>
#include <vector>

#include "cuda/error.hpp"
#include "store/move_table.hpp"
#include "store/vram_store.hpp"

namespace vramswap::store {

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
// it. A payload received in many pieces into one
// staging buffer, or reads staged back to back, then cost one copy call
// instead of one per piece. write() and read() themselves only refuse bad
// arguments: a copy the driver refuses comes back from flush() and
// synchronize(), like every asynchronous error.
//
// A failed copy call costs only the copies whose data did not land. Each
// write() and read() names whose copy it is (`tag`, any pointer of the
// caller's), and the stream keeps, for the round, which part of which call
// carries which tag's bytes. A call that fails queues nothing, so one that
// carried the parts of several tags (a coalesced copy, or the copy kernel's
// launch) is redone at once, one DMA call per part, and only a part whose own
// call fails again is lost; a call that carried a single part was already
// that part's own, and it is lost. synchronize(lost) names the lost tags.
// Only a failed wait or a sticky error (the GPU context is gone), after which
// nobody can tell what ran, loses every copy of the round.
// Buffers must be pinned (PinnedBuffer) for the copies to be asynchronous and
// fast. The hot path: these calls allocate nothing, log nothing, take no lock
// of ours. Errors come back as a Status (is it sticky? see cuda::is_sticky);
// the caller decides what to log, rate-limited.
//
// Offsets are export offsets (0 .. store.size()). A range outside the export
// returns CUDA_ERROR_INVALID_VALUE and touches nothing: callers validate
// requests first, this is defence in depth.
//
// With a copy kernel, copies smaller than dma_copy_bytes between VRAM and
// buffers given to map() are not queued at once but collected, and
// synchronize() sends them as one kernel launch (or, if only one, as one DMA
// copy): many small copies then cost one driver call instead of one each.
// Their errors, like every asynchronous error, come back from synchronize().
class CopyStream {
 public:
  // Creates a non-blocking stream in the store's context; the calling thread
  // must be bound. Throws StartupError(unavailable) on failure. `copy_kernel`
  // (optional, shared) collects up to `max_moves` small copies per sync.
  // `max_parts`: how many tagged parts a round records (see above); a failed
  // call that carried parts beyond them loses the whole round.
  explicit CopyStream(const VramStore& store, const CopyKernel* copy_kernel = nullptr,
                      size_t max_moves = 16384, size_t max_parts = 16384);
  // Lets small copies to and from `buffer` (registered with
  // CU_MEMHOSTREGISTER_DEVICEMAP) go through the copy kernel. False, and they
  // use DMA, without a kernel or if the driver cannot map it.
  bool map(const PinnedBuffer& buffer);
  // Destroys the stream; work still queued completes first (as in CUDA).
  ~CopyStream();
  CopyStream(CopyStream&& other) noexcept;
  CopyStream& operator=(CopyStream&& other) noexcept;
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;

  // Queues host -> VRAM: export bytes [export_offset, +len) = pinned_src[0, len).
  // `tag` (any pointer of the caller's) names whose copy it is, for the
  // synchronize() that reports lost copies.
  cuda::Status write(uint64_t export_offset, const void* pinned_src, size_t len,
                     void* tag = nullptr) noexcept;
  // Queues VRAM -> host: pinned_dst[0, len) = export bytes [export_offset, +len).
  cuda::Status read(void* pinned_dst, uint64_t export_offset, size_t len,
                    void* tag = nullptr) noexcept;
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
  // Waits until everything queued so far has completed; the first error of
  // any copy call this round (even one whose parts were redone and landed)
  // is returned here.
  cuda::Status synchronize() noexcept;

  // What a round's synchronize(lost) found.
  struct Outcome {
    cuda::Status error;         // the first failure met; ok if none
    unsigned failed_calls = 0;  // driver calls that failed: sends, launches, redone parts, a wait
    bool all_lost = false;      // which copies landed is unknown: count every one as failed
  };
  // Waits like synchronize(), then calls lost(tag) for each tag (not null)
  // with a part that did not land (once per part: a tag may be named more
  // than once). Nothing is named when all_lost.
  Outcome synchronize(void (*lost)(void* tag)) noexcept;

  cuda::CUstream handle() const noexcept { return stream_; }

  // Before the context is released (Context::release()): waits for what is
  // queued, then destroys the stream and detaches the move table; copies
  // answer CUDA_ERROR_INVALID_CONTEXT until attach() creates a stream again
  // in the retained context (the mapped buffers must be attached first).
  cuda::Status detach() noexcept;
  cuda::Status attach() noexcept;

 private:
  void destroy() noexcept;

  // One copy not queued yet, so that the next may join it (see above).
  struct HeldCopy {
    std::byte* host = nullptr;
    cuda::CUdeviceptr device = 0;
    uint64_t bytes = 0;
    bool to_device = false;
    size_t first_part = 0;    // its parts are parts_[first_part, part_count)
    bool unrecorded = false;  // some of its bytes are in no part (parts_ was full)
  };
  // One tag's bytes in one copy call: what is redone, or lost, when the call fails.
  struct Part {
    void* tag;
    std::byte* host;
    cuda::CUdeviceptr device;
    uint64_t bytes;
    bool to_device;
    bool batched;  // sent in the move table (its fate is the launch's)
    bool lost;     // its data did not land
  };
  // What this round has queued and what failed of it; reset by synchronize().
  struct Round {
    HeldCopy held;
    size_t part_count = 0;
    bool batched_unrecorded = false;  // the move table holds bytes that are in no part
    bool flushed = false;             // the move table is on the GPU: only synchronize() may follow
    bool any_lost = false;
    bool all_lost = false;
    unsigned failed_calls = 0;
    cuda::Status error;  // the first failed call's
  };

  void hold(std::byte* host, cuda::CUdeviceptr device, uint64_t bytes, bool to_device,
            void* tag) noexcept;
  void record_part(void* tag, std::byte* host, cuda::CUdeviceptr device, uint64_t bytes,
                   bool to_device, bool joins_held) noexcept;
  void send_held() noexcept;
  void submit_moves() noexcept;
  void call_failed(cuda::Status status, size_t first_part, size_t end_part,
                   bool unrecorded) noexcept;
  void redo(Part& part) noexcept;
  void lose(Part& part) noexcept;
  void note_failure(cuda::Status status) noexcept;
  cuda::Status copy_by_dma(const Part& part) const noexcept;

  const VramStore* store_ = nullptr;
  cuda::CUstream stream_ = nullptr;
  std::unique_ptr<MoveTable> moves_;
  std::vector<Part> parts_;  // capacity max_parts, allocated once
  Round round_;
};

}  // namespace vramswap::store
