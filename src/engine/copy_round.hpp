#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/error.hpp"
#include "engine/connection.hpp"
#include "store/copy_stream.hpp"

namespace vramswap::engine {

// One worker's copies between its pinned arenas and VRAM, a round at a time:
// every copy is queued for a reply (its tag), and the round's one sync marks
// the replies whose copies did not land (Reply::copy_failed). It also keeps
// the round's failures for the one log line and the counters at its end.
// The parts of a worker queue through it; none of them waits for the GPU.
class CopyRound {
 public:
  explicit CopyRound(store::CopyStream& stream) noexcept : stream_(stream) {}

  // A new round: nothing queued, no failure.
  void begin() noexcept;

  // Queue a copy for `reply` (read data into the send arena, a write payload
  // from the receive arena, a zero-fill). A copy the driver refused at once
  // marks the reply now; either way the sync decides it.
  void read(Reply& reply, std::byte* pinned_dst, uint64_t export_offset, size_t length) noexcept;
  void write(Reply& reply, uint64_t export_offset, const std::byte* pinned_src,
             size_t length) noexcept;
  void zero(Reply& reply, uint64_t export_offset, uint64_t length) noexcept;

  bool any_queued() const noexcept { return queued_ > 0; }
  // Sends the queued copies on their way without waiting (see CopyStream::flush).
  void flush() noexcept;
  // After flush(): true while the GPU is still copying.
  bool busy() const noexcept { return stream_.busy(); }
  // Waits for the round's copies; marks each reply whose copy did not land.
  // True when the driver cannot say which landed: every copy counts as lost.
  bool synchronize() noexcept;

  // A request of this round lost its data (for the round's log line).
  void request_failed() noexcept { ++failed_requests_; }
  unsigned failed_calls() const noexcept { return failed_calls_; }
  unsigned failed_requests() const noexcept { return failed_requests_; }
  const cuda::Status& first_error() const noexcept { return first_error_; }

 private:
  void queued(Reply& reply, cuda::Status status) noexcept;
  void calls_failed(cuda::Status status, unsigned calls) noexcept;

  store::CopyStream& stream_;
  unsigned queued_ = 0;
  cuda::Status first_error_;
  unsigned failed_calls_ = 0;
  unsigned failed_requests_ = 0;
};

}  // namespace vramswap::engine
