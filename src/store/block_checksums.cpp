#include "store/block_checksums.hpp"

#include <isa-l/crc.h>

#include <algorithm>
#include <array>

namespace vramswap::store {

uint32_t BlockChecksums::crc32c(uint32_t crc, const std::byte* data, size_t len) noexcept {
  // ISA-L keeps the register inverted between calls, as its chaining needs:
  // invert around it so that callers chain plain CRC32C values.
  auto* bytes = reinterpret_cast<unsigned char*>(const_cast<std::byte*>(data));
  return ~crc32_iscsi(bytes, static_cast<int>(len), ~crc);
}

BlockChecksums::BlockChecksums(uint64_t export_bytes)
    : blocks_(export_bytes / block_bytes),
      table_(std::make_unique<std::atomic<uint32_t>[]>(export_bytes / block_bytes)),
      writers_(std::make_unique<std::atomic<uint16_t>[]>(export_bytes / block_bytes)) {
  static constexpr std::array<std::byte, block_bytes> zeros{};
  zero_block_ = crc32c(0, zeros.data(), zeros.size());
  for (uint64_t i = 0; i < blocks_; ++i) {
    table_[i].store(zero_block_, std::memory_order_relaxed);
    writers_[i].store(0, std::memory_order_relaxed);
  }
}

void BlockChecksums::absorb(Partial& partial, uint64_t offset, const std::byte* data,
                            size_t len) noexcept {
  while (len > 0) {
    const size_t take = std::min<size_t>(len, block_bytes - partial.filled);
    partial.crc = crc32c(partial.filled ? partial.crc : 0, data, take);
    partial.filled += static_cast<uint32_t>(take);
    data += take;
    offset += take;
    len -= take;
    if (partial.filled == block_bytes) {
      const uint64_t block = (offset - 1) / block_bytes;
      if (block < blocks_) table_[block].store(partial.crc, std::memory_order_relaxed);
      partial = Partial{};
    }
  }
}

void BlockChecksums::record_zeroes(uint64_t offset, uint64_t len) noexcept {
  const uint64_t end = std::min(blocks_, (offset + len) / block_bytes);
  for (uint64_t block = offset / block_bytes; block < end; ++block) {
    table_[block].store(zero_block_, std::memory_order_relaxed);
  }
}

void BlockChecksums::writes_begin(uint64_t offset, uint64_t len) noexcept {
  const uint64_t end = std::min(blocks_, (offset + len + block_bytes - 1) / block_bytes);
  for (uint64_t block = offset / block_bytes; block < end; ++block) {
    std::atomic<uint16_t>& state = writers_[block];
    uint16_t seen = state.load(std::memory_order_relaxed);
    uint16_t next;
    do {
      const uint16_t writers = seen & writers_mask;
      if (writers == writers_mask) break;
      // Alone, a write starts the block's history afresh; beside another,
      // which one's data stays is up to the order their copies land in.
      next = writers == 0 ? uint16_t{1} : static_cast<uint16_t>((writers + 1) | raced_mark);
    } while (!state.compare_exchange_weak(seen, next, std::memory_order_relaxed));
  }
}

void BlockChecksums::writes_end(uint64_t offset, uint64_t len) noexcept {
  const uint64_t end = std::min(blocks_, (offset + len + block_bytes - 1) / block_bytes);
  for (uint64_t block = offset / block_bytes; block < end; ++block) {
    std::atomic<uint16_t>& state = writers_[block];
    uint16_t seen = state.load(std::memory_order_relaxed);
    do {
      const uint16_t writers = seen & writers_mask;
      if (writers == 0 || writers == writers_mask) break;
    } while (!state.compare_exchange_weak(seen, static_cast<uint16_t>(seen - 1),
                                          std::memory_order_release, std::memory_order_relaxed));
  }
}

std::optional<uint32_t> BlockChecksums::raced_checksum(uint64_t offset) const noexcept {
  const uint64_t block = offset / block_bytes;
  if (block >= blocks_ || writers_[block].load(std::memory_order_acquire) != raced_mark) {
    return std::nullopt;
  }
  return table_[block].load(std::memory_order_relaxed);
}

bool BlockChecksums::adopt(uint64_t offset, uint32_t recorded, const std::byte* block) noexcept {
  const uint64_t index = offset / block_bytes;
  if (index >= blocks_) return false;
  // Fails if a write recorded another checksum since `recorded` was read; a
  // write that began but has not recorded yet overwrites this when it does.
  if (!table_[index].compare_exchange_strong(recorded, crc32c(0, block, block_bytes),
                                             std::memory_order_relaxed)) {
    return false;
  }
  uint16_t raced = raced_mark;
  writers_[index].compare_exchange_strong(raced, 0, std::memory_order_relaxed);
  return true;
}

uint64_t BlockChecksums::first_mismatch(uint64_t offset, const std::byte* data,
                                        size_t len) const noexcept {
  for (size_t done = 0; done + block_bytes <= len; done += block_bytes) {
    const uint64_t block = (offset + done) / block_bytes;
    if (block >= blocks_) break;
    if (crc32c(0, data + done, block_bytes) != table_[block].load(std::memory_order_relaxed)) {
      return offset + done;
    }
  }
  return no_mismatch;
}

}  // namespace vramswap::store
