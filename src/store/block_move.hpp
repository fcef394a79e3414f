#pragma once

#include <cstdint>

namespace vramswap::store {

// One entry of the table the copy kernel reads (src/store/copy_kernel.cu):
// move `bytes` between the device-visible address of mapped pinned host
// memory and VRAM. Shared, byte for byte, by the kernel, the store that fills
// the table, and the test suite's fake driver that emulates the kernel.
struct BlockMove {
  uint64_t host;       // device-visible address inside a mapped pinned buffer
  uint64_t device;     // VRAM address
  uint32_t bytes;      // at most max_block_move_bytes
  uint32_t to_device;  // 1: host -> VRAM, 0: VRAM -> host
};
static_assert(sizeof(BlockMove) == 24);

// Larger moves are split so that one large request keeps many thread blocks
// busy instead of one.
inline constexpr uint32_t max_block_move_bytes = 64 * 1024;

// Copies this large go to the copy engines (DMA) directly: they run at full
// bus speed one at a time and need no SM time.
inline constexpr uint64_t dma_copy_bytes = 256 * 1024;

// The kernel's entry point, one thread block per table entry.
inline constexpr const char* block_move_kernel_name = "vramswap_move_blocks";
inline constexpr unsigned block_move_threads = 256;

}  // namespace vramswap::store
