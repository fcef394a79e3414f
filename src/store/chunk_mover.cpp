#include "store/chunk_mover.hpp"

#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace vramswap::store {

namespace {

// The stream records no more than this many tagged parts per round: the
// mover queues one copy per round and tags none.
constexpr size_t stream_parts = 4;

MoveResult failure(Tier tier, const char* cause, cuda::Status status,
                   int error_number = 0) noexcept {
  MoveResult result;
  result.outcome = MoveOutcome::failed;
  result.tier = tier;
  result.cuda_status = status;
  result.error_number = error_number;
  result.cause = cause;
  return result;
}

MoveResult success(MoveOutcome outcome, Tier tier) noexcept {
  MoveResult result;
  result.outcome = outcome;
  result.tier = tier;
  return result;
}

// What the sweeps time with: steady, and no allocation.
std::chrono::nanoseconds since(std::chrono::steady_clock::time_point start) noexcept {
  return std::chrono::steady_clock::now() - start;
}

// The store, once map, store and spill area are known to describe the same
// export in the same chunks (before any pinned memory is taken).
VramStore& matching_store(const ChunkMap& map, VramStore& store, const SpillArea& spill) {
  if (map.chunk_bytes() != store.chunk_bytes()) {
    throw std::invalid_argument("chunk mover: the map's chunk differs from the store's");
  }
  if (map.export_bytes() != store.size() || spill.export_bytes() != store.size()) {
    throw std::invalid_argument("chunk mover: map, store and spill area differ in export size");
  }
  return store;
}

}  // namespace

const char* move_outcome_name(MoveOutcome outcome) noexcept {
  switch (outcome) {
    case MoveOutcome::moved:
      return "moved";
    case MoveOutcome::moved_free:
      return "moved free";
    case MoveOutcome::wrong_tier:
      return "wrong tier";
    case MoveOutcome::busy:
      return "busy";
    case MoveOutcome::failed:
      return "failed";
  }
  return "unknown";
}

ChunkMover::ChunkMover(ChunkMap& map, VramStore& store, SpillArea& spill)
    : map_(&map),
      store_(&matching_store(map, store, spill)),
      spill_(&spill),
      staging_(store.context(), map.chunk_bytes()),
      stream_(store, nullptr, 0, stream_parts) {}

MoveResult ChunkMover::refused(ChunkMap::MoveStart start, Tier tier) noexcept {
  MoveResult result = success(MoveOutcome::busy, tier);
  switch (start) {
    case ChunkMap::MoveStart::already_moving:
      result.cause = "another mover has the chunk";
      break;
    case ChunkMap::MoveStart::drain_timed_out:
      result.cause = "requests held the chunk past the deadline";
      break;
    case ChunkMap::MoveStart::wrong_tier:
    case ChunkMap::MoveStart::started:
      result.outcome = MoveOutcome::wrong_tier;
      break;
  }
  return result;
}

MoveResult ChunkMover::copy_out(size_t chunk) noexcept {
  const uint64_t offset = map_->chunk_offset(chunk);
  const uint64_t length = map_->chunk_length(chunk);
  cuda::Status status = stream_.read(staging_.data(), offset, length);
  // A refused read queued nothing, but synchronize() ends the round either way.
  const cuda::Status synced = stream_.synchronize();
  if (status.ok()) status = synced;
  if (!status.ok()) return failure(Tier::vram, "copy VRAM to staging", status);
  if (const int error = spill_->write(offset, staging_.data(), length); error != 0) {
    return failure(Tier::vram, "write the spill area", cuda::Status{}, error);
  }
  return success(MoveOutcome::moved, Tier::spill);
}

cuda::Status ChunkMover::detach() noexcept {
  const cuda::Status stream = stream_.detach();
  const cuda::Status staging = staging_.detach();
  return stream.ok() ? staging : stream;
}

cuda::Status ChunkMover::attach() noexcept {
  if (const cuda::Status staging = staging_.attach(); !staging.ok()) return staging;
  return stream_.attach();
}

MoveResult ChunkMover::evict(size_t chunk, const Deadline& deadline) noexcept {
  const ChunkMap::MoveStart start = map_->begin_move(chunk, Motion::evicting, deadline);
  if (start != ChunkMap::MoveStart::started) return refused(start, map_->tier(chunk));
  // Pins are drained and new ones wait: no request writes the chunk (or marks
  // its live blocks) until the move ends, so this answer holds.
  const bool live = map_->has_live_data(chunk);
  if (live) {
    const MoveResult copied = copy_out(chunk);
    if (copied.outcome == MoveOutcome::failed) {
      map_->abandon_move(chunk);  // VRAM untouched: the chunk reads as before
      return copied;
    }
  }
  const Tier destination = live ? Tier::spill : Tier::none;
  // Release last: until here a failure leaves the chunk whole in VRAM.
  if (const cuda::Status status = store_->release(chunk); !status.ok()) {
    if (store_->committed(chunk)) {
      // The unmap failed: the VRAM and its data are still in place.
      map_->abandon_move(chunk);
      return failure(Tier::vram, "release the chunk's VRAM", status);
    }
    // Unmapped, but the driver kept the memory: the data is safe in the
    // spill area (or there was none), so the move stands.
    map_->complete_move(chunk, destination);
    return failure(destination, "give the chunk's VRAM back (it may stay taken)", status);
  }
  map_->complete_move(chunk, destination);
  return success(live ? MoveOutcome::moved : MoveOutcome::moved_free, destination);
}

