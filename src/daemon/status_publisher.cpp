#include "daemon/status_publisher.hpp"

#include <unistd.h>

#include <ctime>
#include <utility>

#include "daemon/status_line.hpp"
#include "kernel/hardening.hpp"
#include "kernel/swaps.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::daemon {

StatusPublisher::StatusPublisher(const config::DeviceConfig& device, const cuda::DeviceInfo& gpu,
                                 uint64_t gpu_total_bytes, const engine::Server& server,
                                 const std::optional<KernelDevice>& nbd_device,
                                 std::optional<status::PreviousCrash> previous_crash,
                                 const ElasticTier* tier, const FdStoreHandover* live)
    : server_(server), nbd_device_(nbd_device), tier_(tier), live_(live) {
  status::InstanceStatus& s = published_;
  s.instance = device.name;
  s.pid = getpid();
  s.gpu_index = gpu.index;
  s.gpu_name = gpu.name;
  s.gpu_uuid = gpu.uuid;
  s.gpu_pci_bus_id = gpu.pci_bus_id;
  s.gpu_total_bytes = gpu_total_bytes;
  s.size_bytes = server.export_size();
  s.listen = device.listen;
  s.previous_crash = std::move(previous_crash);
  if (nbd_device) {
    s.device = nbd_device->path();
    s.link = systemd::device_link(device.name);
  }
}

std::string StatusPublisher::publish(const std::string& stopping) {
  status::InstanceStatus& s = published_;
  s.state = stopping.empty() ? "serving" : "stopping";
  // A group of chunks that could not be parked again makes it false until
  // it is (the parking logs why).
  s.fd_store_handover = live_ && live_->ready();
  if (nbd_device_) {
    s.kernel_connections = server_.live_kernel_connections();
    const auto swap = kernel::active_swap_for_device(nbd_device_->path());
    s.swap_active = swap.has_value();
    s.swap_size_bytes = swap ? swap->size_bytes : 0;
    s.swap_used_bytes = swap ? swap->used_bytes : 0;
    s.swap_priority = swap ? swap->priority : 0;
  }
  static_cast<IoCounters&>(s) = server_.stats();
  const engine::Health& health = server_.health();
  s.device_lost = health.device_lost();
  s.copy_failures = health.copy_failures();
  s.checksum_failures = health.checksum_failures();
  s.health = s.device_lost ? "failed" : health.degraded() || s.previous_crash ? "degraded" : "ok";
  const kernel::HardeningState hardening = kernel::hardening_state();
  s.memory_locked = hardening.memory_locked;
  s.oom_protected = hardening.oom_protected;
  s.io_flusher = hardening.io_flusher_threads > 0 && hardening.io_flusher_failed_threads == 0;
  if (tier_) {
    const ElasticSnapshot elastic = tier_->snapshot();
    s.elastic = true;
    s.vram_bytes = elastic.census.vram_bytes;
    s.spill_bytes = elastic.census.spill_bytes;
    s.none_bytes = elastic.census.none_bytes;
    s.gpu_free_bytes = elastic.gpu_free_bytes;
    s.spill_path = elastic.spill_path;
    s.last_move = elastic.last_move;
    s.last_move_reason = elastic.last_move_reason;
    s.last_move_unix = elastic.last_move_unix;
    s.gpu_released = elastic.gpu_released;
  }
  s.updated_unix = time(nullptr);
  s.status_line = compose_status_line(s, stopping);
  file_.write(s);
  return file_.missing() ? s.status_line + "; no status file" : s.status_line;
}

}  // namespace vramswap::daemon
