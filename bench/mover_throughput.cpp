// vramswap-mover-throughput DIRECTORY [MIB] [ROUNDS]: what the chunk mover
// moves between VRAM and a spill file in DIRECTORY, through the same
// ChunkMover the daemon will use (one thread, one 2 MiB chunk in flight,
// O_DIRECT): an export of MIB (default 1024) filled with data, evict_all,
// restore_all (every byte checked after), then the same with no live data
// (no copy: VRAM released, then taken again and zero-filled). ROUNDS
// (default 2) repeats it. On the GPU the driver lists first: the real
// driver, or the fake through VRAMSWAP_LIBCUDA. The spill file is removed
// after.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
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

std::byte pattern(uint64_t offset) {
  return static_cast<std::byte>((offset * 131 + (offset >> 12)) & 0xff);
}

// Prints one sweep; false when it failed or left chunks behind.
bool report(const char* label, const SweepReport& sweep, size_t chunks) {
  const double seconds = std::chrono::duration<double>(sweep.elapsed).count();
  const uint64_t moved_bytes = sweep.bytes_copied;
  std::printf("%-27s %5zu copied, %5zu free, %.3f s", label, sweep.moved, sweep.moved_free,
              seconds);
  if (moved_bytes > 0)
    std::printf(", %6.0f MB/s", static_cast<double>(moved_bytes) / seconds / 1e6);
  if (sweep.moved + sweep.moved_free > 0) {
    std::printf(", %.0f us/chunk",
                seconds * 1e6 / static_cast<double>(sweep.moved + sweep.moved_free));
  }
  std::printf("\n");
  if (sweep.failed()) {
    std::fprintf(stderr, "%s stopped: %s (%s, errno %d)\n", label, sweep.stopped_by.cause,
                 sweep.stopped_by.cuda_status.name(), sweep.stopped_by.error_number);
    return false;
  }
  return sweep.moved + sweep.moved_free == chunks;
}

// Writes the pattern over the whole export (through VRAM) and marks it live.
bool fill(ChunkMap& map, CopyStream& stream, PinnedBuffer& staging) {
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    const uint64_t offset = map.chunk_offset(chunk);
    for (uint64_t i = 0; i < map.chunk_length(chunk); ++i)
      staging.data()[i] = pattern(offset + i);
    if (!stream.write(offset, staging.data(), map.chunk_length(chunk)).ok() ||
        !stream.synchronize().ok()) {
      return false;
    }
    ChunkPins pins = map.pin(offset, map.chunk_length(chunk), Deadline::after(1s));
    map.mark_written(offset, map.chunk_length(chunk));
  }
  return true;
}

// Whether every byte in VRAM is the pattern (want_pattern) or zero.
bool check(ChunkMap& map, CopyStream& stream, PinnedBuffer& staging, bool want_pattern) {
  for (size_t chunk = 0; chunk < map.chunk_count(); ++chunk) {
    const uint64_t offset = map.chunk_offset(chunk);
    if (!stream.read(staging.data(), offset, map.chunk_length(chunk)).ok() ||
        !stream.synchronize().ok()) {
      return false;
    }
    for (uint64_t i = 0; i < map.chunk_length(chunk); ++i) {
      if (staging.data()[i] != (want_pattern ? pattern(offset + i) : std::byte{0})) {
        std::fprintf(stderr, "chunk %zu differs at byte %llu\n", chunk,
                     static_cast<unsigned long long>(i));
        return false;
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY [MIB (default 1024)] [ROUNDS (default 2)]\n",
                 argv[0]);
    return 64;
  }
  const uint64_t export_bytes = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024) * MiB;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 2;
  if (export_bytes == 0 || rounds <= 0) {
    std::fprintf(stderr, "the size and the rounds must be positive\n");
    return 64;
  }
  const std::string path =
      std::string(argv[1]) + "/vramswap-mover-bench." + std::to_string(getpid());
  bool ok = true;
  try {
    const auto driver = cuda::Driver::load();
    cuda::Context context(driver, 0);
    VramStore store(context);
    store.allocate(export_bytes, export_bytes);
    ChunkMap map(store.size());
    const auto created = std::chrono::steady_clock::now();
    SpillArea spill = SpillArea::open(path, store.size(), "bench");
    std::printf("%s export, spill file %s created in %.2f s\n",
                format_byte_size(store.size()).c_str(), path.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - created).count());
    ChunkMover mover(map, store, spill);
    CopyStream stream(store);
    PinnedBuffer staging(context, map.chunk_bytes());
    const size_t chunks = map.chunk_count();
    for (int round = 1; ok && round <= rounds; ++round) {
      std::printf("round %d\n", round);
      ok = fill(map, stream, staging) &&
           report("  evict_all, live data", mover.evict_all(1s), chunks) &&
           report("  restore_all, live data", mover.restore_all(1s), chunks) &&
           check(map, stream, staging, true);
      if (!ok) break;
      {
        ChunkPins pins = map.pin(0, map.export_bytes(), Deadline::after(1s));
        map.mark_unused(0, map.export_bytes());
      }
      ok = report("  evict_all, no live data", mover.evict_all(1s), chunks) &&
           report("  restore_all, no live data", mover.restore_all(1s), chunks) &&
           check(map, stream, staging, false);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "vramswap-mover-throughput: %s\n", error.what());
    ok = false;
  }
  unlink(path.c_str());
  if (!ok) std::fprintf(stderr, "vramswap-mover-throughput: FAILED\n");
  return ok ? 0 : 1;
}
