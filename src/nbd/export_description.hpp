#pragma once

// The one export a vramswapd instance serves, as the handshake advertises it
// and as transmission enforces it.

#include <cstdint>
#include <string_view>

#include "common/geometry.hpp"
#include "nbd/protocol.hpp"

namespace vramswap::nbd {

// What this server supports in transmission: simple replies, FLUSH, FUA,
// TRIM, WRITE_ZEROES (with NO_HOLE), and several connections sharing one
// store (every connection sees every completed write: no per-connection cache).
inline constexpr uint16_t served_transmission_flags =
    transmission_flag::has_flags | transmission_flag::send_flush | transmission_flag::send_fua |
    transmission_flag::send_trim | transmission_flag::send_write_zeroes |
    transmission_flag::can_multi_conn;

// The block size constraints this product advertises (NBD_INFO_BLOCK_SIZE).
// 512 matches the kernel's sector; 32 MiB is the payload every client may
// assume without asking.
inline constexpr uint32_t default_min_block = 512;
inline constexpr uint32_t default_preferred_block = export_block_bytes;
inline constexpr uint32_t default_max_payload = 32u << 20;

// Longest name and description an export may be configured with. The spec
// says strings SHOULD be at most 256 bytes; holding ours to that bounds the
// handshake's output buffer.
inline constexpr size_t max_export_name_length = 256;
inline constexpr size_t max_export_description_length = 256;

struct ExportDescription {
  // Reachable under this name and under "" (the default export). The strings
  // are not copied: they must outlive every Handshake built from them.
  std::string_view name;
  std::string_view description;  // optional; empty means none
  uint64_t size = 0;             // bytes, a multiple of min_block
  uint16_t transmission_flags = served_transmission_flags;
  uint32_t min_block = default_min_block;
  uint32_t preferred_block = default_preferred_block;
  uint32_t max_payload = default_max_payload;
};

// Null when `d` can be served; otherwise one line saying what is wrong (for a
// startup error). A Handshake built from an invalid description closes at once.
const char* export_description_problem(const ExportDescription& d) noexcept;

// What transmission needs to judge a request.
struct ExportGeometry {
  uint64_t size;
  uint32_t min_block;    // offsets and lengths must be multiples of it
  uint32_t max_payload;  // longest READ or WRITE payload
};

inline constexpr ExportGeometry geometry_of(const ExportDescription& d) noexcept {
  return {d.size, d.min_block, d.max_payload};
}

}  // namespace vramswap::nbd
