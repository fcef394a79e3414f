#include "engine/verify_guard.hpp"

#include <time.h>

#include <cstring>
#include <optional>

#include "common/clock.hpp"
#include "cuda/context.hpp"

namespace vramswap::engine {
namespace {

// How long a block that fails its check is read again before it counts as
// corrupt (see reread_until_consistent), and how often.
constexpr int64_t recheck_window_ns = 250'000'000;
constexpr int64_t recheck_interval_ns = 500'000;

}  // namespace

VerifyGuard::VerifyGuard(store::BlockChecksums* checksums, cuda::Context& cuda,
                         store::CopyStream& stream, Health& health)
    : checksums_(checksums),
      stream_(stream),
      health_(health),
      recheck_buffer_(checksums ? store::PinnedBuffer(cuda, block_bytes) : store::PinnedBuffer()) {}

void VerifyGuard::hold(Reply& reply, uint64_t offset, uint32_t length) noexcept {
  if (!checksums_ || length == 0) return;
  checksums_->writes_begin(offset, length);
  reply.held_offset = offset;
  reply.held_length = length;
}

void VerifyGuard::release(Reply& reply) noexcept {
  if (reply.held_length == 0) return;
  checksums_->writes_end(reply.held_offset, reply.held_length);
  reply.held_length = 0;
}

void VerifyGuard::absorb(Connection& c, const std::byte* data, size_t length) noexcept {
  if (checksums_) checksums_->absorb(c.payload_checksum, c.payload_offset, data, length);
}

void VerifyGuard::record_zeroes(uint64_t offset, uint64_t length) noexcept {
  if (checksums_) checksums_->record_zeroes(offset, length);
}

uint32_t VerifyGuard::head_before(uint64_t from) const noexcept {
  return checksums_ ? static_cast<uint32_t>(from % block_bytes) : 0;
}

size_t VerifyGuard::whole_blocks(uint64_t from, size_t piece, size_t left) const noexcept {
  if (!checksums_ || piece >= left) return piece;
  return piece - (from + piece) % block_bytes;
}

bool VerifyGuard::staged_read_intact(Reply& r) noexcept {
  if (!checksums_) return true;
  uint64_t offset = r.offset + r.data_sent() - r.staged_head;
  std::byte* data = r.staged - r.staged_head;
  size_t length = r.staged_head + r.staged_length;
  for (;;) {
    const uint64_t bad = checksums_->first_mismatch(offset, data, length);
    if (bad == store::BlockChecksums::no_mismatch) return true;
    // Data from the spill area or zeros of a chunk with no storage cannot be
    // read again from VRAM (the chunk may have none): it fails at once.
    if (r.staged_elsewhere) {
      health_.checksum_mismatch(bad, /*from_spill=*/true);
      return false;
    }
    if (!reread_until_consistent(bad, data + (bad - offset))) {
      health_.checksum_mismatch(bad);
      return false;
    }
    const uint64_t checked = bad + block_bytes - offset;
    offset += checked;
    data += checked;
    length -= checked;
  }
}

// A block that fails its check is not always corrupt: a write of the same
// block on another connection records its checksum as its payload arrives,
// before its copy lands, so a read that overlaps it (NBD leaves such reads
// undefined, and the kernel never issues one) can meet old data under the new
// checksum. Reads the block again for a while: once it matches, the fresh
// copy replaces the staged one. Corrupt VRAM never matches. A block that two
// writes raced for matches neither's checksum for sure: once they have
// landed, what is there is taken (BlockChecksums::adopt). Rare, so waiting
// here, holding up the worker's other connections, costs nothing in
// practice.
bool VerifyGuard::reread_until_consistent(uint64_t offset, std::byte* block) noexcept {
  const int64_t deadline = monotonic_ns() + recheck_window_ns;
  do {
    const timespec pause{0, recheck_interval_ns};
    nanosleep(&pause, nullptr);
    const std::optional<uint32_t> raced = checksums_->raced_checksum(offset);
    cuda::Status status = stream_.read(recheck_buffer_.data(), offset, block_bytes);
    const cuda::Status synchronized = stream_.synchronize();
    if (status.ok()) status = synchronized;
    if (!status.ok()) return false;
    if (checksums_->first_mismatch(offset, recheck_buffer_.data(), block_bytes) ==
            store::BlockChecksums::no_mismatch ||
        (raced && checksums_->adopt(offset, *raced, recheck_buffer_.data()))) {
      std::memcpy(block, recheck_buffer_.data(), block_bytes);
      return true;
    }
  } while (monotonic_ns() < deadline);
  return false;
}

}  // namespace vramswap::engine
