// vramswap-pcie-ceiling: what the bus and the driver allow, measured with
// pinned copies through the same driver-API path the daemon uses, so that
// benchmark results can be read as a fraction of it.
//
//   64 MiB copies, one thread, many in flight      (bandwidth ceiling)
//   1 MiB copies, 8 threads, a sync per copy       (large-request ceiling)
//   4 KiB copy + sync, 1 thread                     (latency floor, p50/p99)
//   4 KiB copy + sync, 16 threads                   (small-request ceiling)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/device.hpp"
#include "cuda/driver.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void check(cuda::Status status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s failed: %s\n", what, status.name());
    std::exit(1);
  }
}

enum class Direction { to_device, to_host };

// `threads` threads each copy `bytes` `count` times, `depth` copies per sync.
double bandwidth(const cuda::Context& context, const VramStore& store, Direction direction,
                 size_t bytes, unsigned threads, unsigned count, unsigned depth) {
  std::vector<std::thread> workers;
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  Clock::time_point start;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      check(context.bind_current_thread(), "bind");
      PinnedBuffer buffer(context, bytes * depth);
      std::memset(buffer.data(), 0x5a, buffer.size());
      CopyStream stream(store);
      const uint64_t region = store.size() / threads;
      ++ready;
      while (!go.load()) std::this_thread::yield();
      for (unsigned i = 0; i < count; i += depth) {
        for (unsigned d = 0; d < depth; ++d) {
          const uint64_t offset = t * region + ((i + d) * bytes) % (region - bytes + 1);
          std::byte* host = buffer.data() + d * bytes;
          check(direction == Direction::to_device ? stream.write(offset, host, bytes)
                                                  : stream.read(host, offset, bytes),
                "copy");
        }
        check(stream.synchronize(), "sync");
      }
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  start = Clock::now();
  go = true;
  for (auto& w : workers) w.join();
  return double(bytes) * count * threads / seconds_since(start);
}

struct Latency {
  double p50_us, p99_us;
};

Latency latency(const cuda::Context& context, const VramStore& store, Direction direction) {
  PinnedBuffer buffer(context, 4096);
  CopyStream stream(store);
  std::vector<double> samples;
  for (int i = 0; i < 20000; ++i) {
    const auto start = Clock::now();
    const uint64_t offset = (uint64_t(i) * 7919 * 4096) % (store.size() - 4096);
    check(direction == Direction::to_device ? stream.write(offset, buffer.data(), 4096)
                                            : stream.read(buffer.data(), offset, 4096),
          "copy");
    check(stream.synchronize(), "sync");
    if (i >= 1000) samples.push_back(seconds_since(start) * 1e6);
  }
  std::sort(samples.begin(), samples.end());
  return {samples[samples.size() / 2], samples[samples.size() * 99 / 100]};
}

}  // namespace

int main(int argc, char** argv) {
  log_init("vramswap-pcie-ceiling", "");
  try {
    const cuda::Driver driver = cuda::Driver::load();
    const auto gpus = cuda::list_devices(driver);
    const auto& gpu = cuda::select_device(gpus, argc > 1 ? argv[1] : "0");
    cuda::Context context(driver, gpu.index);
    VramStore store(context);
    store.allocate(4 * GiB, 4 * GiB);
    std::printf("GPU %d: %s, driver %s\n", gpu.index, gpu.name.c_str(),
                driver.version_string().c_str());
    for (Direction d : {Direction::to_device, Direction::to_host}) {
      const char* name = d == Direction::to_device ? "H2D" : "D2H";
      const double big = bandwidth(context, store, d, 64 * MiB, 1, 64, 4);
      const double mid = bandwidth(context, store, d, 1 * MiB, 8, 512, 1);
      const double small = bandwidth(context, store, d, 4096, 16, 20000, 1) / 4096;
      const Latency lat = latency(context, store, d);
      std::printf("ceiling %s 64MiB-1thread %.2f GB/s | 1MiB-8threads-sync-each %.2f GB/s | "
                  "4KiB-16threads-sync-each %.0f kops/s | 4KiB-1thread-sync p50 %.1f us p99 %.1f us\n",
                  name, big / 1e9, mid / 1e9, small / 1e3, lat.p50_us, lat.p99_us);
    }
    return 0;
  } catch (const StartupError& e) {
    log_error("%s", e.what());
    return e.exit_status();
  }
}
