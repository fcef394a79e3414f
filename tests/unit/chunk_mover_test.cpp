// The chunk mover: every state a chunk can be in when the mover comes for
// it, on the fake driver (VRAM) and a spill file on this machine's disk.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/byte_size.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "fake_cuda_support.hpp"
#include "store/chunk_map.hpp"
#include "store/chunk_mover.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/spill_area.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kChunk = 2 * MiB;
constexpr uint64_t kGpuFree = 240 * MiB;  // 256 MiB less the fake driver's own 16

// The fake GPU's settings; set before the driver loads.
struct FakeGpu {
  explicit FakeGpu(unsigned copy_latency_us) {
    fake.set("VRAMSWAP_FAKE_MEMORY", "256M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
    fake.set("VRAMSWAP_FAKE_COPY_LATENCY_US", std::to_string(copy_latency_us));
  }
  test::FakeCuda fake;
  test::TempDir dir;
};

// An export in VRAM, its chunk map, its spill file and a mover; `io` and
// `buffer` play the requests (this thread is bound to the context).
struct Rig : FakeGpu {
  explicit Rig(uint64_t export_bytes, unsigned copy_latency_us = 0)
      : FakeGpu(copy_latency_us),
        driver(cuda::Driver::load()),
        context(driver, 0),
        free_before_store(context.memory_info().free_bytes),
        store(context),
        allocated(store.allocate(export_bytes, export_bytes)),
        map(export_bytes),
        spill(SpillArea::open(dir.file("0.spill"), export_bytes, "0")),
        mover(map, store, spill),
        control(dir.file("control")),
        io(store),
        buffer(context, export_bytes),
        spill_buffer(export_bytes) {}

  static std::byte pattern(uint64_t offset, unsigned seed) {
    return static_cast<std::byte>((offset * 131 + (offset >> 12) + seed) & 0xff);
  }

  // A write request: pins the range, writes the pattern to VRAM, marks it live.
  void write(uint64_t offset, uint64_t length, unsigned seed) {
    ChunkPins pins = map.pin(offset, length, Deadline::after(1s));
    REQUIRE(pins.ok());
    for (size_t chunk = pins.first(); chunk < pins.first() + pins.count(); ++chunk)
      REQUIRE(pins.tier(chunk) == Tier::vram);
    for (uint64_t i = 0; i < length; ++i)
      buffer.data()[i] = pattern(offset + i, seed);
    REQUIRE(io.write(offset, buffer.data(), length).ok());
    REQUIRE(io.synchronize().ok());
    map.mark_written(offset, length);
  }

  // The chunk's bytes as they are in VRAM (it must be committed).
  const std::byte* vram_bytes(size_t chunk) {
    std::memset(buffer.data(), 0xee, map.chunk_length(chunk));
    REQUIRE(io.read(buffer.data(), map.chunk_offset(chunk), map.chunk_length(chunk)).ok());
    REQUIRE(io.synchronize().ok());
    return buffer.data();
  }
  // The chunk's bytes as they are in the spill file.
  const std::byte* spill_bytes(size_t chunk) {
    std::memset(spill_buffer.data(), 0xee, map.chunk_length(chunk));
    REQUIRE(spill.read(map.chunk_offset(chunk), spill_buffer.data(), map.chunk_length(chunk)) == 0);
    return spill_buffer.data();
  }

  // Whether `bytes` hold the pattern of chunk `chunk` (or zeros, seed < 0).
  bool holds(size_t chunk, const std::byte* bytes, int seed) const {
    const uint64_t offset = map.chunk_offset(chunk);
    for (uint64_t i = 0; i < map.chunk_length(chunk); ++i) {
      const std::byte expected =
          seed < 0 ? std::byte{0} : pattern(offset + i, static_cast<unsigned>(seed));
      if (bytes[i] != expected) {
        UNSCOPED_INFO("chunk " << chunk << " differs at byte " << i);
        return false;
      }
    }
    return true;
  }
  bool vram_holds(size_t chunk, int seed) { return holds(chunk, vram_bytes(chunk), seed); }
  bool spill_holds(size_t chunk, int seed) { return holds(chunk, spill_bytes(chunk), seed); }

