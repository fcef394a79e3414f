#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include "common/geometry.hpp"

namespace vramswap::store {

// Where a checksum table keeps its entries: one checksum and one writer
// count per block. Memory the table does not own: the live restart's shared
// region (handover_region.hpp). BlockChecksums::storage_at() cuts a block of
// BlockChecksums::storage_bytes() into these.
struct ChecksumStorage {
  std::atomic<uint32_t>* table = nullptr;
  std::atomic<uint16_t>* writers = nullptr;
};

// A CRC32C of every 4 KiB block of the export (verify = yes), kept in host
// RAM, apart from the VRAM it vouches for: a flipped bit in VRAM (most
// consumer GPUs have no ECC) then fails the read that meets it instead of
// handing the kernel a wrong page. Costs 4 bytes of locked RAM per block
// (1 MiB per GiB of export).
//
// Entries are relaxed atomics: workers on other connections record and check
// concurrently. A block written by one while another reads it has no defined
// content (NBD leaves that race to the client, and the kernel never reads a
// swap slot it is writing): the reader reads it again until it matches.
//
// Two writes of one block in flight at once (on two connections; the kernel
// never does this either) may have their checksums recorded in one order and
// their copies land in the other, leaving one write's data under the other's
// checksum for good. So writes are counted in flight per block
// (writes_begin/writes_end); a block that two overlapped is marked raced,
// and once none is in flight, a read takes what landed as its content
// (adopt). A write that overlaps no other clears the mark.
//
// The hot-path calls allocate nothing and take no lock.
class BlockChecksums {
 public:
  static constexpr uint32_t block_bytes = export_block_bytes;
  static constexpr uint64_t no_mismatch = std::numeric_limits<uint64_t>::max();

  // A block whose bytes arrive in pieces (a write payload spread over
  // receives and rounds): the checksum so far and how many bytes it covers.
  struct Partial {
    uint32_t crc = 0;
    uint32_t filled = 0;
  };

  // Every entry starts as the checksum of a zero block: the VRAM behind the
  // export must be zeroed before it is served. `export_bytes` must be a
  // multiple of block_bytes.
  explicit BlockChecksums(uint64_t export_bytes);
  // The same, on `storage` (storage_bytes() of it, from storage_at()), which
  // the table only uses: it must outlive the table.
  BlockChecksums(uint64_t export_bytes, ChecksumStorage storage);

  // What recovering a table a dead daemon left found.
  struct Recovery {
    uint64_t raced_blocks = 0;  // blocks with writes in flight at its death
  };
  // Takes over `storage` as a daemon killed at any instant left it (live
  // restart), keeping every entry. A block with writes in flight then (none
  // acknowledged: the client sends them again) may hold a checksum whose
  // data never landed: it becomes raced with no writer, so the next read
  // adopts what landed instead of failing, as after two overlapping writes.
  BlockChecksums(uint64_t export_bytes, ChecksumStorage storage, Recovery& report);

  // The bytes of storage a table for `export_bytes` needs: the checksums,
  // then the writer counts, 8-byte aligned.
  static uint64_t storage_bytes(uint64_t export_bytes) noexcept;
  // The storage in `base` (8-byte aligned, storage_bytes() long).
  static ChecksumStorage storage_at(void* base, uint64_t export_bytes) noexcept;

  // Records the checksums of export bytes [offset, offset + len) = data,
  // with `partial` carrying a block across calls. `offset` must follow on
  // from the previous call with the same `partial` (a block boundary when
  // partial.filled is 0).
  void absorb(Partial& partial, uint64_t offset, const std::byte* data, size_t len) noexcept;
  // Export bytes [offset, offset + len), whole blocks, are now zeros.
  void record_zeroes(uint64_t offset, uint64_t len) noexcept;
  // A write (or zero-fill) of the blocks [offset, offset + len) touches is
  // on its way: from before its checksums are recorded until its copies have
  // landed, when writes_end takes the same range.
  void writes_begin(uint64_t offset, uint64_t len) noexcept;
  void writes_end(uint64_t offset, uint64_t len) noexcept;
  // For the block at `offset`: its recorded checksum if two writes of it
  // overlapped and none is in flight now (what landed is then the block's
  // content, whatever the checksum says); nothing otherwise. Read the block
  // after asking, then adopt() it.
  std::optional<uint32_t> raced_checksum(uint64_t offset) const noexcept;
  // Records `block` (read after raced_checksum() returned `recorded`) as
  // the content of the block at `offset` and clears the mark; false if the
  // block was written meanwhile (ask again).
  bool adopt(uint64_t offset, uint32_t recorded, const std::byte* block) noexcept;
  // Checks whole blocks: data holds export bytes [offset, offset + len).
  // Returns the export offset of the first block that does not match, or
  // no_mismatch.
  uint64_t first_mismatch(uint64_t offset, const std::byte* data, size_t len) const noexcept;

  uint64_t table_bytes() const noexcept {
    return blocks_ * (sizeof(uint32_t) + sizeof(std::atomic<uint16_t>));
  }

  // CRC32C (Castagnoli) of data, continuing from `crc` (0 to start).
  static uint32_t crc32c(uint32_t crc, const std::byte* data, size_t len) noexcept;

 private:
  // A block's writers in flight (low bits) and whether two overlapped.
  static constexpr uint16_t raced_mark = 0x8000;
  static constexpr uint16_t writers_mask = 0x7fff;  // saturates: then never adopted

  // Sets the size and the storage; throws std::invalid_argument without storage.
  void set_geometry(uint64_t export_bytes, ChecksumStorage storage);

  uint64_t blocks_ = 0;
  uint32_t zero_block_ = 0;
  // The entries, owned or the caller's: one mechanism either way.
  std::atomic<uint32_t>* table_ = nullptr;
  std::atomic<uint16_t>* writers_ = nullptr;
  std::unique_ptr<uint64_t[]> owned_;  // the owning constructor's storage
};

}  // namespace vramswap::store
