#include "store/block_checksums.hpp"

#include <isa-l/crc.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace vramswap::store {

uint32_t BlockChecksums::crc32c(uint32_t crc, const std::byte* data, size_t len) noexcept {
  // ISA-L keeps the register inverted between calls, as its chaining needs:
  // invert around it so that callers chain plain CRC32C values.
  auto* bytes = reinterpret_cast<unsigned char*>(const_cast<std::byte*>(data));
  return ~crc32_iscsi(bytes, static_cast<int>(len), ~crc);
}

namespace {

constexpr uint64_t round_up(uint64_t value, uint64_t to) noexcept {
  return (value + to - 1) / to * to;
}

// The entries may lie in memory that outlives the process (live restart):
// the atomics must be the plain integers they hold, with no lock beside them.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
static_assert(sizeof(std::atomic<uint16_t>) == sizeof(uint16_t));
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint16_t>::is_always_lock_free);

// Starts the lifetime of an atomic in storage the table did not allocate,
// holding the value its bytes hold (left by a daemon before this one).
template <class T>
void adopt_bytes(std::atomic<T>* object) noexcept {
  T value;
  std::memcpy(&value, static_cast<const void*>(object), sizeof value);
  std::construct_at(object, value);
}

}  // namespace

uint64_t BlockChecksums::storage_bytes(uint64_t export_bytes) noexcept {
  const uint64_t blocks = export_bytes / block_bytes;
  return round_up(blocks * sizeof(uint32_t), sizeof(uint64_t)) +
         round_up(blocks * sizeof(uint16_t), sizeof(uint64_t));
}

ChecksumStorage BlockChecksums::storage_at(void* base, uint64_t export_bytes) noexcept {
  auto* bytes = static_cast<std::byte*>(base);
  const uint64_t blocks = export_bytes / block_bytes;
  return {reinterpret_cast<std::atomic<uint32_t>*>(bytes),
          reinterpret_cast<std::atomic<uint16_t>*>(
              bytes + round_up(blocks * sizeof(uint32_t), sizeof(uint64_t)))};
}

void BlockChecksums::set_geometry(uint64_t export_bytes, ChecksumStorage storage) {
  if (storage.table == nullptr || storage.writers == nullptr)
    throw std::invalid_argument("checksums: no storage");
  blocks_ = export_bytes / block_bytes;
  table_ = storage.table;
  writers_ = storage.writers;
  static constexpr std::array<std::byte, block_bytes> zeros{};
  zero_block_ = crc32c(0, zeros.data(), zeros.size());
}

BlockChecksums::BlockChecksums(uint64_t export_bytes)
    : owned_(std::make_unique_for_overwrite<uint64_t[]>(storage_bytes(export_bytes) /
                                                        sizeof(uint64_t))) {
  set_geometry(export_bytes, storage_at(owned_.get(), export_bytes));
  for (uint64_t i = 0; i < blocks_; ++i) {
    std::construct_at(&table_[i], zero_block_);
    std::construct_at(&writers_[i], uint16_t{0});
  }
}

BlockChecksums::BlockChecksums(uint64_t export_bytes, ChecksumStorage storage) {
  set_geometry(export_bytes, storage);
  for (uint64_t i = 0; i < blocks_; ++i) {
    std::construct_at(&table_[i], zero_block_);
    std::construct_at(&writers_[i], uint16_t{0});
  }
}

BlockChecksums::BlockChecksums(uint64_t export_bytes, ChecksumStorage storage, Recovery& report) {
  set_geometry(export_bytes, storage);
  report = Recovery{};
  for (uint64_t i = 0; i < blocks_; ++i) {
    adopt_bytes(&table_[i]);
    adopt_bytes(&writers_[i]);
    // Writers in flight died with the daemon (a saturated count included):
    // what landed of them is the block's content until a write replaces it.
    if ((writers_[i].load(std::memory_order_relaxed) & writers_mask) != 0) {
      writers_[i].store(raced_mark, std::memory_order_relaxed);
      ++report.raced_blocks;
    }
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
