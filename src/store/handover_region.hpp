#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/unique_fd.hpp"
#include "store/block_checksums.hpp"
#include "store/chunk_map.hpp"
#include "store/restart_state.hpp"

namespace vramswap::store {

// Which live structures a handover region holds.
struct HandoverLayout {
  bool chunk_map = false;  // the elastic tier's ChunkMap
  bool checksums = false;  // verify = yes: the BlockChecksums table
};

// Live restart after any death (kill -9 included): the daemon's live state
// lies, all the time it runs, in one shared memory file (a memfd) that
// systemd's file descriptor store keeps across the daemon's death, so the
// next daemon of the instance finds it as it was at that instant. Nothing is
// written at a crash, so nothing here depends on a clean stop.
//
// Layout: a 4 KiB header written once by create() and never changed (magic,
// format version, layout, instance, export and chunk sizes, chunk count,
// every section's offset and length, a CRC32C of it), then each section the
// layout names, 4 KiB aligned: the ChunkMap's storage, then the
// BlockChecksums' storage. The file is sealed against growing and shrinking,
// so a mapping of it can never fault past its end.
//
// The sections belong to the structures built on them: a fresh ChunkMap or
// BlockChecksums on a created region, a recovering one on an adopted region.
// Futex waits on the shared mapping work as on private memory (one process
// uses a region at a time).
class HandoverRegion {
 public:
  static constexpr uint32_t format_version = 1;
  static constexpr uint64_t header_bytes = 4096;
  // Where the handover mark lives: the last 64 bytes of the header page.
  static constexpr uint64_t handover_mark_offset = header_bytes - 64;
  // The longest instance name the header holds.
  static constexpr size_t max_instance_bytes = 255;

  // A new region for `identity` (export and chunk sizes in whole 4 KiB
  // blocks, an instance name of at most max_instance_bytes), its sections
  // zeroed. Throws StartupError with one line naming the cause and the fix.
  static HandoverRegion create(const RestartIdentity& identity, HandoverLayout layout);

  // Takes the region a daemon before this one left in `fd`, if it serves
  // `expected`; nothing, with one line in `why`, otherwise: not a region, a
  // damaged header, another format version, instance, export or chunk size,
  // or sections that do not fit the file. Everything is checked before the
  // file is mapped, and nothing is written to a refused one. The caller
  // compares layout() with what it needs. An `expected` export size of 0
  // takes the region's own (no device to hold it against: attach = no).
  static std::optional<HandoverRegion> adopt(UniqueFd fd, const RestartIdentity& expected,
                                             std::string& why);

  HandoverRegion(HandoverRegion&& other) noexcept;
  HandoverRegion& operator=(HandoverRegion&& other) noexcept;
  HandoverRegion(const HandoverRegion&) = delete;
  HandoverRegion& operator=(const HandoverRegion&) = delete;
  ~HandoverRegion();

  // The memfd, for the file descriptor store.
  int fd() const noexcept { return fd_.get(); }
  const RestartIdentity& identity() const noexcept { return identity_; }
  HandoverLayout layout() const noexcept { return layout_; }
  uint64_t size() const noexcept { return bytes_; }

  // The storage of the sections; std::logic_error when the layout has none.
  ChunkMapStorage chunk_map_storage();
  ChecksumStorage checksum_storage();

  // The handover mark, the one word of the header page that changes (kept
  // out of its checksum): 0 while a daemon serves from the region, the time
  // serving stopped once it handed the region over cleanly. A daemon that
  // died serving leaves 0. When the region was handed over cleanly, or
  // nothing.
  std::optional<int64_t> handed_over_unix_ns() const noexcept;
  void mark_serving() noexcept;
  void mark_handed_over(int64_t unix_ns) noexcept;

 private:
  HandoverRegion(UniqueFd fd, std::byte* base, uint64_t bytes, RestartIdentity identity,
                 HandoverLayout layout, uint64_t chunk_map_offset, uint64_t checksums_offset);
  void unmap() noexcept;
  std::atomic_ref<int64_t> handover_mark() const noexcept;

  UniqueFd fd_;
  std::byte* base_ = nullptr;
  uint64_t bytes_ = 0;
  RestartIdentity identity_;
  HandoverLayout layout_;
  uint64_t chunk_map_offset_ = 0;
  uint64_t checksums_offset_ = 0;
};

}  // namespace vramswap::store
