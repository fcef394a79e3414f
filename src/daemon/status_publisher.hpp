#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "cuda/device.hpp"
#include "daemon/elastic_tier.hpp"
#include "daemon/fd_store_handover.hpp"
#include "daemon/kernel_device.hpp"
#include "daemon/status_file.hpp"
#include "engine/server.hpp"
#include "status/instance_status.hpp"
#include "status/previous_crash.hpp"

namespace vramswap::daemon {

// What the daemon says about itself: the status file that `vramswap status`
// reads, and the line systemd shows (STATUS=). What never changes while the
// daemon runs (the GPU, the size, the device's names, an earlier crash) is
// set once; publish() gathers the rest (swap, I/O counters, health,
// hardening, where the elastic tier keeps the export) each time it is called. Not on the I/O path.
class StatusPublisher {
 public:
  // `nbd_device` is the daemon's attached device, empty with attach = no.
  StatusPublisher(const config::DeviceConfig& device, const cuda::DeviceInfo& gpu,
                  uint64_t gpu_total_bytes, const engine::Server& server,
                  const std::optional<KernelDevice>& nbd_device,
                  std::optional<status::PreviousCrash> previous_crash,
                  const ElasticTier* tier = nullptr, const FdStoreHandover* live = nullptr);

  // Publishes the state now: serving, or stopping because of `stopping`
  // (non-empty). Returns the line for systemd's STATUS=, which says so when
  // the status file could not be written.
  std::string publish(const std::string& stopping);

 private:
  status::InstanceStatus published_;
  StatusFile file_;
  const engine::Server& server_;
  const std::optional<KernelDevice>& nbd_device_;
  const ElasticTier* tier_;      // null: no elastic tier
  const FdStoreHandover* live_;  // null: no live restart state
};

}  // namespace vramswap::daemon
