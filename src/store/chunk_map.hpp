#pragma once

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include "common/geometry.hpp"

namespace vramswap::store {

// Where a chunk's bytes are.
enum class Tier : uint8_t {
  vram = 0,   // in the chunk's VRAM
  spill = 1,  // in the spill area (its VRAM is free)
  none = 2,   // nowhere: no block of it holds live data, it reads as zeros
};

// Whether a chunk is moving, and which way.
enum class Motion : uint8_t {
  resident = 0,   // where its tier says; requests may use it
  evicting = 1,   // leaving VRAM; requests wait
  restoring = 2,  // coming back to VRAM; requests wait
};

const char* tier_name(Tier tier) noexcept;
const char* motion_name(Motion motion) noexcept;

// The time by which a wait gives up, on CLOCK_MONOTONIC (what futex waits use).
struct Deadline {
  timespec at;
  static Deadline after(std::chrono::nanoseconds wait) noexcept;
};

class ChunkMap;

// Where a chunk map keeps its state: one word per chunk, then the live bits
// (ChunkMap::live_words_per_chunk() per chunk). Memory the map does not own:
// the live restart's shared region (handover_region.hpp), which outlives the
// daemon that writes it. ChunkMap::storage_at() cuts a block of
// ChunkMap::storage_bytes() into these.
struct ChunkMapStorage {
  std::atomic<uint32_t>* words = nullptr;
  std::atomic<uint64_t>* live = nullptr;
};

// The chunks of one request, pinned: none of them can start moving until the
// pins are released (by the destructor), so the tier each had when pinned is
// where its bytes stay for the whole request. Allocates nothing.
class ChunkPins {
 public:
  enum class Result : uint8_t {
    pinned,
    timed_out,     // a chunk stayed in motion past the deadline; nothing is pinned
    out_of_range,  // the range is empty or does not lie inside the export
  };

  ChunkPins() = default;
  ChunkPins(ChunkPins&& other) noexcept;
  ChunkPins& operator=(ChunkPins&& other) noexcept;
  ChunkPins(const ChunkPins&) = delete;
  ChunkPins& operator=(const ChunkPins&) = delete;
  ~ChunkPins() { release(); }

  Result result() const noexcept { return result_; }
  bool ok() const noexcept { return result_ == Result::pinned; }
  size_t first() const noexcept { return first_; }
  size_t count() const noexcept { return count_; }
  // The tier of a pinned chunk (first() <= chunk < first() + count()).
  Tier tier(size_t chunk) const noexcept;
  void release() noexcept;

 private:
  friend class ChunkMap;
  ChunkPins(ChunkMap* map, Result result, size_t first, size_t count) noexcept
      : map_(map), result_(result), first_(first), count_(count) {}

  ChunkMap* map_ = nullptr;
  Result result_ = Result::out_of_range;
  size_t first_ = 0;
  size_t count_ = 0;
};

// The export divided into chunks, each with a tier, a motion and the blocks
// that hold live data. The one place that decides whether a request may touch
// a chunk and whether a mover may move it.
//
// Concurrency: each chunk is one 32-bit atomic word (tier, motion, pin count),
// so worker threads pin the chunks of a request with a compare-and-swap each,
// with no lock shared between chunks and no allocation. A mover marks a chunk
// in motion (new pins then wait), waits for the pins already taken to drain,
// moves the bytes, and flips the tier as it marks the chunk resident again;
// waits sleep on the word itself (futex), bounded by a deadline. Everything
// is allocated by the constructor, or lies in storage the caller gives it.
//
// Deadlock freedom: a request that meets a chunk in motion releases every pin
// it took before it waits, so a mover never waits for a request that is
// itself waiting for a mover.
class ChunkMap {
 public:
  static constexpr uint64_t default_chunk_bytes = vram_chunk_bytes;
  // Live data is tracked per export block.
  static constexpr uint64_t block_bytes = export_block_bytes;

