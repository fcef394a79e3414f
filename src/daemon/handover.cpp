#include "daemon/handover.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "daemon/elastic_tier.hpp"
#include "daemon/kernel_device.hpp"
#include "systemd/unit_name.hpp"

namespace vramswap::daemon {

std::optional<Handover> find_handover(kernel::NbdNetlink& netlink, const std::string& instance,
                                      const std::string& state_path, uint64_t chunk_bytes) {
  const std::vector<uint32_t> devices =
      netlink.find_by_backend(systemd::backend_identifier(instance));
  if (devices.empty()) return std::nullopt;
  std::optional<Handover> handover;
  std::string why = "no spill area, so no restart record";
  if (!state_path.empty()) {
    // The record names its device; the device's own size is the truth its
    // pages were written against.
    for (const uint32_t index : devices) {
      const std::optional<kernel::NbdSysfs> sysfs = kernel::read_nbd_sysfs(index);
      if (!sysfs) continue;
      std::string refused;
      std::optional<store::SavedChunks> saved = store::restart_state::read(
          state_path, {instance, sysfs->size_bytes, chunk_bytes}, refused);
      if (!saved) {
        why = "restart record " + state_path + ": " + refused;
        continue;
      }
      if (saved->nbd_index != index) {
        why =
            "restart record " + state_path + " is for /dev/nbd" + std::to_string(saved->nbd_index);
        continue;
      }
      handover = Handover{index, std::move(*saved), std::nullopt};
      struct stat record {};
      if (stat(state_path.c_str(), &record) == 0) {
        handover->recorded_at = std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::seconds(record.st_mtim.tv_sec) +
                std::chrono::nanoseconds(record.st_mtim.tv_nsec)));
      }
      break;
    }
  }
  for (const uint32_t index : devices) {
    if (handover && handover->nbd_index == index) continue;
    release_left_device(netlink, index, why);
  }
  if (handover) {
    log_info("/dev/nbd%u was handed over by the vramswapd before: %s of swapped data in %s",
             handover->nbd_index, format_byte_size(handover->saved.spill_bytes()).c_str(),
             state_path.substr(0, state_path.size() - 6).c_str());
  }
  return handover;
}

void log_unserved_gap(uint32_t nbd_index,
                      std::optional<std::chrono::system_clock::time_point> since,
                      const char* what) {
  if (!since) return;
  const std::chrono::duration<double> gap = std::chrono::system_clock::now() - *since;
  log_info(
      "/dev/nbd%u went unserved for %.2f s, from %s to this reattach: the requests the kernel "
      "queued meanwhile waited at most that long",
      nbd_index, gap.count(), what);
}

void log_unserved_gap(const Handover& handover) {
  log_unserved_gap(handover.nbd_index, handover.recorded_at, "the handover record");
}

bool prepare_handover(ElasticTier* tier, KernelDevice* kernel, std::string& why) {
  if (!kernel) {
    why = "attach = no: there is no kernel device to hand over";
    return false;
  }
  if (!tier) {
    why = "no spill area (spill = no, or it could not be had)";
    return false;
  }
  if (!tier->restart_state_path()) {
    why = "no restart record file beside the spill area";
    return false;
  }
  log_info("restart requested: moving every chunk of %s to the spill area", kernel->path().c_str());
  const ElasticControl::Answer answer = tier->release(ElasticControl::all_bytes);
  if (!answer.ok) {
    why = answer.line;
    return false;
  }
  return true;
}

int finish_handover(ElasticTier& tier, KernelDevice& kernel) {
  std::string why;
  if (!tier.save_for_restart(kernel.index(), why)) {
    log_error(
        "cannot record the handover of %s (%s): disconnecting it; the kernel fails its "
        "queued requests",
        kernel.path().c_str(), why.c_str());
    kernel.disconnect();
    return exit_code::os_error;
  }
  kernel.keep_for_next_daemon();
  log_info(
      "handed over %s: %s of swapped data in the spill area, recorded in %s; the kernel queues "
      "its requests for up to %u s until the next vramswapd reattaches",
      kernel.path().c_str(), format_byte_size(tier.snapshot().census.spill_bytes).c_str(),
      tier.restart_state_path(), dead_connection_timeout_s);
  return exit_code::ok;
}

}  // namespace vramswap::daemon