MoveResult ChunkMover::copy_in(size_t chunk, bool from_spill) noexcept {
  const uint64_t offset = map_->chunk_offset(chunk);
  const uint64_t length = map_->chunk_length(chunk);
  const Tier source = map_->tier(chunk);
  cuda::Status status;
  if (from_spill) {
    if (const int error = spill_->read(offset, staging_.data(), length); error != 0) {
      return failure(source, "read the spill area", cuda::Status{}, error);
    }
    status = stream_.write(offset, staging_.data(), length);
  } else {
    status = stream_.zero(offset, length);
  }
  const cuda::Status synced = stream_.synchronize();
  if (status.ok()) status = synced;
  if (!status.ok()) {
    return failure(source, from_spill ? "copy staging to VRAM" : "zero-fill the chunk's VRAM",
                   status);
  }
  return success(from_spill ? MoveOutcome::moved : MoveOutcome::moved_free, Tier::vram);
}

MoveResult ChunkMover::zero_spill(size_t chunk) noexcept {
  const uint64_t offset = map_->chunk_offset(chunk);
  const uint64_t length = map_->chunk_length(chunk);
  std::memset(staging_.data(), 0, length);
  if (const int error = spill_->write(offset, staging_.data(), length); error != 0) {
    return failure(Tier::none, "zero the chunk's place in the spill area", cuda::Status{}, error);
  }
  return success(MoveOutcome::moved_free, Tier::spill);
}

MoveResult ChunkMover::restore(size_t chunk, const Deadline& deadline,
                               Placement placement) noexcept {
  const ChunkMap::MoveStart start = map_->begin_move(chunk, Motion::restoring, deadline);
  if (start != ChunkMap::MoveStart::started) return refused(start, map_->tier(chunk));
  const Tier source = map_->tier(chunk);
  if (source == Tier::none && placement == Placement::spill_only) {
    return place_in_spill(chunk, cuda::Status{});
  }
  if (const cuda::Status status = store_->commit(chunk); !status.ok()) {
    // commit holds nothing on failure. A chunk with no storage that a write
    // waits for may live in the spill area instead: swap goes on, slower.
    if (source == Tier::none && placement == Placement::vram_or_spill &&
        status.code() == cuda::CUDA_ERROR_OUT_OF_MEMORY) {
      return place_in_spill(chunk, status);
    }
    map_->abandon_move(chunk);
    return failure(source, "take VRAM for the chunk", status);
  }
  // A chunk with no live block (never written, or trimmed since it left)
  // has no bytes worth reading back: zeros are what it holds.
  const bool from_spill = source == Tier::spill && map_->has_live_data(chunk);
  MoveResult result = copy_in(chunk, from_spill);
  if (result.outcome == MoveOutcome::failed) {
    // Give the fresh VRAM back: the data is still in the spill area, and
    // holding VRAM the chunk does not use would defeat the eviction. Should
    // even that fail, the VRAM stays mapped and the next restore reuses it
    // (committing a committed chunk is a no-op).
    (void)store_->release(chunk);
    map_->abandon_move(chunk);
    return result;
  }
  map_->complete_move(chunk, Tier::vram);
  return result;
}

// A `none` chunk in motion gets its zeroed place in the spill area; on
// failure it stays `none`. `why` is the VRAM refusal that led here, if any.
MoveResult ChunkMover::place_in_spill(size_t chunk, cuda::Status why) noexcept {
  const MoveResult zeroed = zero_spill(chunk);
  if (zeroed.outcome == MoveOutcome::failed || !map_->complete_move(chunk, Tier::spill)) {
    map_->abandon_move(chunk);
    return zeroed.outcome == MoveOutcome::failed
               ? zeroed
               : failure(Tier::none, "place the chunk in the spill area", why);
  }
  return zeroed;
}

void ChunkMover::count(SweepReport& report, const MoveResult& result, size_t chunk) const noexcept {
  switch (result.outcome) {
    case MoveOutcome::moved:
      ++report.moved;
      report.bytes_copied += map_->chunk_length(chunk);
      break;
    case MoveOutcome::moved_free:
      ++report.moved_free;
      break;
    case MoveOutcome::wrong_tier:
      ++report.skipped;
      break;
    case MoveOutcome::busy:
      ++report.busy;
      break;
    case MoveOutcome::failed:
      report.stopped_by = result;
      break;
  }
}

SweepReport ChunkMover::evict_all(std::chrono::nanoseconds drain_wait) noexcept {
  return evict_until(UINT64_MAX, drain_wait);
}

SweepReport ChunkMover::evict_until(uint64_t bytes, std::chrono::nanoseconds drain_wait) noexcept {
  const auto start = std::chrono::steady_clock::now();
  SweepReport report;
  const uint64_t committed_at_start = store_->committed_bytes();
  for (size_t chunk = map_->chunk_count(); chunk-- > 0;) {
    if (committed_at_start - store_->committed_bytes() >= bytes) break;
    const MoveResult result = evict(chunk, Deadline::after(drain_wait));
    count(report, result, chunk);
    if (report.failed()) break;
  }
  report.elapsed = since(start);
  return report;
}

SweepReport ChunkMover::restore_all(std::chrono::nanoseconds drain_wait) noexcept {
  const auto start = std::chrono::steady_clock::now();
  SweepReport report;
  for (size_t chunk = 0; chunk < map_->chunk_count(); ++chunk) {
    const MoveResult result = restore(chunk, Deadline::after(drain_wait));
    count(report, result, chunk);
    if (report.failed()) break;
  }
  report.elapsed = since(start);
  return report;
}

}  // namespace vramswap::store
