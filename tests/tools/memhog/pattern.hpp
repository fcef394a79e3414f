#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

// The data memhog writes and checks. Every 8-byte word gets a value derived
// from (seed, generation, word index): a page that comes back from swap
// holding another page's data, another run's data, an older generation or
// zeros fails the check, not only a page with flipped bits.
namespace vramswap::memhog {

// splitmix64's finaliser: cheap, and neighbouring inputs give unrelated words.
constexpr uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t pattern_word(uint64_t seed, uint64_t generation, uint64_t index) noexcept {
  return mix(mix(seed ^ (generation * 0x9e3779b97f4a7c15ULL)) + index);
}

struct Mismatch {
  uint64_t index;  // word index from the start of the buffer
  uint64_t expected;
  uint64_t actual;
};

// How many words were wrong, and the first few of them, for the report.
struct CheckResult {
  uint64_t mismatches = 0;
  std::vector<Mismatch> first;
};

// Writes generation `generation` into every word.
void fill(std::span<uint64_t> words, uint64_t seed, uint64_t generation) noexcept;

// Checks that every word holds generation `generation`; keeps up to
// `keep_first` mismatches (allocated up front, not while scanning).
CheckResult verify(std::span<const uint64_t> words, uint64_t seed, uint64_t generation,
                   size_t keep_first);

// One re-touch pass: checks generation `generation` and writes generation
// `generation + 1` in the same sweep, so every page is read back from swap and
// dirtied again, forcing a fresh swap-out.
CheckResult advance(std::span<uint64_t> words, uint64_t seed, uint64_t generation,
                    size_t keep_first);

}  // namespace vramswap::memhog
