// vramswap-store-startup [SIZE_GIB] [CHUNK_MIB...]: how long VramStore takes
// to allocate (reserve, cuMemCreate + cuMemMap per chunk, cuMemSetAccess) and
// to free an export of SIZE_GIB (default 16) in chunks of each CHUNK_MIB
// (default 2 8 32, each twice, interleaved), on the GPU the driver lists
// first: the real driver, or the fake through VRAMSWAP_LIBCUDA (whose
// VRAMSWAP_FAKE_MEMORY must then hold the export).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;

int main(int argc, char** argv) {
  const uint64_t size = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 16) * GiB;
  std::vector<uint64_t> chunks;
  for (int i = 2; i < argc; ++i)
    chunks.push_back(std::strtoull(argv[i], nullptr, 10) * MiB);
  if (chunks.empty()) chunks = {2 * MiB, 8 * MiB, 32 * MiB};
  try {
    const auto driver = cuda::Driver::load();
    cuda::Context context(driver, 0);
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    for (int round = 0; round < 2; ++round) {
      for (const uint64_t chunk : chunks) {
        const auto start = clock::now();
        clock::time_point allocated;
        {
          VramStore store(context, chunk);
          store.allocate(size, size);
          allocated = clock::now();
        }
        const auto freed = clock::now();
        std::printf("%s in chunks of %s: allocate %.1f ms, free %.1f ms\n",
                    format_byte_size(size).c_str(), format_byte_size(chunk).c_str(),
                    ms(allocated - start), ms(freed - allocated));
      }
    }
  } catch (const StartupError& error) {
    std::fprintf(stderr, "vramswap-store-startup: %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "vramswap-store-startup: %s\n", error.what());
    return 1;
  }
  return 0;
}
