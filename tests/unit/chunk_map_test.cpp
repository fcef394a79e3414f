#include "store/chunk_map.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using vramswap::store::ChunkMap;
using vramswap::store::ChunkPins;
using vramswap::store::Deadline;
using vramswap::store::Motion;
using vramswap::store::Tier;

namespace {

constexpr uint64_t kBlock = ChunkMap::block_bytes;
constexpr uint64_t kChunk = 64 * kBlock;  // 256 KiB: small maps, same rules
using Start = ChunkMap::MoveStart;

Deadline soon() {
  return Deadline::after(20ms);
}
Deadline generous() {
  return Deadline::after(10s);
}

// Waits (bounded) until `condition` holds; false if it never did.
template <class Condition>
bool eventually(Condition condition) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("the export is cut into chunks of the given size, the last one may be short") {
  const ChunkMap map(10 * kChunk + 3 * kBlock, kChunk);
  CHECK(map.chunk_count() == 11);
  CHECK(map.chunk_length(0) == kChunk);
  CHECK(map.chunk_length(10) == 3 * kBlock);
  CHECK(map.chunk_of(kChunk - 1) == 0);
  CHECK(map.chunk_of(kChunk) == 1);
  CHECK(ChunkMap(8 * ChunkMap::default_chunk_bytes).chunk_count() == 8);
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    CHECK(map.tier(chunk) == Tier::vram);
    CHECK(map.motion(chunk) == Motion::resident);
    CHECK_FALSE(map.has_live_data(chunk));
  }
  CHECK_THROWS_AS(ChunkMap(kChunk + 1, kChunk), std::invalid_argument);
  CHECK_THROWS_AS(ChunkMap(0, kChunk), std::invalid_argument);
  CHECK_THROWS_AS(ChunkMap(kChunk, kBlock + 512), std::invalid_argument);
  CHECK(ChunkMap(kChunk, kChunk, Tier::none).tier(0) == Tier::none);
}

TEST_CASE("a request pins every chunk it touches, and only while it runs") {
  ChunkMap map(4 * kChunk, kChunk);
  {
    const ChunkPins pins = map.pin(kChunk - kBlock, 2 * kBlock, soon());
    REQUIRE(pins.ok());
    CHECK(pins.first() == 0);
    CHECK(pins.count() == 2);
    CHECK(pins.tier(1) == Tier::vram);
    CHECK(map.pin_count(0) == 1);
    CHECK(map.pin_count(1) == 1);
    CHECK(map.pin_count(2) == 0);
    const ChunkPins again = map.pin(kChunk, kBlock, soon());
    CHECK(map.pin_count(1) == 2);
  }
  for (size_t chunk = 0; chunk < 4; ++chunk)
    CHECK(map.pin_count(chunk) == 0);

  CHECK(map.pin(4 * kChunk, kBlock, soon()).result() == ChunkPins::Result::out_of_range);
  CHECK(map.pin(3 * kChunk, kChunk + kBlock, soon()).result() == ChunkPins::Result::out_of_range);
  CHECK(map.pin(0, 0, soon()).result() == ChunkPins::Result::out_of_range);
  for (size_t chunk = 0; chunk < 4; ++chunk)
    CHECK(map.pin_count(chunk) == 0);
}

TEST_CASE(
    "live data: writes mark the blocks they touch, TRIM and WRITE_ZEROES clear whole blocks") {
  ChunkMap map(4 * kChunk, kChunk);
  CHECK_FALSE(map.has_live_data(1));

  map.mark_written(kChunk + 100, 10);  // inside one block
  CHECK(map.has_live_data(1));
  CHECK(map.live_bytes(1) == kBlock);

  map.mark_unused(kChunk, kBlock - 1);  // covers no block whole: the write stays
  CHECK(map.live_bytes(1) == kBlock);
  map.mark_unused(kChunk, kBlock);
  CHECK_FALSE(map.has_live_data(1));

  // A write across a chunk boundary, partial blocks at both ends.
  map.mark_written(2 * kChunk - kBlock - 1, kBlock + 2);
  CHECK(map.live_bytes(1) == 2 * kBlock);
  CHECK(map.live_bytes(2) == kBlock);
  CHECK(map.census().live_bytes == 3 * kBlock);

  // Blocks past the 64th of a chunk (the second word of its bitmap).
  map.mark_written(3 * kChunk, kChunk);
  CHECK(map.live_bytes(3) == kChunk);
  map.mark_unused(3 * kChunk + kBlock, kChunk - 2 * kBlock);
  CHECK(map.live_bytes(3) == 2 * kBlock);

  map.mark_unused(0, 4 * kChunk);  // discard the whole device
  CHECK(map.census().live_bytes == 0);
  map.mark_written(4 * kChunk, kBlock);  // past the end: ignored
  CHECK(map.census().live_bytes == 0);
}