  // export_bytes: whole blocks, at least one. chunk_bytes: whole blocks, at
  // least one. Throws std::invalid_argument otherwise. Every chunk starts
  // resident in `initial` with no live data.
  ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes = default_chunk_bytes,
           Tier initial = Tier::vram);
  // The same, on `storage` (storage_bytes() of it, from storage_at()), which
  // the map only uses: it must outlive the map.
  ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes, ChunkMapStorage storage, Tier initial);

  // What recovering a map a dead daemon left found (see below).
  struct Recovery {
    // Chunks in VRAM with live data whose VRAM did not come back: their
    // bytes are gone, so the whole handover must be refused (serving them
    // would read zeros for written pages). Left in VRAM, unpinned.
    size_t vram_lost_chunks = 0;
    size_t first_lost = 0;  // the first of them, when there are any
    // Chunks whose word no daemon writes (an unknown tier or motion, or a
    // motion its tier cannot have): the region is damaged; refuse it too.
    size_t damaged_chunks = 0;
    size_t first_damaged = 0;
    size_t evicting_fixed = 0;      // caught evicting, now resident
    size_t restoring_fixed = 0;     // caught restoring, now resident where they were
    size_t pins_cleared = 0;        // held pins of requests that died with the daemon
    size_t empty_vram_dropped = 0;  // in VRAM, no live data, VRAM gone: now `none`
    bool usable() const noexcept { return vram_lost_chunks == 0 && damaged_chunks == 0; }
  };

  // Takes over `storage` as a daemon killed at any instant left it (live
  // restart: nothing could be written at its death), keeping every live bit
  // and settling every chunk word so that no chunk is pinned or in motion:
  //  - pins are cleared (their requests died; the kernel resends them);
  //  - a chunk caught evicting stays in VRAM if vram_kept(chunk) (its VRAM
  //    came back, with the bytes the move was copying); otherwise its copy
  //    to the spill area had completed (the mover releases VRAM only after
  //    it), so it is in the spill area, or `none` without live data;
  //  - a chunk caught restoring stays where it was (spill or none): the
  //    restore only read the spill area, and VRAM it may have taken holds
  //    nothing the chunk relies on;
  //  - a resident chunk in VRAM whose VRAM did not come back is `none` if it
  //    has no live data, and is reported in `report` (not fixed) if it has.
  // The caller must refuse the handover unless report.usable().
  ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes, ChunkMapStorage storage,
           const std::function<bool(size_t)>& vram_kept, Recovery& report);

  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  // The bytes of storage a map of this geometry needs (whole blocks, as the
  // constructors require): the chunk words, then the live bits, 8-byte
  // aligned.
  static uint64_t storage_bytes(uint64_t export_bytes, uint64_t chunk_bytes) noexcept;
  // The storage in `base` (8-byte aligned, storage_bytes() long).
  static ChunkMapStorage storage_at(void* base, uint64_t export_bytes,
                                    uint64_t chunk_bytes) noexcept;

  uint64_t export_bytes() const noexcept { return export_bytes_; }
  uint64_t chunk_bytes() const noexcept { return chunk_bytes_; }
  size_t chunk_count() const noexcept { return chunk_count_; }
  size_t chunk_of(uint64_t offset) const noexcept {
    return static_cast<size_t>(offset / chunk_bytes_);
  }
  uint64_t chunk_offset(size_t chunk) const noexcept { return chunk * chunk_bytes_; }
  // The last chunk is shorter when the export is not a whole number of chunks.
  uint64_t chunk_length(size_t chunk) const noexcept;

  // ---- The request side (worker threads) ----

  // Pins every chunk that [offset, offset + length) touches, in ascending
  // order. A chunk in motion is waited for (without holding any pin) until it
  // is resident again or `deadline` passes.
  ChunkPins pin(uint64_t offset, uint64_t length, const Deadline& deadline) noexcept;

  // Records that a write stored data in [offset, offset + length): every
  // block it touches holds live data. The caller holds pins on the range.
  void mark_written(uint64_t offset, uint64_t length) noexcept;
  // Records that TRIM or WRITE_ZEROES left [offset, offset + length) with no
  // live data: only blocks the range covers whole are cleared (a block partly
  // covered still holds the rest of a write). The caller holds pins.
  void mark_unused(uint64_t offset, uint64_t length) noexcept;

  // ---- The mover side ----

  enum class MoveStart : uint8_t {
    started,         // the chunk is in motion, no request holds it: move it now
    already_moving,  // another mover has it
    wrong_tier,      // evicting a chunk not in VRAM, or restoring one in VRAM
    drain_timed_out  // requests kept it past the deadline; it is resident again
  };

  // Marks `chunk` evicting (it must be in VRAM) or restoring (it must not
  // be), then waits until the requests that had pinned it are done. New
  // requests wait from the moment it is marked.
  MoveStart begin_move(size_t chunk, Motion direction, const Deadline& deadline) noexcept;
  // The move worked: the chunk is resident in `destination` (evicting: spill,
  // or none when it held no live data; restoring: vram, or spill for a chunk
  // that was `none`: storage given to it in the spill area when no VRAM was
  // to be had). Waiting requests go on and see the new tier.
  // False (and nothing changes) when the chunk is not in motion or
  // `destination` does not fit its direction: the mover must abandon it then.
  bool complete_move(size_t chunk, Tier destination) noexcept;
  // The move failed: the chunk is resident where it was (a failed evict keeps
  // it in VRAM, a failed restore in the spill area), its bytes untouched.
  void abandon_move(size_t chunk) noexcept;

  // ---- Anyone ----

  Tier tier(size_t chunk) const noexcept;
  Motion motion(size_t chunk) const noexcept;
  uint32_t pin_count(size_t chunk) const noexcept;
  // False when no block of the chunk holds live data: it moves for free.
  bool has_live_data(size_t chunk) const noexcept;
  uint64_t live_bytes(size_t chunk) const noexcept;

  // ---- Saving and loading (live restart, restart_state.hpp) ----
  // Only on a map that no request and no mover uses: before serving starts,
  // or after it stopped.

  // 64-bit words of live bits per chunk (one bit per block).
  size_t live_words_per_chunk() const noexcept { return words_per_chunk_; }
  // Copies the live bits of `chunk` to `words` (live_words_per_chunk() of them).
  void save_live(size_t chunk, uint64_t* words) const noexcept;
  // Sets `chunk` resident in `tier` with the live bits in `words`.
  void load_chunk(size_t chunk, Tier tier, const uint64_t* words) noexcept;

  // Totals for status lines; a snapshot that moves on as requests run.
  struct Census {
    uint64_t vram_bytes = 0;
    uint64_t spill_bytes = 0;
    uint64_t none_bytes = 0;
    uint64_t live_bytes = 0;
    size_t moving_chunks = 0;
  };
  Census census() const noexcept;

 private:
  friend class ChunkPins;

  // The word of a chunk: tier in bits 0-1, motion in bits 2-3, pins from bit 8.
  static constexpr uint32_t tier_mask = 0x3;
  static constexpr uint32_t motion_shift = 2;
  static constexpr uint32_t motion_mask = 0x3u << motion_shift;
  static constexpr uint32_t pin_shift = 8;
  static constexpr uint32_t pin_one = 1u << pin_shift;

  static Tier tier_of(uint32_t word) noexcept { return static_cast<Tier>(word & tier_mask); }
  static Motion motion_of(uint32_t word) noexcept {
    return static_cast<Motion>((word & motion_mask) >> motion_shift);
  }
  static uint32_t pins_of(uint32_t word) noexcept { return word >> pin_shift; }

  // Sleeps while `chunk` is in motion; false once the deadline has passed.
  bool wait_while_moving(size_t chunk, const Deadline& deadline) noexcept;
  void unpin(size_t first, size_t count) noexcept;
  // Checks and records the geometry; throws std::invalid_argument.
  void set_geometry(uint64_t export_bytes, uint64_t chunk_bytes);
  void start_fresh(ChunkMapStorage storage, Tier initial);
  void recover(ChunkMapStorage storage, const std::function<bool(size_t)>& vram_kept,
               Recovery& report);
  void end_move(size_t chunk, Tier tier) noexcept;
  std::atomic<uint64_t>* live_words(size_t chunk) const noexcept {
    return &live_[chunk * words_per_chunk_];
  }
  // Sets (live) or clears the bits of blocks [first_block, end_block).
  void set_live(uint64_t first_block, uint64_t end_block, bool live) noexcept;

  uint64_t export_bytes_ = 0;
  uint64_t chunk_bytes_ = 0;
  size_t chunk_count_ = 0;
  uint64_t blocks_per_chunk_ = 0;
  size_t words_per_chunk_ = 0;
  // The state, owned or the caller's: one mechanism either way.
  std::atomic<uint32_t>* words_ = nullptr;
  std::atomic<uint64_t>* live_ = nullptr;
  std::unique_ptr<uint64_t[]> owned_;  // the owning constructor's storage
};

}  // namespace vramswap::store