  uint64_t free_bytes() const { return context.memory_info().free_bytes; }
  uint64_t copied_out() const { return control->bytes_device_to_host.load(); }
  uint64_t copied_in() const { return control->bytes_host_to_device.load(); }

  const cuda::Driver driver;
  cuda::Context context;
  uint64_t free_before_store;
  VramStore store;
  uint64_t allocated;
  ChunkMap map;
  SpillArea spill;
  ChunkMover mover;
  test::ControlBlock control;
  CopyStream io;
  PinnedBuffer buffer;
  SpillBuffer spill_buffer;
};

Deadline soon() {
  return Deadline::after(1s);
}

// Ends the test's file-size limit (and its signal) however the test leaves.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
    rlimit limited = saved_;
    limited.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

}  // namespace

TEST_CASE("mover: a live chunk goes to the spill area and comes back byte for byte") {
  Rig rig(4 * kChunk);
  rig.write(0, 4 * kChunk, 7);
  const uint64_t free_at_start = rig.free_bytes();
  const uint64_t out_before = rig.copied_out();

  const MoveResult out = rig.mover.evict(1, soon());
  CHECK(out.outcome == MoveOutcome::moved);
  CHECK(out.tier == Tier::spill);
  CHECK(rig.map.tier(1) == Tier::spill);
  CHECK(rig.map.motion(1) == Motion::resident);
  CHECK_FALSE(rig.store.committed(1));
  CHECK(rig.free_bytes() == free_at_start + kChunk);  // the VRAM went back to the GPU
  CHECK(rig.copied_out() == out_before + kChunk);     // one copy of the chunk, no more
  CHECK(rig.spill_holds(1, 7));

  const uint64_t in_before = rig.copied_in();
  const MoveResult back = rig.mover.restore(1, soon());
  CHECK(back.outcome == MoveOutcome::moved);
  CHECK(back.tier == Tier::vram);
  CHECK(rig.map.tier(1) == Tier::vram);
  CHECK(rig.store.committed(1));
  CHECK(rig.copied_in() == in_before + kChunk);
  CHECK(rig.free_bytes() == free_at_start);
  for (size_t chunk = 0; chunk < 4; ++chunk)
    CHECK(rig.vram_holds(chunk, 7));
}

TEST_CASE("mover: a chunk with no live data moves without a copy, and comes back as zeros") {
  Rig rig(4 * kChunk);
  rig.write(0, kChunk, 1);  // chunk 0 live; chunk 2 never written
  const uint64_t out_before = rig.copied_out();
  const uint64_t in_before = rig.copied_in();
  const uint64_t zeroed_before = rig.control->bytes_zeroed.load();
  const uint64_t free_at_start = rig.free_bytes();

  const MoveResult out = rig.mover.evict(2, soon());
  CHECK(out.outcome == MoveOutcome::moved_free);
  CHECK(out.tier == Tier::none);
  CHECK(rig.map.tier(2) == Tier::none);
  CHECK_FALSE(rig.store.committed(2));
  CHECK(rig.free_bytes() == free_at_start + kChunk);
  CHECK(rig.copied_out() == out_before);

  const MoveResult back = rig.mover.restore(2, soon());
  CHECK(back.outcome == MoveOutcome::moved_free);
  CHECK(rig.map.tier(2) == Tier::vram);
  CHECK(rig.copied_in() == in_before);
  CHECK(rig.control->bytes_zeroed.load() == zeroed_before + kChunk);  // zero-filled, not copied
  CHECK(rig.vram_holds(2, -1));
  CHECK(rig.vram_holds(0, 1));
}