TEST_CASE("evict and restore: the chunk's tier changes only when the move completes") {
  ChunkMap map(2 * kChunk, kChunk);
  map.mark_written(0, kBlock);

  REQUIRE(map.begin_move(0, Motion::evicting, soon()) == Start::started);
  CHECK(map.motion(0) == Motion::evicting);
  CHECK(map.tier(0) == Tier::vram);
  CHECK(map.census().moving_chunks == 1);
  REQUIRE(map.complete_move(0, Tier::spill));
  CHECK(map.tier(0) == Tier::spill);
  CHECK(map.motion(0) == Motion::resident);
  CHECK(map.census().spill_bytes == kChunk);
  CHECK(map.has_live_data(0));  // moving keeps what the data is

  REQUIRE(map.begin_move(0, Motion::restoring, soon()) == Start::started);
  CHECK(map.motion(0) == Motion::restoring);
  REQUIRE(map.complete_move(0, Tier::vram));
  CHECK(map.tier(0) == Tier::vram);

  // A chunk with no live data leaves VRAM for nowhere, and comes back.
  REQUIRE(map.begin_move(1, Motion::evicting, soon()) == Start::started);
  REQUIRE(map.complete_move(1, Tier::none));
  CHECK(map.tier(1) == Tier::none);
  CHECK(map.census().none_bytes == kChunk);
  REQUIRE(map.begin_move(1, Motion::restoring, soon()) == Start::started);
  REQUIRE(map.complete_move(1, Tier::vram));
  CHECK(map.census().vram_bytes == 2 * kChunk);
}

TEST_CASE("a chunk with no storage may be restored into the spill area, no other chunk may") {
  ChunkMap map(2 * kChunk, kChunk, Tier::none);
  // `none` -> spill: the chunk is given its place in the spill area (no VRAM
  // was to be had), and requests see it there.
  REQUIRE(map.begin_move(0, Motion::restoring, soon()) == Start::started);
  CHECK_FALSE(map.complete_move(0, Tier::none));
  REQUIRE(map.complete_move(0, Tier::spill));
  CHECK(map.tier(0) == Tier::spill);
  CHECK(map.motion(0) == Motion::resident);
  ChunkPins pins = map.pin(0, kBlock, soon());
  REQUIRE(pins.ok());
  CHECK(pins.tier(0) == Tier::spill);
  pins.release();

  // A chunk already in the spill area is restored to VRAM only.
  REQUIRE(map.begin_move(0, Motion::restoring, soon()) == Start::started);
  CHECK_FALSE(map.complete_move(0, Tier::spill));
  CHECK(map.motion(0) == Motion::restoring);
  REQUIRE(map.complete_move(0, Tier::vram));
  CHECK(map.tier(0) == Tier::vram);
}

TEST_CASE("a move the chunk's state does not allow is refused and changes nothing") {
  ChunkMap map(2 * kChunk, kChunk);
  CHECK(map.begin_move(0, Motion::restoring, soon()) == Start::wrong_tier);  // already in VRAM
  CHECK(map.begin_move(0, Motion::resident, soon()) == Start::wrong_tier);
  CHECK_FALSE(map.complete_move(0, Tier::spill));  // not in motion
  CHECK(map.tier(0) == Tier::vram);

  REQUIRE(map.begin_move(0, Motion::evicting, soon()) == Start::started);
  CHECK(map.begin_move(0, Motion::evicting, soon()) == Start::already_moving);
  CHECK_FALSE(map.complete_move(0, Tier::vram));  // an evict cannot land in VRAM
  CHECK(map.motion(0) == Motion::evicting);
  map.abandon_move(0);

  REQUIRE(map.begin_move(1, Motion::evicting, soon()) == Start::started);
  REQUIRE(map.complete_move(1, Tier::spill));
  CHECK(map.begin_move(1, Motion::evicting, soon()) == Start::wrong_tier);  // already out
  REQUIRE(map.begin_move(1, Motion::restoring, soon()) == Start::started);
  CHECK_FALSE(map.complete_move(1, Tier::spill));  // a restore lands in VRAM
  map.abandon_move(1);
  CHECK(map.tier(1) == Tier::spill);
}

