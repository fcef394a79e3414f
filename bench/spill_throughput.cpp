// vramswap-spill-throughput DIRECTORY [MIB] [CHUNK_KIB]: what the spill area
// moves to and from this disk, through the same SpillArea the daemon uses
// (O_DIRECT, locked page-aligned buffers): every chunk written in order
// (evict), read back in order (restore), and both again in a shuffled order.
// The file is created first (its creation is timed apart) and removed after.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/startup_error.hpp"
#include "store/spill_area.hpp"

using namespace vramswap;
using namespace vramswap::store;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Moves every chunk once in `order`; prints MB/s (10^6 bytes per second).
bool pass(SpillArea& area, SpillBuffer& buffer, const std::vector<uint64_t>& order, uint64_t chunk,
          bool evict, const char* label) {
  const auto start = Clock::now();
  for (uint64_t index : order) {
    const int error = evict ? area.write(index * chunk, buffer.data(), chunk)
                            : area.read(index * chunk, buffer.data(), chunk);
    if (error != 0) {
      fprintf(stderr, "%s: chunk %llu: errno %d\n", label, static_cast<unsigned long long>(index),
              error);
      return false;
    }
  }
  const double took = seconds_since(start);
  printf("%-22s %8.0f MB/s  (%zu chunks in %.2f s)\n", label,
         static_cast<double>(order.size() * chunk) / took / 1e6, order.size(), took);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIRECTORY [MIB (default 1024)] [CHUNK_KIB (default 2048)]\n",
            argv[0]);
    return 64;
  }
  const uint64_t export_bytes = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024) << 20;
  const uint64_t chunk = (argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 2048) << 10;
  if (export_bytes == 0 || chunk == 0 || chunk % SpillArea::alignment != 0 ||
      export_bytes % chunk != 0) {
    fprintf(stderr, "the size must be a whole number of chunks, the chunk a multiple of 4 KiB\n");
    return 64;
  }
  const std::string path =
      std::string(argv[1]) + "/vramswap-spill-bench." + std::to_string(getpid());
  try {
    const auto start = Clock::now();
    SpillArea area = SpillArea::open(path, export_bytes, "bench");
    printf("created %llu MiB in %.2f s (%s)\n", static_cast<unsigned long long>(export_bytes >> 20),
           seconds_since(start), path.c_str());
    SpillBuffer buffer(chunk);
    for (uint64_t i = 0; i < chunk; ++i)
      buffer.data()[i] = static_cast<std::byte>(i * 7);
    std::vector<uint64_t> order(export_bytes / chunk);
    std::iota(order.begin(), order.end(), 0);
    bool ok = pass(area, buffer, order, chunk, true, "evict, in order") &&
              pass(area, buffer, order, chunk, false, "restore, in order");
    std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
    ok = ok && pass(area, buffer, order, chunk, true, "evict, shuffled") &&
         pass(area, buffer, order, chunk, false, "restore, shuffled");
    unlink(path.c_str());
    return ok ? 0 : 1;
  } catch (const StartupError& error) {
    fprintf(stderr, "%s\n", error.what());
    unlink(path.c_str());
    return error.exit_status();
  }
}
