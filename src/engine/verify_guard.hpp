#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/connection.hpp"
#include "engine/health.hpp"
#include "store/block_checksums.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"

namespace vramswap::cuda {
class Context;
}

namespace vramswap::engine {

// The `verify = yes` part of a worker: checksums recorded as write payloads
// arrive, writes held in flight on their blocks until their copies land, and
// read data checked against the checksums before it is sent. With verify
// off (no checksums) every call is a no-op and staging keeps no block rule.
class VerifyGuard {
 public:
  static constexpr uint32_t block_bytes = store::BlockChecksums::block_bytes;

  // `checksums` null: verify = no. The stream is the worker's, used only for
  // the rare re-read of a block that failed its check (between rounds).
  VerifyGuard(store::BlockChecksums* checksums, cuda::Context& cuda, store::CopyStream& stream,
              Health& health);

  bool enabled() const noexcept { return checksums_ != nullptr; }

  // A write or zero-fill counts as in flight on its blocks from before its
  // checksums are recorded until its copies have landed.
  void hold(Reply& reply, uint64_t offset, uint32_t length) noexcept;
  void release(Reply& reply) noexcept;

  // The next bytes of the connection's write payload (at payload_offset).
  // Recorded whether or not the copy succeeds: a block whose copy failed
  // then fails its check on read instead of returning old data.
  void absorb(Connection& connection, const std::byte* data, size_t length) noexcept;
  void record_zeroes(uint64_t offset, uint64_t length) noexcept;

  // Checksums cover whole blocks: a staged copy starts at the block boundary
  // at or before `from` (this many bytes earlier), and a piece that is not
  // the read's last ends at a boundary (the piece, shortened).
  uint32_t head_before(uint64_t from) const noexcept;
  size_t whole_blocks(uint64_t from, size_t piece, size_t left) const noexcept;

  // Read data staged this round must match the checksums of its blocks;
  // false when a block stays wrong (reported to Health): the read must fail
  // rather than hand out wrong data.
  bool staged_read_intact(Reply& reply) noexcept;

  // The re-read buffer's registration, around a release of the context.
  cuda::Status detach() noexcept { return recheck_buffer_.detach(); }
  cuda::Status attach() noexcept { return recheck_buffer_.attach(); }

 private:
  bool reread_until_consistent(uint64_t offset, std::byte* block) noexcept;

  store::BlockChecksums* checksums_;
  store::CopyStream& stream_;
  Health& health_;
  store::PinnedBuffer recheck_buffer_;  // one block read again
};

}  // namespace vramswap::engine
