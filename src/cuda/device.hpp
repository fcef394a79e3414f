#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/driver.hpp"

namespace vramswap::cuda {

// One GPU as the CUDA driver numbers it.
struct DeviceInfo {
  int index = 0;           // CUDA ordinal (cuDeviceGet); see select_device about ordering
  std::string name;        // "NVIDIA H100 80GB HBM3"
  std::string uuid;        // "GPU-8f0c2e4a-...", as nvidia-smi prints it
  std::string pci_bus_id;  // "0000:01:00.0", as cuDeviceGetPCIBusId gives it
  uint64_t total_bytes = 0;
  // Free VRAM, when asked for and the GPU let us create a context to ask;
  // otherwise empty and, if the query failed, free_error says why.
  std::optional<uint64_t> free_bytes;
  CUresult free_error = CUDA_SUCCESS;
};

enum class FreeMemory {
  skip,   // no context is created: cheap, touches no GPU (the daemon's choice)
  query,  // retains each GPU's primary context for cuMemGetInfo (for `probe`)
};

// Every GPU the driver sees, in CUDA order. Throws StartupError(unavailable)
// when the driver cannot be queried or sees no GPU. With FreeMemory::query it
// changes the calling thread's current context and leaves none current: a
// thread that uses a Context afterwards calls bind_current_thread() again.
std::vector<DeviceInfo> list_devices(const Driver& driver, FreeMemory free = FreeMemory::skip);

// Picks the GPU the config's `gpu` value names:
//   - a CUDA index: "0", "1" (CUDA's order, which by default puts the fastest
//     GPU first and can differ from nvidia-smi's; prefer a UUID or PCI bus id
//     on machines with several GPUs),
//   - a UUID as nvidia-smi prints it, "GPU-8f0c2e4a-....", case-insensitive,
//     or any prefix of one that matches a single GPU ("GPU-8f0c"),
//   - a PCI bus id, "0000:01:00.0", nvidia-smi's "00000000:01:00.0" or the
//     short "01:00.0", case-insensitive.
// Throws StartupError naming what exists: exit_code::config when the value is
// malformed or ambiguous, exit_code::unavailable when no GPU matches.
const DeviceInfo& select_device(const std::vector<DeviceInfo>& devices, std::string_view gpu);

// "0: NVIDIA H100 80GB HBM3 (GPU-8f0c2e4a-..., 0000:01:00.0, 79.1 GiB)"
std::string describe_device(const DeviceInfo& device);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower-case hex.
std::string format_uuid(const CUuuid& uuid);

struct PciAddress {
  uint32_t domain = 0;
  uint32_t bus = 0;
  uint32_t device = 0;
  uint32_t function = 0;
  friend bool operator==(const PciAddress&, const PciAddress&) = default;
};

// "[domain:]bus:device.function" in hex, any case; domain up to 8 digits.
std::optional<PciAddress> parse_pci_bus_id(std::string_view text);

}  // namespace vramswap::cuda
