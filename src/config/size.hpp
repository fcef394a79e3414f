#pragma once

// How much VRAM a device takes, from its `size`, `reserve` and `min_size` and
// the VRAM free when it starts. Shared by the daemon and `vramswap probe`, so
// that what probe recommends is what the daemon allocates.

#include <cstdint>
#include <string>

#include "common/geometry.hpp"
#include "config/types.hpp"

namespace vramswap::config {

// Swap sizes are whole chunks (common/geometry.hpp says why).
inline constexpr uint64_t swap_size_alignment = vram_chunk_bytes;

// size = auto: free VRAM minus `reserve` (nothing when reserve is larger);
// N%: N percent of free VRAM; bytes: as given. Rounded down to 2 MiB.
uint64_t resolve_size(const SizeSpec& size, uint64_t reserve, uint64_t free_vram);

// "auto", "50%", "16.0 GiB": the setting as written, for messages.
std::string describe_size(const SizeSpec& size);

// resolve_size() for `device` on a GPU with `free_vram` of `total_vram`:
//  - a fixed size above the GPU's total memory is StartupError(config)
//    naming the total;
//  - a fixed or percentage size above free VRAM minus `reserve` is lowered
//    to that (`lowered` says so, naming the cause): the reserve is always
//    left, never backed off into;
//  - a result of nothing or below min_size is StartupError(unavailable)
//    saying how the size came about and what to change.
struct SwapSize {
  uint64_t bytes = 0;
  std::string lowered;  // why `bytes` is less than the size asked for; empty if it is not
};
SwapSize choose_swap_size(const DeviceConfig& device, uint64_t free_vram, uint64_t total_vram);

}  // namespace vramswap::config
