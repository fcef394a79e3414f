#pragma once

// The fake driver's configuration, read from the environment at cuInit.

#include <cstdint>
#include <string>

namespace vramswap::fake_cuda {

inline constexpr int max_devices = 16;
inline constexpr uint64_t unlimited = UINT64_MAX;

struct Config {
  int devices = 1;                          // VRAMSWAP_FAKE_DEVICES (0..16)
  std::string name = "vramswap fake GPU";   // VRAMSWAP_FAKE_NAME
  uint64_t memory = uint64_t{16} << 30;     // VRAMSWAP_FAKE_MEMORY, per device
  uint64_t reserved = uint64_t{256} << 20;  // VRAMSWAP_FAKE_RESERVED, the "driver's" own use
  uint64_t alloc_fail_above = unlimited;    // VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE
  uint64_t fail_copy = 0;                   // VRAMSWAP_FAKE_FAIL_COPY (1-based; 0: off)
  uint64_t fail_copy_count = 1;             // VRAMSWAP_FAKE_FAIL_COPY_COUNT
  uint64_t lose_device_after = unlimited;   // VRAMSWAP_FAKE_LOSE_DEVICE_AFTER
  std::string backing_dir;                  // VRAMSWAP_FAKE_BACKING_DIR
  std::string control_path;                 // VRAMSWAP_FAKE_CONTROL
  int init_error = 0;                       // VRAMSWAP_FAKE_INIT_ERROR: cuInit's result
  bool no_kernel = false;                   // VRAMSWAP_FAKE_NO_KERNEL=1: no module loads
  bool no_shareable = false;     // VRAMSWAP_FAKE_NO_SHAREABLE=1: no VRAM exportable as descriptors
  uint64_t copy_latency_us = 0;  // VRAMSWAP_FAKE_COPY_LATENCY_US: a slow GPU
};

// Reads the VRAMSWAP_FAKE_* variables. False, with `error` naming the variable
// and what is wrong with its value, when one does not parse.
bool read_config(Config& config, std::string& error);

}  // namespace vramswap::fake_cuda
