#include "store/chunk_map.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <utility>

namespace vramswap::store {

namespace {

// A chunk's word is the futex both sides sleep on: a request waits for it to
// leave motion, a mover for its pins to drain.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
static_assert(std::atomic<uint32_t>::is_always_lock_free);
// The state may lie in memory that outlives the process (live restart): the
// atomics must be the plain integers they hold, with no lock beside them.
static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(alignof(std::atomic<uint64_t>) == sizeof(uint64_t));

uint32_t* futex_address(std::atomic<uint32_t>& word) noexcept {
  return reinterpret_cast<uint32_t*>(&word);
}

// Sleeps while `word` still holds `expected`, until woken or `deadline`.
// False once the deadline has passed.
bool futex_wait_until(std::atomic<uint32_t>& word, uint32_t expected,
                      const Deadline& deadline) noexcept {
  const long result =
      syscall(SYS_futex, futex_address(word), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
              &deadline.at, nullptr, FUTEX_BITSET_MATCH_ANY);
  return result == 0 || errno != ETIMEDOUT;
}

void futex_wake_all(std::atomic<uint32_t>& word) noexcept {
  syscall(SYS_futex, futex_address(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, nullptr,
          nullptr, 0);
}

constexpr uint64_t round_up(uint64_t value, uint64_t to) noexcept {
  return (value + to - 1) / to * to;
}

uint64_t chunk_count_of(uint64_t export_bytes, uint64_t chunk_bytes) noexcept {
  return (export_bytes + chunk_bytes - 1) / chunk_bytes;
}

uint64_t words_per_chunk_of(uint64_t chunk_bytes) noexcept {
  return (chunk_bytes / ChunkMap::block_bytes + 63) / 64;
}

// Starts the lifetime of an atomic in storage the map did not allocate,
// holding the value its bytes hold (written by this process or by a daemon
// before it), so that the map only ever uses objects that exist.
template <class T>
void adopt_bytes(std::atomic<T>* object) noexcept {
  T value;
  std::memcpy(&value, static_cast<const void*>(object), sizeof value);
  std::construct_at(object, value);
}

uint64_t word_mask(uint64_t first_bit, uint64_t end_bit) noexcept {
  const uint64_t upper = end_bit == 64 ? ~0ull : (1ull << end_bit) - 1;
  return upper & ~((1ull << first_bit) - 1);
}

}  // namespace

const char* tier_name(Tier tier) noexcept {
  static constexpr const char* names[] = {"vram", "spill", "none"};
  return static_cast<size_t>(tier) < std::size(names) ? names[static_cast<size_t>(tier)] : "?";
}

const char* motion_name(Motion motion) noexcept {
  static constexpr const char* names[] = {"resident", "evicting", "restoring"};
  return static_cast<size_t>(motion) < std::size(names) ? names[static_cast<size_t>(motion)] : "?";
}

Deadline Deadline::after(std::chrono::nanoseconds wait) noexcept {
  Deadline deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline.at);
  const int64_t nanoseconds = deadline.at.tv_nsec + std::max<int64_t>(wait.count(), 0);
  deadline.at.tv_sec += static_cast<time_t>(nanoseconds / 1'000'000'000);
  deadline.at.tv_nsec = static_cast<long>(nanoseconds % 1'000'000'000);
  return deadline;
}

// ---- ChunkPins ----

ChunkPins::ChunkPins(ChunkPins&& other) noexcept
    : map_(std::exchange(other.map_, nullptr)),
      result_(other.result_),
      first_(other.first_),
      count_(std::exchange(other.count_, 0)) {}

ChunkPins& ChunkPins::operator=(ChunkPins&& other) noexcept {
  if (this != &other) {
    release();
    map_ = std::exchange(other.map_, nullptr);
    result_ = other.result_;
    first_ = other.first_;
    count_ = std::exchange(other.count_, 0);
  }
  return *this;
}

Tier ChunkPins::tier(size_t chunk) const noexcept {
  return map_->tier(chunk);
}

void ChunkPins::release() noexcept {
  if (map_ != nullptr && result_ == Result::pinned && count_ > 0) map_->unpin(first_, count_);
  map_ = nullptr;
  count_ = 0;
}

// ---- ChunkMap ----

uint64_t ChunkMap::storage_bytes(uint64_t export_bytes, uint64_t chunk_bytes) noexcept {
  const uint64_t chunks = chunk_count_of(export_bytes, chunk_bytes);
  return round_up(chunks * sizeof(uint32_t), sizeof(uint64_t)) +
         chunks * words_per_chunk_of(chunk_bytes) * sizeof(uint64_t);
}

ChunkMapStorage ChunkMap::storage_at(void* base, uint64_t export_bytes,
                                     uint64_t chunk_bytes) noexcept {
  auto* bytes = static_cast<std::byte*>(base);
  const uint64_t chunks = chunk_count_of(export_bytes, chunk_bytes);
  return {reinterpret_cast<std::atomic<uint32_t>*>(bytes),
          reinterpret_cast<std::atomic<uint64_t>*>(
              bytes + round_up(chunks * sizeof(uint32_t), sizeof(uint64_t)))};
}

void ChunkMap::set_geometry(uint64_t export_bytes, uint64_t chunk_bytes) {
  if (export_bytes == 0 || export_bytes % block_bytes != 0)
    throw std::invalid_argument("chunk map: the export must be a whole number of 4 KiB blocks");
  if (chunk_bytes == 0 || chunk_bytes % block_bytes != 0)
    throw std::invalid_argument("chunk map: a chunk must be a whole number of 4 KiB blocks");
  export_bytes_ = export_bytes;
  chunk_bytes_ = chunk_bytes;
  chunk_count_ = static_cast<size_t>(chunk_count_of(export_bytes, chunk_bytes));
  blocks_per_chunk_ = chunk_bytes / block_bytes;
  words_per_chunk_ = static_cast<size_t>(words_per_chunk_of(chunk_bytes));
}

ChunkMap::ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes, Tier initial) {
  set_geometry(export_bytes, chunk_bytes);
  owned_ = std::make_unique_for_overwrite<uint64_t[]>(storage_bytes(export_bytes, chunk_bytes) /
                                                      sizeof(uint64_t));
  start_fresh(storage_at(owned_.get(), export_bytes, chunk_bytes), initial);
}

ChunkMap::ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes, ChunkMapStorage storage,
                   Tier initial) {
  set_geometry(export_bytes, chunk_bytes);
  start_fresh(storage, initial);
}

ChunkMap::ChunkMap(uint64_t export_bytes, uint64_t chunk_bytes, ChunkMapStorage storage,
                   const std::function<bool(size_t)>& vram_kept, Recovery& report) {
  set_geometry(export_bytes, chunk_bytes);
  recover(storage, vram_kept, report);
}

void ChunkMap::start_fresh(ChunkMapStorage storage, Tier initial) {
  if (storage.words == nullptr || storage.live == nullptr)
    throw std::invalid_argument("chunk map: no storage");
  words_ = storage.words;
  live_ = storage.live;
  for (size_t i = 0; i < chunk_count_; ++i)
    std::construct_at(&words_[i], static_cast<uint32_t>(initial));
  for (size_t i = 0; i < chunk_count_ * words_per_chunk_; ++i)
    std::construct_at(&live_[i], uint64_t{0});
}

void ChunkMap::recover(ChunkMapStorage storage, const std::function<bool(size_t)>& vram_kept,
                       Recovery& report) {
  if (storage.words == nullptr || storage.live == nullptr)
    throw std::invalid_argument("chunk map: no storage");
  words_ = storage.words;
  live_ = storage.live;
  report = Recovery{};
  for (size_t i = 0; i < chunk_count_; ++i)
    adopt_bytes(&words_[i]);
  for (size_t i = 0; i < chunk_count_ * words_per_chunk_; ++i)
    adopt_bytes(&live_[i]);
  // Bits 4-7 are never set; a motion is only ever the one its tier allows.
  constexpr uint32_t unused_bits = 0xf0;
  for (size_t chunk = 0; chunk < chunk_count_; ++chunk) {
    const uint32_t word = words_[chunk].load(std::memory_order_relaxed);
    const auto tier = tier_of(word);
    const auto motion = motion_of(word);
    const bool valid = tier <= Tier::none && motion <= Motion::restoring &&
                       (word & unused_bits) == 0 &&
                       (motion != Motion::evicting || tier == Tier::vram) &&
                       (motion != Motion::restoring || tier != Tier::vram);
    if (!valid) {
      if (report.damaged_chunks++ == 0) report.first_damaged = chunk;
      continue;
    }
    if (pins_of(word) != 0) ++report.pins_cleared;
    const bool live = has_live_data(chunk);
    Tier settled = tier;
    if (motion == Motion::evicting) {
      ++report.evicting_fixed;
      // Decided below with the resident ones: VRAM if it came back.
    } else if (motion == Motion::restoring) {
      ++report.restoring_fixed;
    }
    if (settled == Tier::vram && !vram_kept(chunk)) {
      if (motion == Motion::evicting) {
        // The copy out completed before the VRAM went: the spill area has it.
        settled = live ? Tier::spill : Tier::none;
      } else if (!live) {
        settled = Tier::none;
        ++report.empty_vram_dropped;
      } else if (report.vram_lost_chunks++ == 0) {
        report.first_lost = chunk;
      }
    }
    words_[chunk].store(static_cast<uint32_t>(settled), std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
}

uint64_t ChunkMap::chunk_length(size_t chunk) const noexcept {
  const uint64_t start = chunk_offset(chunk);
  return start >= export_bytes_ ? 0 : std::min(chunk_bytes_, export_bytes_ - start);
}

ChunkPins ChunkMap::pin(uint64_t offset, uint64_t length, const Deadline& deadline) noexcept {
  if (length == 0 || offset >= export_bytes_ || length > export_bytes_ - offset)
    return ChunkPins(this, ChunkPins::Result::out_of_range, 0, 0);
  const size_t first = chunk_of(offset);
  const size_t end = chunk_of(offset + length - 1) + 1;
  size_t chunk = first;
  while (chunk < end) {
    uint32_t word = words_[chunk].load(std::memory_order_acquire);
    if (motion_of(word) == Motion::resident) {
      if (words_[chunk].compare_exchange_weak(word, word + pin_one, std::memory_order_acq_rel,
                                              std::memory_order_acquire))
        ++chunk;
      continue;
    }
    // In motion: give back what this request holds, so that no mover waits
    // for a request that waits for a mover, then sleep until it settles.
    unpin(first, chunk - first);
    if (!wait_while_moving(chunk, deadline))
      return ChunkPins(this, ChunkPins::Result::timed_out, 0, 0);
    chunk = first;
  }
  return ChunkPins(this, ChunkPins::Result::pinned, first, end - first);
}

bool ChunkMap::wait_while_moving(size_t chunk, const Deadline& deadline) noexcept {
  for (;;) {
    const uint32_t word = words_[chunk].load(std::memory_order_acquire);
    if (motion_of(word) == Motion::resident) return true;
    if (!futex_wait_until(words_[chunk], word, deadline))
      return motion_of(words_[chunk].load(std::memory_order_acquire)) == Motion::resident;
  }
}

void ChunkMap::unpin(size_t first, size_t count) noexcept {
  for (size_t chunk = first; chunk < first + count; ++chunk) {
    const uint32_t before = words_[chunk].fetch_sub(pin_one, std::memory_order_acq_rel);
    // The last request out of a chunk in motion lets its mover go on.
    if (motion_of(before) != Motion::resident && pins_of(before) == 1)
      futex_wake_all(words_[chunk]);
  }
}

ChunkMap::MoveStart ChunkMap::begin_move(size_t chunk, Motion direction,
                                         const Deadline& deadline) noexcept {
  std::atomic<uint32_t>& state = words_[chunk];
  uint32_t word = state.load(std::memory_order_acquire);
  for (;;) {
    if (motion_of(word) != Motion::resident) return MoveStart::already_moving;
    const bool in_vram = tier_of(word) == Tier::vram;
    if (direction == Motion::resident || (direction == Motion::evicting) != in_vram)
      return MoveStart::wrong_tier;
    const uint32_t moving =
        (word & ~motion_mask) | (static_cast<uint32_t>(direction) << motion_shift);
    if (state.compare_exchange_weak(word, moving, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      word = moving;
      break;
    }
  }
  // New requests now wait; the ones already in drain out.
  while (pins_of(word) != 0) {
    if (!futex_wait_until(state, word, deadline)) {
      word = state.load(std::memory_order_acquire);
      if (pins_of(word) == 0) break;
      end_move(chunk, tier_of(word));
      return MoveStart::drain_timed_out;
    }
    word = state.load(std::memory_order_acquire);
  }
  return MoveStart::started;
}

bool ChunkMap::complete_move(size_t chunk, Tier destination) noexcept {
  const Motion moving = motion(chunk);
  // A restore lands in VRAM; one of a chunk with no storage (`none`) may
  // land in the spill area instead, when there was no VRAM to give it.
  const bool allowed =
      (moving == Motion::evicting && destination != Tier::vram) ||
      (moving == Motion::restoring &&
       (destination == Tier::vram || (destination == Tier::spill && tier(chunk) == Tier::none)));
  if (!allowed) return false;
  end_move(chunk, destination);
  return true;
}

void ChunkMap::abandon_move(size_t chunk) noexcept {
  if (motion(chunk) != Motion::resident) end_move(chunk, tier(chunk));
}

void ChunkMap::end_move(size_t chunk, Tier tier) noexcept {
  std::atomic<uint32_t>& state = words_[chunk];
  uint32_t word = state.load(std::memory_order_relaxed);
  // Release: whoever pins the chunk next sees the bytes the mover put there.
  while (!state.compare_exchange_weak(
      word, (word & ~(tier_mask | motion_mask)) | static_cast<uint32_t>(tier),
      std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
  futex_wake_all(state);
}

// ---- Live data ----

void ChunkMap::set_live(uint64_t first_block, uint64_t end_block, bool live) noexcept {
  uint64_t block = first_block;
  while (block < end_block) {
    const size_t chunk = static_cast<size_t>(block / blocks_per_chunk_);
    const uint64_t in_chunk = block % blocks_per_chunk_;
    const uint64_t chunk_end = std::min<uint64_t>(end_block, (chunk + 1) * blocks_per_chunk_);
    const uint64_t bit = in_chunk % 64;
    const uint64_t bits = std::min<uint64_t>(64 - bit, chunk_end - block);
    const uint64_t mask = word_mask(bit, bit + bits);
    std::atomic<uint64_t>& target = live_words(chunk)[in_chunk / 64];
    // Relaxed: the pins order these against a mover's reads.
    if (live)
      target.fetch_or(mask, std::memory_order_relaxed);
    else
      target.fetch_and(~mask, std::memory_order_relaxed);
    block += bits;
  }
}

void ChunkMap::mark_written(uint64_t offset, uint64_t length) noexcept {
  if (length == 0 || offset >= export_bytes_) return;
  const uint64_t end = std::min(export_bytes_, offset + std::min(length, export_bytes_ - offset));
  set_live(offset / block_bytes, (end + block_bytes - 1) / block_bytes, true);
}

void ChunkMap::mark_unused(uint64_t offset, uint64_t length) noexcept {
  if (length == 0 || offset >= export_bytes_) return;
  const uint64_t end = std::min(export_bytes_, offset + std::min(length, export_bytes_ - offset));
  const uint64_t first = (offset + block_bytes - 1) / block_bytes;
  const uint64_t last = end / block_bytes;
  if (first < last) set_live(first, last, false);
}

// ---- Queries ----

Tier ChunkMap::tier(size_t chunk) const noexcept {
  return tier_of(words_[chunk].load(std::memory_order_acquire));
}

Motion ChunkMap::motion(size_t chunk) const noexcept {
  return motion_of(words_[chunk].load(std::memory_order_acquire));
}

uint32_t ChunkMap::pin_count(size_t chunk) const noexcept {
  return pins_of(words_[chunk].load(std::memory_order_acquire));
}

uint64_t ChunkMap::live_bytes(size_t chunk) const noexcept {
  uint64_t blocks = 0;
  for (size_t i = 0; i < words_per_chunk_; ++i)
    blocks +=
        static_cast<uint64_t>(std::popcount(live_words(chunk)[i].load(std::memory_order_relaxed)));
  return blocks * block_bytes;
}

bool ChunkMap::has_live_data(size_t chunk) const noexcept {
  for (size_t i = 0; i < words_per_chunk_; ++i)
    if (live_words(chunk)[i].load(std::memory_order_relaxed) != 0) return true;
  return false;
}

void ChunkMap::save_live(size_t chunk, uint64_t* words) const noexcept {
  for (size_t i = 0; i < words_per_chunk_; ++i)
    words[i] = live_words(chunk)[i].load(std::memory_order_relaxed);
}

void ChunkMap::load_chunk(size_t chunk, Tier tier, const uint64_t* words) noexcept {
  words_[chunk].store(static_cast<uint32_t>(tier), std::memory_order_release);
  for (size_t i = 0; i < words_per_chunk_; ++i)
    live_words(chunk)[i].store(words[i], std::memory_order_relaxed);
}

ChunkMap::Census ChunkMap::census() const noexcept {
  Census census;
  for (size_t chunk = 0; chunk < chunk_count_; ++chunk) {
    const uint32_t word = words_[chunk].load(std::memory_order_acquire);
    const uint64_t bytes = chunk_length(chunk);
    switch (tier_of(word)) {
      case Tier::vram:
        census.vram_bytes += bytes;
        break;
      case Tier::spill:
        census.spill_bytes += bytes;
        break;
      case Tier::none:
        census.none_bytes += bytes;
        break;
    }
    if (motion_of(word) != Motion::resident) ++census.moving_chunks;
    census.live_bytes += live_bytes(chunk);
  }
  return census;
}

}  // namespace vramswap::store
