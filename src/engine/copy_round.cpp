#include "engine/copy_round.hpp"

namespace vramswap::engine {

void CopyRound::begin() noexcept {
  queued_ = 0;
  first_error_ = cuda::Status();
  failed_calls_ = failed_requests_ = 0;
}

void CopyRound::read(Reply& reply, std::byte* pinned_dst, uint64_t export_offset,
                     size_t length) noexcept {
  queued(reply, stream_.read(pinned_dst, export_offset, length, &reply));
}

void CopyRound::write(Reply& reply, uint64_t export_offset, const std::byte* pinned_src,
                      size_t length) noexcept {
  queued(reply, stream_.write(export_offset, pinned_src, length, &reply));
}

void CopyRound::zero(Reply& reply, uint64_t export_offset, uint64_t length) noexcept {
  queued(reply, stream_.zero(export_offset, length));
}

void CopyRound::flush() noexcept {
  // An error here comes back from synchronize() too.
  (void)stream_.flush();
}

bool CopyRound::synchronize() noexcept {
  // A copy that did not land names its reply (the tag of its copy).
  const auto outcome =
      stream_.synchronize([](void* tag) { static_cast<Reply*>(tag)->copy_failed = true; });
  if (outcome.failed_calls > 0) calls_failed(outcome.error, outcome.failed_calls);
  return outcome.all_lost;
}

// Queued, or refused at once: either way the round's end decides the
// request, once every copy of the round has landed or not.
void CopyRound::queued(Reply& reply, cuda::Status status) noexcept {
  ++queued_;
  reply.copy_pending = true;
  if (status.ok()) return;
  reply.copy_failed = true;
  calls_failed(status, 1);
}

void CopyRound::calls_failed(cuda::Status status, unsigned calls) noexcept {
  if (failed_calls_ == 0) first_error_ = status;
  failed_calls_ += calls;
}

}  // namespace vramswap::engine
