#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "cuda/error.hpp"
#include "store/chunk_map.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/spill_area.hpp"
#include "store/vram_store.hpp"

namespace vramswap::store {

// What one evict() or restore() did.
enum class MoveOutcome : uint8_t {
  moved,       // its live data was copied to the other tier
  moved_free,  // it held no live data: no copy (evict: VRAM released, now `none`;
               // restore: fresh VRAM zero-filled)
  wrong_tier,  // nothing to do: evicting a chunk not in VRAM, restoring one in VRAM
  busy,        // another mover has it, or requests held it past the deadline
  failed,      // a CUDA call or the spill I/O failed; the chunk stayed where its data is
};

const char* move_outcome_name(MoveOutcome outcome) noexcept;

struct MoveResult {
  MoveOutcome outcome = MoveOutcome::failed;
  Tier tier = Tier::vram;  // where the chunk's data is after the call
  // failed: the driver's answer when a CUDA call failed, else ok
  cuda::Status cuda_status;
  // failed: the errno of the spill I/O that failed, else 0
  int error_number = 0;
  // failed and busy: a short static phrase for the log ("copy VRAM to staging")
  const char* cause = nullptr;

  bool moved() const noexcept {
    return outcome == MoveOutcome::moved || outcome == MoveOutcome::moved_free;
  }
};

// What a sweep over many chunks did, for the line its trigger logs.
struct SweepReport {
  size_t moved = 0;       // chunks copied
  size_t moved_free = 0;  // chunks moved without a copy
  size_t skipped = 0;     // already in the tier asked for
  size_t busy = 0;        // held by requests past the wait, or moving: left where they were
  uint64_t bytes_copied = 0;
  std::chrono::nanoseconds elapsed{0};
  // The failure that stopped the sweep (outcome failed), or moved if none.
  MoveResult stopped_by{MoveOutcome::moved, Tier::vram, {}, 0, nullptr};
  bool failed() const noexcept { return stopped_by.outcome == MoveOutcome::failed; }
};

// Moves chunks of the export between VRAM and the spill area (elastic VRAM,
// src/store/ELASTIC.md), one at a time, while requests keep being served.
//
// evict(chunk): begin_move(evicting) waits out the requests holding it; a
// chunk with live data is copied VRAM -> staging -> spill file; then its
// VRAM is released (the last step, so that any failure before it leaves the
// chunk in VRAM with its data intact) and the chunk is marked `spill`, or
// `none` when it held no live data (no copy at all).
// restore(chunk): begin_move(restoring); fresh VRAM is committed, then
// filled from the spill file through the staging buffer, or zero-filled for
// a chunk with no live data; the chunk is marked `vram`. A failure releases
// the fresh VRAM again and leaves the chunk in the spill area. A `none`
// chunk restored with Placement::vram_or_spill when the GPU has no VRAM for
// it, or with Placement::spill_only, lands in the spill area instead (its
// region zeroed), so that a write waiting for storage can go on.
//
// Threads: one thread calls every method, bound to the store's context
// (Context::bind_current_thread(); the constructor's thread is bound by
// whoever made the Context or must bind itself): VramStore::release() and
// commit() are for one thread at a time, and the stream and staging buffer
// are this object's alone. Requests on other threads go on meanwhile; the
// chunk map makes them wait for a chunk only while it moves.
//
// Nothing is allocated per move: the staging buffer (one chunk of pinned
// memory, page-aligned as O_DIRECT needs) and the stream are made by the
// constructor. Nothing is logged either: results come back for the caller
// to log, rate-limited.
//
// The map, store and spill area must outlive the mover; the store's
// context must outlive it too.
class ChunkMover {
 public:
  // The map's chunks must be the store's physical chunks (what is released
  // is exactly what was evicted), and map, store and spill area must cover
  // the same export: std::invalid_argument otherwise. Throws StartupError
  // when the staging buffer or the stream cannot be had.
  ChunkMover(ChunkMap& map, VramStore& store, SpillArea& spill);
  ChunkMover(const ChunkMover&) = delete;
  ChunkMover& operator=(const ChunkMover&) = delete;

  // Where a restore of a chunk with no storage (`none`) may put it.
  enum class Placement : uint8_t {
    vram_only,      // VRAM, or the restore fails and the chunk stays `none`
                    // (sweeps, the admin's restore)
    vram_or_spill,  // VRAM, or its zeroed place in the spill area when the
                    // driver has none (CUDA_ERROR_OUT_OF_MEMORY): a write that
                    // waits for storage (want_storage) goes on there
    spill_only,     // its zeroed place in the spill area, taking no VRAM: the
                    // VRAM is being held back (released by the admin, on
                    // battery, needed by another program)
  };

  // `deadline` bounds the wait for requests already holding the chunk.
  MoveResult evict(size_t chunk, const Deadline& deadline) noexcept;
  MoveResult restore(size_t chunk, const Deadline& deadline,
                     Placement placement = Placement::vram_only) noexcept;

  // Every chunk (evict_all from the last down, restore_all from the first
  // up); each may wait `drain_wait` for its requests. A
  // busy chunk is skipped (counted), a failure stops the sweep: the next
  // chunk would most likely fail the same way (disk error, no VRAM).
  SweepReport evict_all(std::chrono::nanoseconds drain_wait) noexcept;
  SweepReport restore_all(std::chrono::nanoseconds drain_wait) noexcept;
  // Evicts from the last chunk down until `bytes` of VRAM have been given
  // back (or every chunk has been tried): swap tends to fill a device from
  // its start, so the end is the likeliest to be cold or empty.
  SweepReport evict_until(uint64_t bytes, std::chrono::nanoseconds drain_wait) noexcept;

  // Before the context is released: the stream and the staging buffer's
  // registration go (Context::release()); attach() brings them back. While
  // detached only moves that need no GPU work: a `none` chunk placed in the
  // spill area (Placement::spill_only); anything else fails and changes
  // nothing.
  cuda::Status detach() noexcept;
  cuda::Status attach() noexcept;

 private:
  // Copies the chunk VRAM -> staging -> spill file; ok or the failure.
  MoveResult copy_out(size_t chunk) noexcept;
  // Fills the chunk's (committed) VRAM from the spill file, or with zeros.
  MoveResult copy_in(size_t chunk, bool from_spill) noexcept;
  MoveResult place_in_spill(size_t chunk, cuda::Status why) noexcept;
  // Zeroes the chunk's region of the spill file (a `none` chunk given its
  // place there): stale bytes of an older eviction must not show through.
  MoveResult zero_spill(size_t chunk) noexcept;
  static MoveResult refused(ChunkMap::MoveStart start, Tier tier) noexcept;
  void count(SweepReport& report, const MoveResult& result, size_t chunk) const noexcept;

  ChunkMap* map_;
  VramStore* store_;
  SpillArea* spill_;
  PinnedBuffer staging_;
  CopyStream stream_;
};

}  // namespace vramswap::store
