// The chunk map on storage it does not own (the live restart's region), and
// the recovery of such storage as a dead daemon left it.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <future>
#include <set>
#include <vector>

#include "store/chunk_map.hpp"

using namespace std::chrono_literals;
using vramswap::store::ChunkMap;
using vramswap::store::ChunkMapStorage;
using vramswap::store::ChunkPins;
using vramswap::store::Deadline;
using vramswap::store::Motion;
using vramswap::store::Tier;

namespace {

constexpr uint64_t kBlock = ChunkMap::block_bytes;
constexpr uint64_t kChunk = 128 * kBlock;  // two words of live bits per chunk
using Start = ChunkMap::MoveStart;

// Storage as a region hands it out: bytes that hold whatever they held.
struct Storage {
  std::vector<uint64_t> words;
  Storage(uint64_t export_bytes, uint64_t chunk_bytes, uint64_t fill)
      : words(ChunkMap::storage_bytes(export_bytes, chunk_bytes) / 8, fill) {}
  ChunkMapStorage at(uint64_t export_bytes, uint64_t chunk_bytes) {
    return ChunkMap::storage_at(words.data(), export_bytes, chunk_bytes);
  }
};

}  // namespace

TEST_CASE("storage: one word per chunk, then the live bits, 8-byte aligned") {
  // 3 chunks: 12 bytes of words padded to 16, then 3 x 2 words of bits.
  CHECK(ChunkMap::storage_bytes(3 * kChunk, kChunk) == 16 + 3 * 2 * 8);
  // One block: one word padded to 8, and a whole chunk's bits (a short chunk has them too).
  CHECK(ChunkMap::storage_bytes(kBlock, kChunk) == 8 + 2 * 8);
  std::vector<uint64_t> bytes(4);
  const ChunkMapStorage storage = ChunkMap::storage_at(bytes.data(), 3 * kChunk, kChunk);
  CHECK(reinterpret_cast<std::byte*>(storage.words) == reinterpret_cast<std::byte*>(bytes.data()));
  CHECK(reinterpret_cast<std::byte*>(storage.live) ==
        reinterpret_cast<std::byte*>(bytes.data()) + 16);
}

TEST_CASE("a map on given storage starts fresh over whatever it held, and keeps its state there") {
  constexpr uint64_t kExport = 4 * kChunk;
  Storage storage(kExport, kChunk, ~0ull);
  ChunkMap map(kExport, kChunk, storage.at(kExport, kChunk), Tier::none);
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    CHECK(map.tier(chunk) == Tier::none);
    CHECK(map.motion(chunk) == Motion::resident);
    CHECK(map.pin_count(chunk) == 0);
    CHECK_FALSE(map.has_live_data(chunk));
  }
  map.mark_written(kChunk + 70 * kBlock, kBlock);  // block 70: the second word of chunk 1
  const ChunkMapStorage view = storage.at(kExport, kChunk);
  CHECK(view.live[2].load() == 0);
  CHECK(view.live[3].load() == 1ull << 6);
  CHECK_THROWS_AS(ChunkMap(kExport, kChunk, ChunkMapStorage{}, Tier::vram), std::invalid_argument);
  CHECK_THROWS_AS(ChunkMap(kExport + 1, kChunk, storage.at(kExport, kChunk), Tier::vram),
                  std::invalid_argument);
}

TEST_CASE("requests wait on a chunk in motion in given storage, and go on when it lands") {
  constexpr uint64_t kExport = 2 * kChunk;
  Storage storage(kExport, kChunk, 0);
  ChunkMap map(kExport, kChunk, storage.at(kExport, kChunk), Tier::spill);
  REQUIRE(map.begin_move(1, Motion::restoring, Deadline::after(1s)) == Start::started);
  auto request = std::async(std::launch::async, [&map] {
    const ChunkPins pins = map.pin(kChunk, kBlock, Deadline::after(10s));
    return pins.ok() ? pins.tier(1) : Tier::none;
  });
  CHECK(request.wait_for(50ms) == std::future_status::timeout);  // asleep on the futex
  REQUIRE(map.complete_move(1, Tier::vram));
  CHECK(request.get() == Tier::vram);
}

namespace {

// The map's storage as it was at one instant (a daemon's death), taken while
// the map that wrote it stays consistent for its own teardown.
std::vector<uint64_t> snapshot(const Storage& storage) {
  return storage.words;
}

}  // namespace

