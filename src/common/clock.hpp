#pragma once

#include <time.h>

#include <cstdint>

namespace vramswap {

// Nanoseconds on the monotonic clock: deadlines and intervals that a change
// of the wall clock must not move.
inline int64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace vramswap
