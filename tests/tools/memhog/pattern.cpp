#include "pattern.hpp"

namespace vramswap::memhog {
namespace {

void note(CheckResult& result, size_t keep_first, uint64_t index, uint64_t expected,
          uint64_t actual) {
  if (result.first.size() < keep_first) result.first.push_back({index, expected, actual});
  ++result.mismatches;
}

}  // namespace

void fill(std::span<uint64_t> words, uint64_t seed, uint64_t generation) noexcept {
  for (uint64_t i = 0; i < words.size(); ++i)
    words[i] = pattern_word(seed, generation, i);
}

CheckResult verify(std::span<const uint64_t> words, uint64_t seed, uint64_t generation,
                   size_t keep_first) {
  CheckResult result;
  result.first.reserve(keep_first);
  for (uint64_t i = 0; i < words.size(); ++i) {
    const uint64_t expected = pattern_word(seed, generation, i);
    if (words[i] != expected) note(result, keep_first, i, expected, words[i]);
  }
  return result;
}

CheckResult advance(std::span<uint64_t> words, uint64_t seed, uint64_t generation,
                    size_t keep_first) {
  CheckResult result;
  result.first.reserve(keep_first);
  for (uint64_t i = 0; i < words.size(); ++i) {
    const uint64_t expected = pattern_word(seed, generation, i);
    if (words[i] != expected) note(result, keep_first, i, expected, words[i]);
    words[i] = pattern_word(seed, generation + 1, i);
  }
  return result;
}

}  // namespace vramswap::memhog
