#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"
#include "config/config.hpp"
#include "config/file_access.hpp"
#include "config/trust.hpp"

namespace vramswap::config {
namespace {

// Far more than any real configuration; stops a wrong --config (a disk
// image, /dev/zero) from being read into memory.
constexpr off_t max_config_file_size = 1 << 20;

}  // namespace

void throw_cannot_open(const std::string& path, int error) {
  switch (error) {
    case ENOENT:
      throw StartupError(
          exit_code::config,
          path +
              ": no such file; create it (see vramswap.conf(5)) or name the right one "
              "with --config");
    case EACCES:
    case EPERM:
      throw StartupError(exit_code::no_permission,
                         path + ": permission denied; run as root, or let this user read the file");
    default:
      throw StartupError(exit_code::config, path + ": cannot open: " + std::strerror(error) +
                                                "; check the path given with --config");
  }
}

std::string read_config_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO by mistake must not hang the boot.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) throw_cannot_open(path, errno);
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) throw_cannot_open(path, errno);
  if (!S_ISREG(status.st_mode)) {
    throw StartupError(exit_code::config,
                       path + ": not a regular file; name the configuration file with --config");
  }
  if (status.st_size > max_config_file_size) {
    throw StartupError(exit_code::config, path + ": " + format_byte_size(uint64_t(status.st_size)) +
                                              " is too large for a configuration file (over " +
                                              format_byte_size(max_config_file_size) +
                                              "); name the right file with --config");
  }
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw StartupError(exit_code::config, path + ": cannot read: " + std::strerror(errno) +
                                                "; check the file system");
    }
    if (got == 0) return text;
    text.append(buffer, size_t(got));
    // The file grew after fstat: still refuse to swallow a huge one.
    if (text.size() > size_t(max_config_file_size)) {
      throw StartupError(exit_code::config, path + ": too large for a configuration file (over " +
                                                format_byte_size(max_config_file_size) +
                                                "); name the right file with --config");
    }
  }
}

ConfigReport load_config_report(const std::string& path, const ParseOptions& options) {
  return parse_config_report(read_config_file(path), path, options);
}

Config load_config(const std::string& path, const ParseOptions& options) {
  return parse_config(read_config_file(path), path, options);
}

DeviceConfig load_device_config(const std::string& path, std::string_view instance,
                                const ParseOptions& options) {
  check_config_file_trusted(path);
  return select_device(load_config_report(path, options), instance);
}

}  // namespace vramswap::config
