#pragma once

#include "cli/status_report.hpp"
#include "cuda/device.hpp"

namespace vramswap::cli {

// Loads the CUDA driver ($VRAMSWAP_LIBCUDA or libcuda.so.1) and lists the
// GPUs, free VRAM included with FreeMemory::query. Never throws for what a
// user can hit: `error` then holds the one line (cause; fix).
DriverObservation observe_driver(cuda::FreeMemory free);

}  // namespace vramswap::cli
