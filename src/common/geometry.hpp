#pragma once

#include <cstdint>

namespace vramswap {

// The export's block: the block size the kernel's nbd device is given, the
// block clients are told to prefer, the unit of `verify = yes` checksums and
// of the chunk map's live-data tracking. One number, because they must agree:
// a device block smaller than the checksummed block would turn every swap
// write into a read-modify-write that verify refuses.
inline constexpr uint32_t export_block_bytes = 4096;

// Export sizes are whole multiples of this, and the elastic tier moves VRAM in
// chunks of it: CUDA maps physical memory in 2 MiB pages, and 2 MiB is a
// multiple of every block and page size in play.
inline constexpr uint64_t vram_chunk_bytes = uint64_t{2} << 20;

}  // namespace vramswap
