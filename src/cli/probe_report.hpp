#pragma once

// `vramswap probe` as a pure function: the GPUs the driver lists (with free
// VRAM), the config file and the running daemons go in; what size = auto
// would take on each GPU, and what each configured device would get, come
// out. The sizes come from config/size.hpp, the daemon's own arithmetic.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/message.hpp"
#include "cli/status_report.hpp"
#include "cuda/device.hpp"
#include "status/instance_status.hpp"

namespace vramswap::cli {

// Exit statuses of `vramswap probe` (see vramswap(8)).
namespace probe_exit {
inline constexpr int ok = 0;       // GPUs listed; every configured device would start
inline constexpr int trouble = 1;  // GPUs listed; a configured device would not start
// 69 (exit_code::unavailable): no usable driver or no GPU.
}  // namespace probe_exit

struct ProbeInputs {
  DriverObservation driver;  // free VRAM asked for
  ConfigObservation config;
  // The status files of daemons that run now: their VRAM is already taken,
  // so free VRAM says nothing about what they would get.
  std::vector<status::InstanceStatus> running;
};

struct GpuView {
  cuda::DeviceInfo info;
  std::optional<uint64_t> auto_bytes;  // what size = auto takes now; empty: free VRAM unknown
  bool auto_ok = false;                // ... and that is enough (above min_size)
  Messages messages;
};

struct DeviceView {
  std::string name;
  std::string gpu;  // the gpu setting, as written
  std::optional<int> gpu_index;
  std::string size;                    // the size setting: "auto", "50%", "16.0 GiB"
  std::optional<uint64_t> size_bytes;  // what it would get if started now
  bool running = false;                // its daemon runs (size_bytes: what it holds)
  bool ok = false;                     // it would start (or runs)
  Messages messages;
};

struct ProbeReport {
  DriverObservation driver;
  ConfigObservation config;
  uint64_t reserve_bytes = 0;  // [global] reserve, or the default
  uint64_t min_size_bytes = 0;
  std::vector<GpuView> gpus;
  std::vector<DeviceView> devices;
  Messages messages;
  int exit_status = probe_exit::ok;
};

ProbeReport build_probe_report(const ProbeInputs& inputs);

}  // namespace vramswap::cli