TEST_CASE("recovery settles every chunk a dead daemon left: no pin, no motion, no lost write") {
  constexpr size_t kChunks = 10;
  constexpr uint64_t kExport = kChunks * kChunk;
  Storage storage(kExport, kChunk, 0);
  ChunkMap map(kExport, kChunk, storage.at(kExport, kChunk), Tier::vram);
  auto write = [&map](size_t chunk, uint64_t blocks) {
    map.mark_written(chunk * kChunk, blocks * kBlock);
  };
  auto evict_to = [&map](size_t chunk, Tier tier) {
    REQUIRE(map.begin_move(chunk, Motion::evicting, Deadline::after(1s)) == Start::started);
    REQUIRE(map.complete_move(chunk, tier));
  };
  // 0: in VRAM, written, pinned by a request that dies with the daemon.
  write(0, 3);
  const ChunkPins pinned = map.pin(0, kBlock, Deadline::after(1s));
  REQUIRE(pinned.ok());
  // 1 and 2: caught evicting; 1's VRAM is gone (released after the copy out),
  // 2's came back.
  write(1, 100);
  write(2, 5);
  REQUIRE(map.begin_move(1, Motion::evicting, Deadline::after(1s)) == Start::started);
  REQUIRE(map.begin_move(2, Motion::evicting, Deadline::after(1s)) == Start::started);
  // 3: in the spill area, caught restoring (its fresh VRAM came back).
  write(3, 7);
  evict_to(3, Tier::spill);
  REQUIRE(map.begin_move(3, Motion::restoring, Deadline::after(1s)) == Start::started);
  // 4: `none`, caught restoring.
  evict_to(4, Tier::none);
  REQUIRE(map.begin_move(4, Motion::restoring, Deadline::after(1s)) == Start::started);
  // 5 and 8: resident in VRAM with live data, VRAM gone: lost.
  write(5, 1);
  write(8, 2);
  // 6: caught evicting with no live data, VRAM gone; 7: resident, empty, VRAM gone.
  REQUIRE(map.begin_move(6, Motion::evicting, Deadline::after(1s)) == Start::started);
  // 9: resident in the spill area.
  write(9, 4);
  evict_to(9, Tier::spill);

  std::vector<uint64_t> dead = snapshot(storage);
  const std::set<size_t> kept = {0, 2, 3};
  std::vector<size_t> asked;
  ChunkMap::Recovery report;
  ChunkMap recovered(
      kExport, kChunk, ChunkMap::storage_at(dead.data(), kExport, kChunk),
      [&](size_t chunk) {
        asked.push_back(chunk);
        return kept.count(chunk) > 0;
      },
      report);

  const Tier expected[kChunks] = {Tier::vram, Tier::spill, Tier::vram, Tier::spill, Tier::none,
                                  Tier::vram, Tier::none,  Tier::none, Tier::vram,  Tier::spill};
  const uint64_t live_blocks[kChunks] = {3, 100, 5, 7, 0, 1, 0, 0, 2, 4};
  for (size_t chunk = 0; chunk < kChunks; ++chunk) {
    INFO("chunk " << chunk);
    CHECK(recovered.tier(chunk) == expected[chunk]);
    CHECK(recovered.motion(chunk) == Motion::resident);
    CHECK(recovered.pin_count(chunk) == 0);
    CHECK(recovered.live_bytes(chunk) == live_blocks[chunk] * kBlock);
  }
  CHECK(report.vram_lost_chunks == 2);
  CHECK(report.first_lost == 5);
  CHECK(report.damaged_chunks == 0);
  CHECK(report.evicting_fixed == 3);
  CHECK(report.restoring_fixed == 2);
  CHECK(report.pins_cleared == 1);
  CHECK(report.empty_vram_dropped == 1);
  CHECK_FALSE(report.usable());
  // Only chunks that would be in VRAM need their VRAM back.
  CHECK(std::set<size_t>(asked.begin(), asked.end()) == std::set<size_t>{0, 1, 2, 5, 6, 7, 8});

  // The recovered map works: no stale pin holds a mover, nothing waits.
  CHECK(recovered.begin_move(0, Motion::evicting, Deadline::after(0ms)) == Start::started);
  CHECK(recovered.complete_move(0, Tier::spill));
  CHECK(recovered.begin_move(3, Motion::restoring, Deadline::after(0ms)) == Start::started);
  CHECK(recovered.complete_move(3, Tier::vram));
  CHECK(recovered.pin(0, 4 * kChunk, Deadline::after(0ms)).ok());

  // The live map is untouched by the recovery of its copy.
  CHECK(map.motion(1) == Motion::evicting);
  CHECK(map.pin_count(0) == 1);
  map.abandon_move(1);
  map.abandon_move(2);
  map.abandon_move(3);
  map.abandon_move(4);
  map.abandon_move(6);
}

TEST_CASE("recovery with all VRAM back keeps every chunk where a request would find it") {
  constexpr uint64_t kExport = 3 * kChunk;
  Storage storage(kExport, kChunk, 0);
  ChunkMap map(kExport, kChunk, storage.at(kExport, kChunk), Tier::vram);
  map.mark_written(0, kExport);
  ChunkMap::Recovery report;
  report.vram_lost_chunks = 99;  // the report is reset, not added to
  ChunkMap recovered(
      kExport, kChunk, storage.at(kExport, kChunk), [](size_t) { return true; }, report);
  CHECK(report.usable());
  CHECK(report.vram_lost_chunks == 0);
  CHECK(recovered.census().vram_bytes == kExport);
  CHECK(recovered.census().live_bytes == kExport);
}

TEST_CASE("recovery reports words no daemon writes, and leaves them for the refusal") {
  constexpr uint64_t kExport = 4 * kChunk;
  Storage storage(kExport, kChunk, 0);
  ChunkMap map(kExport, kChunk, storage.at(kExport, kChunk), Tier::spill);
  std::vector<uint64_t> dead = snapshot(storage);
  const ChunkMapStorage view = ChunkMap::storage_at(dead.data(), kExport, kChunk);
  view.words[1].store(3);                                             // no such tier
  view.words[2].store(static_cast<uint32_t>(Motion::evicting) << 2 |  // evicting, yet
                      static_cast<uint32_t>(Tier::spill));            // not in VRAM
  ChunkMap::Recovery report;
  ChunkMap recovered(
      kExport, kChunk, view, [](size_t) { return false; }, report);
  CHECK(report.damaged_chunks == 2);
  CHECK(report.first_damaged == 1);
  CHECK_FALSE(report.usable());
  CHECK(recovered.tier(0) == Tier::spill);
  CHECK(recovered.tier(3) == Tier::spill);
}
