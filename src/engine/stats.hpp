#pragma once

#include <atomic>
#include <cstdint>

#include "common/io_counters.hpp"

namespace vramswap::engine {

// Counters of one worker. Only that worker writes them (relaxed stores, no
// read-modify-write contention); the status reporter sums all workers now and
// then. Aligned so workers never share a cache line.
struct alignas(64) WorkerStats {
#define VRAMSWAP_IO_COUNTER(name) std::atomic<uint64_t> name{0};
  VRAMSWAP_IO_COUNTERS(VRAMSWAP_IO_COUNTER)  // common/io_counters.hpp
#undef VRAMSWAP_IO_COUNTER
  std::atomic<uint64_t> rounds{0};
  std::atomic<uint64_t> connections{0};  // open now

  void add(std::atomic<uint64_t>& counter, uint64_t n) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// The workers' counters summed: the I/O counters, and the engine's own.
struct StatsSnapshot : IoCounters {
  uint64_t rounds = 0, connections = 0;

  void accumulate(const WorkerStats& s) noexcept {
    auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
#define VRAMSWAP_IO_COUNTER(name) name += get(s.name);
    VRAMSWAP_IO_COUNTERS(VRAMSWAP_IO_COUNTER)
#undef VRAMSWAP_IO_COUNTER
    rounds += get(s.rounds);
    connections += get(s.connections);
  }
};

}  // namespace vramswap::engine
