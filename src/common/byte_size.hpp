#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vramswap {

inline constexpr uint64_t KiB = uint64_t{1} << 10;
inline constexpr uint64_t MiB = uint64_t{1} << 20;
inline constexpr uint64_t GiB = uint64_t{1} << 30;
inline constexpr uint64_t TiB = uint64_t{1} << 40;

// Parses "4096", "512K", "16G", "1.5T", "8GiB", "2 MiB" (binary units, case
// insensitive). Returns nothing for anything else or on overflow.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// "15.9 GiB", "512.0 MiB", "4096 B": for logs and status lines.
std::string format_byte_size(uint64_t bytes);

}  // namespace vramswap
