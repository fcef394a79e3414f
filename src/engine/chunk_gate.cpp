#include "engine/chunk_gate.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/clock.hpp"

namespace vramswap::engine {
namespace {

using store::SpillArea;
using store::Tier;

constexpr uint64_t spill_block = SpillArea::alignment;

// A deadline long passed: pin() never sleeps on a chunk in motion.
constexpr store::Deadline no_wait{timespec{0, 0}};

// A piece of a write that covers only part of a 4 KiB block of the spill
// file (requests may be 512-byte aligned, and payloads arrive in pieces of
// any size) is a read-modify-write of that block. Two of them on different
// workers, writing different sectors of one block, would each put back the
// other's old bytes: they take turns under this one lock. It is the rare slow
// path (a chunk in the spill area, a piece not on block boundaries), so one
// lock for every worker costs nothing worth a finer one; whole blocks are
// written without it.
std::mutex spill_rmw_mutex;

bool aligned(uint64_t offset, const std::byte* data, uint64_t length) noexcept {
  return offset % spill_block == 0 && length % spill_block == 0 &&
         reinterpret_cast<uintptr_t>(data) % spill_block == 0;
}

}  // namespace

ChunkGate::ChunkGate(store::ChunkMap* map, store::SpillArea* spill,
                     const std::function<void(size_t chunk)>& want_storage, CopyRound& copies,
                     Health& health)
    : map_(map), spill_(spill), want_storage_(want_storage), copies_(copies), health_(health) {
  if (map_ && spill_) bounce_.emplace(bounce_bytes);
}

ChunkGate::Admission ChunkGate::admit(Connection& c, store::ChunkPins& pins, uint64_t offset,
                                      uint64_t length, bool write) noexcept {
  if (!map_ || length == 0) return Admission::go;
  pins = map_->pin(offset, length, no_wait);
  if (pins.result() != store::ChunkPins::Result::timed_out) {
    bool storage = true;
    if (write) {
      for (size_t chunk = pins.first(); chunk < pins.first() + pins.count(); ++chunk)
        if (pins.tier(chunk) == Tier::none) storage = false;
    }
    if (storage) {
      c.chunk_wait_since_ns = c.storage_asked_ns = 0;
      return Admission::go;
    }
    // A write to a chunk with no storage: the mover gives it some (VRAM,
    // or its place in the spill area), and the write waits like one that
    // met a chunk in motion.
    const int64_t now = monotonic_ns();
    if (want_storage_ &&
        (c.storage_asked_ns == 0 || now - c.storage_asked_ns >= storage_ask_interval_ns)) {
      c.storage_asked_ns = now;
      for (size_t chunk = pins.first(); chunk < pins.first() + pins.count(); ++chunk)
        if (pins.tier(chunk) == Tier::none) want_storage_(chunk);
    }
    pins.release();
    if (c.chunk_wait_since_ns == 0) c.chunk_wait_since_ns = now;
    return Admission::wait;
  }
  if (c.chunk_wait_since_ns == 0) c.chunk_wait_since_ns = monotonic_ns();
  return Admission::wait;
}

void ChunkGate::wait_failed(uint64_t offset) noexcept {
  health_.chunk_wait_failed(offset, wait_bound_ns / 1'000'000'000);
}

template <typename Run>
void ChunkGate::for_each_run(const store::ChunkPins& pins, uint64_t offset, uint64_t length,
                             Run run) const noexcept {
  const uint64_t end = offset + length;
  while (offset < end) {
    size_t chunk = map_->chunk_of(offset);
    const Tier tier = pins.tier(chunk);
    uint64_t run_end = std::min(end, map_->chunk_offset(chunk) + map_->chunk_bytes());
    while (run_end < end && pins.tier(++chunk) == tier)
      run_end = std::min(end, map_->chunk_offset(chunk) + map_->chunk_bytes());
    run(tier, offset, run_end - offset);
    offset = run_end;
  }
}

void ChunkGate::read(Reply& r, std::byte* dst, uint64_t offset, size_t length) noexcept {
  if (!map_) {
    copies_.read(r, dst, offset, length);
    return;
  }
  r.staged_elsewhere = false;
  for_each_run(r.pins, offset, length, [&](Tier tier, uint64_t at, uint64_t n) {
    std::byte* to = dst + (at - offset);
    switch (tier) {
      case Tier::vram:
        copies_.read(r, to, at, n);
        return;
      case Tier::none:
        std::memset(to, 0, n);
        break;
      case Tier::spill:
        if (const int error = spill_read(at, to, n); error != 0) spill_failed(r, error, at);
        break;
    }
    // Decided when the round settles, like a copy (verify checks it then).
    r.staged_elsewhere = true;
    r.copy_pending = true;
  });
}

void ChunkGate::write(Reply& r, uint64_t offset, const std::byte* src, size_t length) noexcept {
  if (!map_) {
    copies_.write(r, offset, src, length);
    return;
  }
  for_each_run(r.pins, offset, length, [&](Tier tier, uint64_t at, uint64_t n) {
    const std::byte* from = src + (at - offset);
    switch (tier) {
      case Tier::vram:
        copies_.write(r, at, from, n);
        break;
      case Tier::spill:
        if (const int error = spill_write(at, from, n); error != 0) spill_failed(r, error, at);
        break;
      case Tier::none:
        // admit() let no write in before its chunks had storage.
        r.copy_pending = r.copy_failed = true;
        break;
    }
  });
}

void ChunkGate::zero(Reply& r, uint64_t offset, uint64_t length) noexcept {
  if (!map_) {
    copies_.zero(r, offset, length);
    return;
  }
  for_each_run(r.pins, offset, length, [&](Tier tier, uint64_t at, uint64_t n) {
    switch (tier) {
      case Tier::vram:
        copies_.zero(r, at, n);
        break;
      case Tier::spill:
        if (const int error = spill_write(at, nullptr, n); error != 0) spill_failed(r, error, at);
        break;
      case Tier::none:
        break;  // reads as zeros already
    }
  });
}

int ChunkGate::spill_read(uint64_t offset, std::byte* dst, uint64_t length) noexcept {
  if (!spill_) return EIO;  // a map without a spill area never has a chunk there
  if (aligned(offset, dst, length)) return spill_->read(offset, dst, length);
  std::byte* bounce = bounce_->data();
  while (length > 0) {
    const uint64_t start = offset / spill_block * spill_block;
    const uint64_t stop = std::min((offset + length + spill_block - 1) / spill_block * spill_block,
                                   start + bounce_->size());
    if (const int error = spill_->read(start, bounce, stop - start); error != 0) return error;
    const uint64_t take = std::min(offset + length, stop) - offset;
    std::memcpy(dst, bounce + (offset - start), take);
    dst += take;
    offset += take;
    length -= take;
  }
  return 0;
}

int ChunkGate::spill_write(uint64_t offset, const std::byte* src, uint64_t length) noexcept {
  if (!spill_) return EIO;
  if (src && aligned(offset, src, length)) return spill_->write(offset, src, length);
  std::byte* bounce = bounce_->data();
  while (length > 0) {
    const uint64_t start = offset / spill_block * spill_block;
    const uint64_t stop = std::min((offset + length + spill_block - 1) / spill_block * spill_block,
                                   start + bounce_->size());
    const uint64_t take = std::min(offset + length, stop) - offset;
    const bool head = offset != start;
    const bool tail = offset + take != stop;
    std::unique_lock lock(spill_rmw_mutex, std::defer_lock);
    if (head || tail) {
      lock.lock();
      if (head) {
        if (const int error = spill_->read(start, bounce, spill_block); error != 0) return error;
      }
      if (tail && !(head && stop - start == spill_block)) {
        const uint64_t last = stop - spill_block;
        if (const int error = spill_->read(last, bounce + (last - start), spill_block); error != 0)
          return error;
      }
    }
    if (src) {
      std::memcpy(bounce + (offset - start), src, take);
      src += take;
    } else {
      std::memset(bounce + (offset - start), 0, take);
    }
    if (const int error = spill_->write(start, bounce, stop - start); error != 0) return error;
    offset += take;
    length -= take;
  }
  return 0;
}

// The request's own failure: it gets EIO when the round settles.
void ChunkGate::spill_failed(Reply& r, int error, uint64_t offset) noexcept {
  r.copy_pending = r.copy_failed = true;
  health_.spill_failed(error, offset);
}

}  // namespace vramswap::engine