TEST_CASE("mover: a trimmed chunk goes to none and restores as zeros") {
  Rig rig(4 * kChunk);
  rig.write(0, 2 * kChunk, 3);
  {
    ChunkPins pins = rig.map.pin(0, kChunk, soon());
    REQUIRE(pins.ok());
    rig.map.mark_unused(0, kChunk);  // TRIM of the whole chunk
  }
  const uint64_t out_before = rig.copied_out();
  CHECK(rig.mover.evict(0, soon()).outcome == MoveOutcome::moved_free);
  CHECK(rig.map.tier(0) == Tier::none);
  CHECK(rig.copied_out() == out_before);
  const uint64_t zeroed_before = rig.control->bytes_zeroed.load();
  CHECK(rig.mover.restore(0, soon()).outcome == MoveOutcome::moved_free);
  CHECK(rig.control->bytes_zeroed.load() == zeroed_before + kChunk);
  CHECK(rig.vram_holds(0, -1));  // the old pattern is gone: zeros

  SECTION("trimmed while in the spill area: restored as zeros, no copy") {
    REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved);
    {
      ChunkPins pins = rig.map.pin(kChunk, kChunk, soon());
      REQUIRE(pins.ok());
      REQUIRE(pins.tier(1) == Tier::spill);
      rig.map.mark_unused(kChunk, kChunk);
    }
    const uint64_t in_before = rig.copied_in();
    const MoveResult back = rig.mover.restore(1, soon());
    CHECK(back.outcome == MoveOutcome::moved_free);
    CHECK(rig.copied_in() == in_before);
    CHECK(rig.vram_holds(1, -1));
  }
}

TEST_CASE("mover: evicting a chunk not in VRAM, or restoring one in VRAM, is the wrong tier") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 5);
  CHECK(rig.mover.restore(0, soon()).outcome == MoveOutcome::wrong_tier);
  REQUIRE(rig.mover.evict(0, soon()).outcome == MoveOutcome::moved);
  const uint64_t out_before = rig.copied_out();
  const MoveResult again = rig.mover.evict(0, soon());
  CHECK(again.outcome == MoveOutcome::wrong_tier);
  CHECK(again.tier == Tier::spill);
  CHECK(rig.copied_out() == out_before);
  REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved);
  CHECK(rig.mover.evict(1, soon()).outcome == MoveOutcome::wrong_tier);
  REQUIRE(rig.mover.restore(0, soon()).outcome == MoveOutcome::moved);
  CHECK(rig.mover.restore(0, soon()).outcome == MoveOutcome::wrong_tier);
  CHECK(rig.vram_holds(0, 5));
}

TEST_CASE("mover: a request holding the chunk makes evict wait, then give up, the chunk in VRAM") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 9);
  ChunkPins request = rig.map.pin(100 * 4096, 4096, soon());  // a request in flight on chunk 0
  REQUIRE(request.ok());
  const uint64_t out_before = rig.copied_out();
  const auto start = std::chrono::steady_clock::now();
  const MoveResult out = rig.mover.evict(0, Deadline::after(50ms));
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  CHECK(out.outcome == MoveOutcome::busy);
  CHECK(out.tier == Tier::vram);
  CHECK(rig.map.tier(0) == Tier::vram);
  CHECK(rig.map.motion(0) == Motion::resident);
  CHECK(rig.store.committed(0));
  CHECK(rig.copied_out() == out_before);
  CHECK(rig.vram_holds(0, 9));  // the request can still read it
  request.release();
  CHECK(rig.mover.evict(0, soon()).outcome == MoveOutcome::moved);
}

