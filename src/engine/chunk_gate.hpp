#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "engine/connection.hpp"
#include "engine/copy_round.hpp"
#include "engine/health.hpp"
#include "store/chunk_map.hpp"
#include "store/spill_area.hpp"

namespace vramswap::engine {

// The elastic-VRAM part of a worker (src/store/ELASTIC.md, "The engine
// gateway"): pins the chunks a request touches before storage sees it, and
// sends each piece of it to the tier its chunk is pinned in: VRAM through
// the round's copies, the spill area by synchronous O_DIRECT I/O through a
// bounce buffer of its own, a chunk with no storage (`none`) as zeros. With
// no chunk map (every block always in VRAM) it pins nothing and hands every
// copy to the round as before.
class ChunkGate {
 public:
  // How long a request waits for a chunk in motion (or a write for a chunk
  // to be given storage) before it is answered EIO. A move of one 2 MiB chunk
  // takes milliseconds (a DMA and a 2 MiB O_DIRECT write or read); a mover
  // waits at most its own drain deadline for requests. Seconds, then, mean a
  // mover that is stuck (a disk that hangs, a GPU that does not answer), and
  // the kernel's own request timeout (30 s by default) should not be the one
  // to find out: a request fails on its own first, the device lives on.
  static constexpr int64_t wait_bound_ns = 10'000'000'000;
  // While a write waits for storage, the mover is asked again this often
  // (the first ask might have been refused: a full queue, a busy chunk).
  static constexpr int64_t storage_ask_interval_ns = 100'000'000;
  // The bounce buffer of spill I/O: any piece larger is done in turns.
  static constexpr size_t bounce_bytes = 256 * 1024;

  // `map` and `spill` null: no elastic tier. `want_storage` may be empty.
  // Throws StartupError when the bounce buffer cannot be had.
  ChunkGate(store::ChunkMap* map, store::SpillArea* spill,
            const std::function<void(size_t chunk)>& want_storage, CopyRound& copies,
            Health& health);

  bool enabled() const noexcept { return map_ != nullptr; }

  enum class Admission : uint8_t {
    go,    // pinned (or nothing to pin)
    wait,  // a chunk is in motion, or a write met a chunk with no storage: come back later
  };
  // Pins the chunks of [offset, offset + length) without waiting (the
  // worker must never sleep on a chunk while it holds other requests' pins).
  // `write`: a chunk with no storage is asked for (want_storage, at most every
  // storage_ask_interval_ns per connection) and waited for like one in motion.
  Admission admit(Connection& connection, store::ChunkPins& pins, uint64_t offset, uint64_t length,
                  bool write) noexcept;
  // The connection has waited past wait_bound_ns (monotonic `now`).
  static bool waited_too_long(const Connection& connection, int64_t now) noexcept {
    return connection.chunk_wait_since_ns != 0 &&
           now - connection.chunk_wait_since_ns > wait_bound_ns;
  }
  // The request that waited gets EIO: counted and logged, rate-limited.
  void wait_failed(uint64_t offset) noexcept;

  // Live data: a write stores [offset, +length); TRIM or WRITE_ZEROES leaves
  // it unused. The caller holds the pins.
  void written(uint64_t offset, uint64_t length) noexcept {
    if (map_) map_->mark_written(offset, length);
  }
  void unused(uint64_t offset, uint64_t length) noexcept {
    if (map_) map_->mark_unused(offset, length);
  }

  // The pieces of a request, by the tier of each chunk in `reply.pins`
  // (without a map: a copy on the round, as before). A spill I/O that fails
  // marks the reply's copy failed: it gets EIO when the round settles.
  void read(Reply& reply, std::byte* dst, uint64_t offset, size_t length) noexcept;
  void write(Reply& reply, uint64_t offset, const std::byte* src, size_t length) noexcept;
  void zero(Reply& reply, uint64_t offset, uint64_t length) noexcept;

 private:
  // Calls run(tier, offset, length) for each run of chunks of one tier.
  template <typename Run>
  void for_each_run(const store::ChunkPins& pins, uint64_t offset, uint64_t length,
                    Run run) const noexcept;
  int spill_read(uint64_t offset, std::byte* dst, uint64_t length) noexcept;
  // src null: zeros.
  int spill_write(uint64_t offset, const std::byte* src, uint64_t length) noexcept;
  void spill_failed(Reply& reply, int error, uint64_t offset) noexcept;

  store::ChunkMap* map_;
  store::SpillArea* spill_;
  const std::function<void(size_t chunk)>& want_storage_;
  CopyRound& copies_;
  Health& health_;
  std::optional<store::SpillBuffer> bounce_;  // page-aligned, locked: O_DIRECT I/O
};

}  // namespace vramswap::engine
