#include "daemon/status_line.hpp"

#include "common/byte_size.hpp"

namespace vramswap::daemon {

std::string compose_status_line(const StatusFacts& f) {
  std::string line;
  if (f.device_lost) {
    line = "FAILED: GPU lost, every request fails; ";
  } else if (f.copy_failures || f.checksum_failures) {
    line = "DEGRADED: " + std::to_string(f.copy_failures) + " failed copies, " +
           std::to_string(f.checksum_failures) + " checksum mismatches; ";
  }
  if (!f.stopping.empty()) line += "stopping: " + f.stopping + "; ";
  line += format_byte_size(f.size_bytes) + " of " + f.gpu;
  if (!f.device.empty()) {
    line += " on " + f.device;
    if (f.swap) {
      line += ", swap " + format_byte_size(f.swap->used_bytes) + " used, priority " +
              std::to_string(f.swap->priority);
    } else {
      line += ", not swap";
    }
    line += ", " + std::to_string(f.kernel_connections) + " connections";
  }
  if (!f.listen.empty()) line += (f.device.empty() ? " on " : ", listening on ") + f.listen;
  return line;
}

}  // namespace vramswap::daemon