TEST_CASE("mover: a request arriving mid-move waits, then sees the new tier and the data") {
  // A slow GPU (each stream's round lasts 200 ms) keeps the chunk moving
  // long enough for the request to arrive meanwhile.
  Rig rig(2 * kChunk, 200'000);
  rig.write(0, 2 * kChunk, 11);

  auto move_on_mover_thread = [&](bool evict) {
    std::optional<MoveResult> result;
    std::thread mover([&] {  // (no Catch assertions off the test's thread)
      if (rig.context.bind_current_thread().ok())
        result = evict ? rig.mover.evict(1, soon()) : rig.mover.restore(1, soon());
    });
    // The request comes once the chunk is in motion.
    const Motion moving = evict ? Motion::evicting : Motion::restoring;
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (rig.map.motion(1) != moving && std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
    CHECK(rig.map.motion(1) == moving);
    ChunkPins request = rig.map.pin(kChunk, kChunk, Deadline::after(5s));
    CHECK(request.ok());
    CHECK(rig.map.motion(1) == Motion::resident);
    const Tier seen = request.ok() ? request.tier(1) : Tier::none;
    mover.join();
    REQUIRE(result);
    CHECK(result->moved());
    return seen;
  };

  CHECK(move_on_mover_thread(true) == Tier::spill);
  CHECK(rig.spill_holds(1, 11));
  CHECK(move_on_mover_thread(false) == Tier::vram);
  CHECK(rig.vram_holds(1, 11));
}

TEST_CASE("mover: a failed evict keeps the chunk in VRAM with its data") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 13);
  const uint64_t free_at_start = rig.free_bytes();

  SECTION("the copy out of VRAM fails") {
    rig.control->fail_next_copies.store(1);
    const MoveResult out = rig.mover.evict(0, soon());
    CHECK(out.outcome == MoveOutcome::failed);
    CHECK(out.tier == Tier::vram);
    CHECK(out.cuda_status.code() == cuda::CUDA_ERROR_OUT_OF_MEMORY);  // the fake's injected error
    CHECK(std::string(out.cause) == "copy VRAM to staging");
  }
  SECTION("the spill file refuses the write") {
    // Writes at or past the file-size limit fail with EFBIG: the spill
    // area's header lies below it, every chunk above.
    FileSizeLimit limit(SpillArea::header_bytes);
    const MoveResult out = rig.mover.evict(0, soon());
    CHECK(out.outcome == MoveOutcome::failed);
    CHECK(out.tier == Tier::vram);
    CHECK(out.error_number == EFBIG);
    CHECK(std::string(out.cause) == "write the spill area");
  }
  CHECK(rig.map.tier(0) == Tier::vram);
  CHECK(rig.map.motion(0) == Motion::resident);
  CHECK(rig.store.committed(0));
  CHECK(rig.free_bytes() == free_at_start);
  CHECK(rig.vram_holds(0, 13));
  // Nothing stuck: the next try works.
  CHECK(rig.mover.evict(0, soon()).outcome == MoveOutcome::moved);
  CHECK(rig.spill_holds(0, 13));
}

TEST_CASE("mover: a failed restore keeps the chunk in the spill area with its data") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 17);
  REQUIRE(rig.mover.evict(0, soon()).outcome == MoveOutcome::moved);
  const uint64_t free_evicted = rig.free_bytes();
  const uint64_t allocated_evicted = rig.control->bytes_allocated.load();

  SECTION("the driver refuses the chunk's VRAM") {
    rig.control->fail_create_at.store(rig.control->creates.load() + 1);
    const MoveResult back = rig.mover.restore(0, soon());
    CHECK(back.outcome == MoveOutcome::failed);
    CHECK(back.cuda_status.code() == cuda::CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(std::string(back.cause) == "take VRAM for the chunk");
  }
  SECTION("another program has taken the VRAM") {
    rig.control->other_program_bytes.store(rig.free_bytes());
    CHECK(rig.free_bytes() == 0);
    const MoveResult back = rig.mover.restore(0, soon());
    CHECK(back.outcome == MoveOutcome::failed);
    CHECK(back.cuda_status.code() == cuda::CUDA_ERROR_OUT_OF_MEMORY);
    rig.control->other_program_bytes.store(0);  // it gives it back
  }
  SECTION("the copy into VRAM fails: the fresh VRAM is given back") {
    rig.control->fail_next_copies.store(1);
    const MoveResult back = rig.mover.restore(0, soon());
    CHECK(back.outcome == MoveOutcome::failed);
    CHECK(std::string(back.cause) == "copy staging to VRAM");
  }
  SECTION("the spill file cannot be read") {
    // The file shortened behind the area's back: the read comes up short.
    REQUIRE(truncate(rig.spill.path().c_str(), SpillArea::header_bytes) == 0);
    const MoveResult back = rig.mover.restore(0, soon());
    CHECK(back.outcome == MoveOutcome::failed);
    CHECK(back.error_number == EIO);
    CHECK(std::string(back.cause) == "read the spill area");
    CHECK(rig.map.tier(0) == Tier::spill);
    CHECK_FALSE(rig.store.committed(0));
    CHECK(rig.control->bytes_allocated.load() == allocated_evicted);
    return;  // its data is gone with the file's tail
  }
  CHECK(rig.map.tier(0) == Tier::spill);
  CHECK(rig.map.motion(0) == Motion::resident);
  CHECK_FALSE(rig.store.committed(0));
  CHECK(rig.control->bytes_allocated.load() == allocated_evicted);
  CHECK(rig.free_bytes() == free_evicted);
  CHECK(rig.spill_holds(0, 17));
  // A request still finds it in the spill area.
  {
    ChunkPins request = rig.map.pin(0, 4096, soon());
    REQUIRE(request.ok());
    CHECK(request.tier(0) == Tier::spill);
  }
  CHECK(rig.mover.restore(0, soon()).outcome == MoveOutcome::moved);
  CHECK(rig.vram_holds(0, 17));
}

