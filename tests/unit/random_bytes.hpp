#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace vramswap::test {

// The same bytes for the same seed: test data that no stale buffer or zero
// page can pass for.
inline std::vector<std::byte> random_bytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::byte> bytes(size);
  for (auto& byte : bytes)
    byte = static_cast<std::byte>(random());
  return bytes;
}

}  // namespace vramswap::test
