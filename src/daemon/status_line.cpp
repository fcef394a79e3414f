#include "daemon/status_line.hpp"

#include "common/byte_size.hpp"

namespace vramswap::daemon {

std::string compose_status_line(const status::InstanceStatus& s, const std::string& stopping) {
  std::string line;
  if (s.device_lost) {
    line = "FAILED: GPU lost, every request fails; ";
  } else if (s.copy_failures || s.failed_copy_calls || s.checksum_failures) {
    line = "DEGRADED: " + std::to_string(s.copy_failures) + " failed copies, " +
           std::to_string(s.failed_copy_calls) + " failed copy calls, " +
           std::to_string(s.checksum_failures) + " checksum mismatches; ";
  }
  if (s.previous_crash) {
    const status::PreviousCrash& crash = *s.previous_crash;
    line += "PREVIOUS DAEMON DIED " + status::describe_crash_time(crash) +
            (crash.cause.empty() ? "" : " (" + crash.cause + ")") + ", " +
            status::summarize_crash_loss(crash) + "; ";
  }
  if (!stopping.empty()) line += "stopping: " + stopping + "; ";
  line += format_byte_size(s.size_bytes) + " of GPU " + std::to_string(s.gpu_index) + " (" +
          s.gpu_name + ")";
  if (!s.device.empty()) {
    line += " on " + s.device;
    if (s.swap_active) {
      line += ", swap " + format_byte_size(s.swap_used_bytes) + " used, priority " +
              std::to_string(s.swap_priority);
    } else {
      line += ", not swap";
    }
    line += ", " + std::to_string(s.kernel_connections) +
            (s.kernel_connections == 1 ? " connection" : " connections");
  }
  if (!s.listen.empty()) line += (s.device.empty() ? " on " : ", listening on ") + s.listen;
  if (s.elastic && (s.spill_bytes || s.none_bytes)) {
    line += "; " + format_byte_size(s.vram_bytes) + " in VRAM, " + format_byte_size(s.spill_bytes) +
            " in " + s.spill_path;
    if (s.none_bytes) line += ", " + format_byte_size(s.none_bytes) + " with no storage";
    if (!s.last_move_reason.empty()) line += " (" + s.last_move_reason + ")";
    if (s.gpu_released) line += "; GPU released";
  }
  return line;
}

}  // namespace vramswap::daemon