TEST_CASE("a failed evict keeps the chunk in VRAM, a failed restore keeps it in the spill area") {
  ChunkMap map(2 * kChunk, kChunk);
  map.mark_written(0, 2 * kChunk);

  REQUIRE(map.begin_move(0, Motion::evicting, soon()) == Start::started);
  map.abandon_move(0);
  CHECK(map.tier(0) == Tier::vram);
  CHECK(map.motion(0) == Motion::resident);
  CHECK(map.live_bytes(0) == kChunk);
  {
    const ChunkPins pins = map.pin(0, kBlock, soon());
    REQUIRE(pins.ok());
    CHECK(pins.tier(0) == Tier::vram);
  }

  REQUIRE(map.begin_move(1, Motion::evicting, soon()) == Start::started);
  REQUIRE(map.complete_move(1, Tier::spill));
  REQUIRE(map.begin_move(1, Motion::restoring, soon()) == Start::started);
  map.abandon_move(1);
  CHECK(map.tier(1) == Tier::spill);
  CHECK(map.motion(1) == Motion::resident);
  const ChunkPins pins = map.pin(kChunk, kBlock, soon());
  REQUIRE(pins.ok());
  CHECK(pins.tier(1) == Tier::spill);
}

TEST_CASE("a request arriving mid-move waits, then sees the new tier") {
  ChunkMap map(4 * kChunk, kChunk);
  REQUIRE(map.begin_move(2, Motion::evicting, generous()) == Start::started);

  std::atomic<bool> returned{false};
  auto request = std::async(std::launch::async, [&] {
    // Spans chunks 1-3: chunk 1 is free, chunk 2 is moving.
    ChunkPins pins = map.pin(kChunk + kBlock, 2 * kChunk, generous());
    returned = true;
    return pins.ok() ? pins.tier(2) : Tier::vram;
  });
  // While it waits it holds nothing, so the mover could also move chunk 1.
  REQUIRE(eventually([&] { return map.pin_count(1) == 0; }));
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(returned.load());
  CHECK(map.pin_count(1) == 0);

  REQUIRE(map.complete_move(2, Tier::spill));
  CHECK(request.get() == Tier::spill);
  for (size_t chunk = 0; chunk < 4; ++chunk)
    CHECK(map.pin_count(chunk) == 0);
}

TEST_CASE("a mover waits for the requests already in a chunk to finish") {
  ChunkMap map(2 * kChunk, kChunk);
  auto pins = map.pin(0, kBlock, soon());
  REQUIRE(pins.ok());

  auto mover = std::async(std::launch::async,
                          [&] { return map.begin_move(0, Motion::evicting, generous()); });
  REQUIRE(eventually([&] { return map.motion(0) == Motion::evicting; }));
  // New requests wait from the moment the chunk is marked...
  CHECK(map.pin(0, kBlock, soon()).result() == ChunkPins::Result::timed_out);
  // ...and the one in flight is still served where it started.
  CHECK(pins.tier(0) == Tier::vram);
  CHECK(mover.wait_for(0s) == std::future_status::timeout);
  pins.release();
  CHECK(mover.get() == Start::started);
  REQUIRE(map.complete_move(0, Tier::none));
}

TEST_CASE("the wait bounds expire cleanly") {
  ChunkMap map(3 * kChunk, kChunk);

  SECTION("a request that meets a chunk in motion past its deadline holds nothing") {
    REQUIRE(map.begin_move(1, Motion::evicting, soon()) == Start::started);
    const auto before = std::chrono::steady_clock::now();
    const ChunkPins pins = map.pin(0, 3 * kChunk, Deadline::after(30ms));
    CHECK(pins.result() == ChunkPins::Result::timed_out);
    CHECK(std::chrono::steady_clock::now() - before >= 30ms);
    for (size_t chunk = 0; chunk < 3; ++chunk)
      CHECK(map.pin_count(chunk) == 0);
    // The chunk is still moving, and its mover can finish.
    CHECK(map.motion(1) == Motion::evicting);
    REQUIRE(map.complete_move(1, Tier::spill));
    CHECK(map.pin(0, 3 * kChunk, soon()).ok());
  }

  SECTION("a mover whose chunk stays pinned past its deadline leaves it where it was") {
    map.mark_written(kChunk, kBlock);
    const ChunkPins pins = map.pin(kChunk, kBlock, soon());
    REQUIRE(pins.ok());
    CHECK(map.begin_move(1, Motion::evicting, Deadline::after(30ms)) == Start::drain_timed_out);
    CHECK(map.motion(1) == Motion::resident);
    CHECK(map.tier(1) == Tier::vram);
    CHECK(map.pin_count(1) == 1);
    CHECK(map.pin(kChunk, kBlock, soon()).ok());  // requests go on at once
  }
}

