#pragma once

#include <atomic>
#include <cstdint>

namespace vramswap::engine {

// Counters of one worker. Only that worker writes them (relaxed stores, no
// read-modify-write contention); the status reporter sums all workers now and
// then. Aligned so workers never share a cache line.
struct alignas(64) WorkerStats {
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> zeroes{0};
  std::atomic<uint64_t> trims{0};
  std::atomic<uint64_t> flushes{0};
  std::atomic<uint64_t> io_errors{0};        // requests answered EIO because a copy failed
  std::atomic<uint64_t> failed_copy_calls{0};  // driver calls that failed to queue or run copies
  std::atomic<uint64_t> protocol_errors{0};  // requests refused (EINVAL, ENOSPC...)
  std::atomic<uint64_t> dropped{0};          // connections dropped for protocol violations
  std::atomic<uint64_t> rounds{0};
  std::atomic<uint64_t> connections{0};      // open now

  void add(std::atomic<uint64_t>& counter, uint64_t n) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct StatsSnapshot {
  uint64_t reads = 0, writes = 0, bytes_read = 0, bytes_written = 0, zeroes = 0, trims = 0,
           flushes = 0, io_errors = 0, failed_copy_calls = 0, protocol_errors = 0, dropped = 0,
           rounds = 0, connections = 0;

  void accumulate(const WorkerStats& s) noexcept {
    auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    reads += get(s.reads);
    writes += get(s.writes);
    bytes_read += get(s.bytes_read);
    bytes_written += get(s.bytes_written);
    zeroes += get(s.zeroes);
    trims += get(s.trims);
    flushes += get(s.flushes);
    io_errors += get(s.io_errors);
    failed_copy_calls += get(s.failed_copy_calls);
    protocol_errors += get(s.protocol_errors);
    dropped += get(s.dropped);
    rounds += get(s.rounds);
    connections += get(s.connections);
  }
};

}  // namespace vramswap::engine