TEST_CASE("mover: evict_all then restore_all keep every byte, and evict_all frees all the VRAM") {
  // Eight chunks and a short ninth; live, never written and trimmed ones.
  const uint64_t export_bytes = 8 * kChunk + 3 * 4096;
  Rig rig(export_bytes);
  rig.write(0, export_bytes, 21);
  {
    ChunkPins pins = rig.map.pin(3 * kChunk, kChunk, soon());
    REQUIRE(pins.ok());
    rig.map.mark_unused(3 * kChunk, kChunk);
  }
  // Chunk 3 now reads as unspecified data; the test expects zeros for it
  // after the round trip (a none chunk comes back zero-filled).
  CHECK(rig.free_before_store == kGpuFree);
  CHECK(rig.free_bytes() == kGpuFree - 9 * kChunk);

  const SweepReport out = rig.mover.evict_all(1s);
  CHECK_FALSE(out.failed());
  CHECK(out.moved == 8);
  CHECK(out.moved_free == 1);
  CHECK(out.bytes_copied == export_bytes - kChunk);
  CHECK(out.busy == 0);
  CHECK(out.elapsed > 0ns);
  CHECK(rig.store.committed_bytes() == 0);
  CHECK(rig.free_bytes() == rig.free_before_store);  // the VRAM really went back
  CHECK(rig.map.census().vram_bytes == 0);
  CHECK(rig.map.census().none_bytes == kChunk);

  // The freed VRAM is what another program can now take, and give back.
  rig.control->other_program_bytes.store(kGpuFree);
  CHECK(rig.free_bytes() == 0);
  const SweepReport refused = rig.mover.restore_all(1s);
  CHECK(refused.failed());
  CHECK(refused.moved + refused.moved_free == 0);
  CHECK(rig.map.census().vram_bytes == 0);
  rig.control->other_program_bytes.store(0);

  const SweepReport back = rig.mover.restore_all(1s);
  CHECK_FALSE(back.failed());
  CHECK(back.moved == 8);
  CHECK(back.moved_free == 1);
  CHECK(back.bytes_copied == export_bytes - kChunk);
  CHECK(rig.free_bytes() == kGpuFree - 9 * kChunk);
  for (size_t chunk = 0; chunk < rig.map.chunk_count(); ++chunk)
    CHECK(rig.vram_holds(chunk, chunk == 3 ? -1 : 21));

  // A second pass finds nothing to do.
  CHECK(rig.mover.restore_all(1s).skipped == 9);
}

TEST_CASE("mover: evict_until frees what it is asked for, from the end of the export") {
  Rig rig(6 * kChunk);
  rig.write(0, 6 * kChunk, 23);
  const SweepReport out = rig.mover.evict_until(3 * kChunk, 1s);
  CHECK(out.moved == 3);
  CHECK(rig.store.committed_bytes() == 3 * kChunk);
  for (size_t chunk = 0; chunk < 6; ++chunk)
    CHECK(rig.map.tier(chunk) == (chunk < 3 ? Tier::vram : Tier::spill));
  // Already-evicted chunks free nothing: the next call goes further down.
  CHECK(rig.mover.evict_until(kChunk, 1s).moved == 1);
  CHECK(rig.map.tier(2) == Tier::spill);
}