// Threads pin random ranges while a mover sends chunks back and forth. The
// mover rewrites each chunk's payload (plain memory, as the bytes of a real
// move are) while the chunk is in motion; requests read it while pinned. A
// request that ever saw a chunk mid-move would read a payload the mover was
// writing (ThreadSanitizer reports the race; the checks see a torn payload or
// a tier the payload does not match).
TEST_CASE("requests never see a chunk mid-move while a mover moves chunks back and forth") {
  constexpr size_t kChunks = 16;
  constexpr size_t kWords = 32;
  ChunkMap map(kChunks * kChunk, kChunk);
  struct Payload {
    Tier tier = Tier::vram;
    uint64_t words[kWords] = {};
  };
  std::vector<Payload> payload(kChunks);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  std::atomic<uint64_t> requests{0};

  auto worker = [&](unsigned seed) {
    std::mt19937_64 random(seed);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t offset = (random() % (kChunks * kChunk / kBlock)) * kBlock;
      const uint64_t length =
          std::min<uint64_t>(kChunks * kChunk - offset, (1 + random() % 96) * kBlock);
      const ChunkPins pins = map.pin(offset, length, generous());
      if (!pins.ok()) {
        bad.fetch_add(1);
        continue;
      }
      for (size_t chunk = pins.first(); chunk < pins.first() + pins.count(); ++chunk) {
        const Payload& seen = payload[chunk];
        // (Its motion may say evicting already: a mover marks it, then waits
        // for this request to let go before it touches the bytes.)
        if (seen.tier != pins.tier(chunk)) bad.fetch_add(1);
        for (uint64_t word : seen.words)
          if (word != seen.words[0]) bad.fetch_add(1);
      }
      map.mark_written(offset, length);
      requests.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < 4; ++i)
    workers.emplace_back(worker, i + 1);

  uint64_t moves = 0;
  uint64_t generation = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  std::mt19937_64 random(99);
  while (std::chrono::steady_clock::now() < until || moves < 200) {
    const size_t chunk = random() % kChunks;
    const bool evict = map.tier(chunk) == Tier::vram;
    const Start start =
        map.begin_move(chunk, evict ? Motion::evicting : Motion::restoring, generous());
    REQUIRE(start == Start::started);
    Payload& moving = payload[chunk];
    ++generation;
    for (uint64_t& word : moving.words)
      word = generation;
    if (random() % 8 == 0) {  // some moves fail; the chunk stays where it was
      for (uint64_t& word : moving.words)
        word = generation;
      map.abandon_move(chunk);
    } else {
      moving.tier = evict ? Tier::spill : Tier::vram;
      REQUIRE(map.complete_move(chunk, moving.tier));
    }
    ++moves;
  }
  stop = true;
  for (auto& thread : workers)
    thread.join();
  CHECK(bad.load() == 0);
  CHECK(requests.load() > 0);
  CHECK(map.census().moving_chunks == 0);
  for (size_t chunk = 0; chunk < kChunks; ++chunk) {
    CHECK(map.pin_count(chunk) == 0);
    CHECK(map.tier(chunk) == payload[chunk].tier);
  }
}

TEST_CASE("tiers and motions have the names status lines use") {
  CHECK(std::string(vramswap::store::tier_name(Tier::vram)) == "vram");
  CHECK(std::string(vramswap::store::tier_name(Tier::spill)) == "spill");
  CHECK(std::string(vramswap::store::tier_name(Tier::none)) == "none");
  CHECK(std::string(vramswap::store::motion_name(Motion::resident)) == "resident");
  CHECK(std::string(vramswap::store::motion_name(Motion::evicting)) == "evicting");
  CHECK(std::string(vramswap::store::motion_name(Motion::restoring)) == "restoring");
}
