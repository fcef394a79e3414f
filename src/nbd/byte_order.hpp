#pragma once

// NBD sends every integer in network (big-endian) byte order. These helpers
// read and write unaligned wire fields without type punning.

#include <cstddef>
#include <cstdint>

namespace vramswap::nbd {

inline constexpr uint16_t load_be16(const std::byte* p) noexcept {
  return static_cast<uint16_t>((std::to_integer<uint16_t>(p[0]) << 8) |
                               std::to_integer<uint16_t>(p[1]));
}

inline constexpr uint32_t load_be32(const std::byte* p) noexcept {
  return (uint32_t{load_be16(p)} << 16) | load_be16(p + 2);
}

inline constexpr uint64_t load_be64(const std::byte* p) noexcept {
  return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}

inline constexpr void store_be16(std::byte* p, uint16_t value) noexcept {
  p[0] = static_cast<std::byte>(value >> 8);
  p[1] = static_cast<std::byte>(value);
}

inline constexpr void store_be32(std::byte* p, uint32_t value) noexcept {
  store_be16(p, static_cast<uint16_t>(value >> 16));
  store_be16(p + 2, static_cast<uint16_t>(value));
}

inline constexpr void store_be64(std::byte* p, uint64_t value) noexcept {
  store_be32(p, static_cast<uint32_t>(value >> 32));
  store_be32(p + 4, static_cast<uint32_t>(value));
}

}  // namespace vramswap::nbd