TEST_CASE("mover: a map, store and spill area of different exports are refused") {
  Rig rig(2 * kChunk);
  ChunkMap other_size(4 * kChunk);
  CHECK_THROWS_AS(ChunkMover(other_size, rig.store, rig.spill), std::invalid_argument);
  ChunkMap other_chunk(2 * kChunk, kChunk / 2);
  CHECK_THROWS_AS(ChunkMover(other_chunk, rig.store, rig.spill), std::invalid_argument);
}

TEST_CASE("mover: a chunk with no storage gets its place in the spill area when VRAM is gone") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 25);
  // Chunk 1 goes to the spill area with data, then loses its live data and
  // leaves for `none`: its region of the spill file still holds the pattern.
  REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved);
  REQUIRE(rig.spill_holds(1, 25));
  REQUIRE(rig.mover.restore(1, soon()).outcome == MoveOutcome::moved);
  rig.map.mark_unused(kChunk, kChunk);
  REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved_free);
  REQUIRE(rig.map.tier(1) == Tier::none);

  rig.control->other_program_bytes.store(kGpuFree);
  REQUIRE(rig.free_bytes() == 0);
  // Without the fallback the restore fails, and the chunk stays `none`.
  const MoveResult refused = rig.mover.restore(1, soon());
  CHECK(refused.outcome == MoveOutcome::failed);
  CHECK(refused.cuda_status.code() == cuda::CUDA_ERROR_OUT_OF_MEMORY);
  CHECK(rig.map.tier(1) == Tier::none);

  // With it, the chunk lands in the spill area, its region zeroed.
  const MoveResult placed = rig.mover.restore(1, soon(), ChunkMover::Placement::vram_or_spill);
  CHECK(placed.outcome == MoveOutcome::moved_free);
  CHECK(placed.tier == Tier::spill);
  CHECK(rig.map.tier(1) == Tier::spill);
  CHECK(rig.map.motion(1) == Motion::resident);
  CHECK_FALSE(rig.store.committed(1));
  CHECK(rig.spill_holds(1, -1));

  // Only a chunk with no storage falls back: one in the spill area with data
  // waits for VRAM (its data is safe where it is).
  rig.map.mark_written(kChunk, 4096);
  const MoveResult spilled = rig.mover.restore(1, soon(), ChunkMover::Placement::vram_or_spill);
  CHECK(spilled.outcome == MoveOutcome::failed);
  CHECK(rig.map.tier(1) == Tier::spill);

  rig.control->other_program_bytes.store(0);
  CHECK(rig.mover.restore(1, soon()).outcome == MoveOutcome::moved);
  CHECK(rig.map.tier(1) == Tier::vram);
  CHECK(rig.vram_holds(0, 25));
}

TEST_CASE("mover: while VRAM is held back, a chunk with no storage goes to the spill area") {
  Rig rig(2 * kChunk);
  rig.write(0, 2 * kChunk, 26);
  REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved);
  REQUIRE(rig.mover.restore(1, soon()).outcome == MoveOutcome::moved);
  rig.map.mark_unused(kChunk, kChunk);
  REQUIRE(rig.mover.evict(1, soon()).outcome == MoveOutcome::moved_free);
  const uint64_t free_before = rig.free_bytes();
  REQUIRE(free_before > kChunk);  // VRAM is there to take, and must not be taken

  const MoveResult placed = rig.mover.restore(1, soon(), ChunkMover::Placement::spill_only);
  CHECK(placed.outcome == MoveOutcome::moved_free);
  CHECK(rig.map.tier(1) == Tier::spill);
  CHECK_FALSE(rig.store.committed(1));
  CHECK(rig.free_bytes() == free_before);
  CHECK(rig.spill_holds(1, -1));  // zeroed, not the old pattern

  // A chunk that holds data in the spill area is not `none`: it comes back
  // to VRAM only through a real restore.
  rig.map.mark_written(kChunk, 4096);
  CHECK(rig.mover.restore(1, soon(), ChunkMover::Placement::spill_only).outcome ==
        MoveOutcome::moved);
  CHECK(rig.map.tier(1) == Tier::vram);
}
