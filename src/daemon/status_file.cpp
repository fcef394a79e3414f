#include "daemon/status_file.hpp"

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace vramswap::daemon {

void StatusFile::write(const status::InstanceStatus& status) {
  const bool written = status::write_status_file(status);
  const int error = errno;
  if (written == !missing_) return;
  missing_ = !written;
  const std::string path = status::status_path(status.instance);
  if (written) {
    log_info("status file %s written again: vramswap status sees this instance", path.c_str());
    return;
  }
  log_warning(
      "no status file: cannot write %s: %s; the device is served all the same, but vramswap "
      "status will not see it (create %s, or point VRAMSWAP_RUNTIME_DIR at a writable "
      "directory)",
      path.c_str(), std::strerror(error), status::runtime_directory().c_str());
}

}  // namespace vramswap::daemon
