#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>

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

// Where fragments of `path` live, the directory whose name wins first: for
// the default file the three systemd's own tools use (the admin's /etc, the
// runtime's /run, the packages' /usr/lib), for any other FILE.d alone.
std::vector<std::string> drop_in_directories(const std::string& path) {
  const std::string_view standard = default_config_path;
  if (!std::string_view(path).ends_with(standard)) return {path + ".d"};
  const std::string root = path.substr(0, path.size() - standard.size());
  std::vector<std::string> directories;
  for (const char* base : {"/etc/", "/run/", "/usr/lib/"})
    directories.push_back(root + base + "vramswap.conf.d");
  return directories;
}

bool is_fragment_name(const char* name) {
  const size_t length = std::strlen(name);
  return name[0] != '.' && length > 5 && std::strcmp(name + length - 5, ".conf") == 0;
}

// A link to /dev/null hides a fragment of the same name in a later
// directory and adds nothing itself, as in systemd.
bool is_masked(const std::string& path) {
  char target[PATH_MAX];
  return ::realpath(path.c_str(), target) && std::strcmp(target, "/dev/null") == 0;
}

}  // namespace

std::vector<std::string> config_fragments(const std::string& path) {
  std::map<std::string, std::string> by_name;  // sorted by file name, as systemd sorts
  for (const std::string& directory : drop_in_directories(path)) {
    DIR* listing = ::opendir(directory.c_str());
    if (!listing) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      throw StartupError(exit_code::config,
                         directory + ": cannot read the directory: " + std::strerror(errno) +
                             "; fix its permissions or remove it");
    }
    while (const dirent* entry = ::readdir(listing)) {
      // emplace keeps the first: an earlier directory hides a later one's file.
      if (is_fragment_name(entry->d_name))
        by_name.emplace(entry->d_name, directory + "/" + entry->d_name);
    }
    ::closedir(listing);
  }
  std::vector<std::string> fragments;
  for (const auto& [name, fragment] : by_name) {
    if (!is_masked(fragment)) fragments.push_back(fragment);
  }
  return fragments;
}

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

namespace {

// The files of the configuration `path` in the order they apply: the main
// file (left out when it is missing but fragments are there, so a package's
// fragment alone can configure a device) and its fragments.
std::vector<std::string> config_files(const std::string& path) {
  std::vector<std::string> files = config_fragments(path);
  struct stat status {};
  if (files.empty() || ::stat(path.c_str(), &status) == 0 || errno != ENOENT)
    files.insert(files.begin(), path);
  return files;
}

ConfigReport read_and_parse(const std::string& path, const std::vector<std::string>& files,
                            const ParseOptions& options) {
  std::vector<ConfigText> texts;
  for (const std::string& file : files)
    texts.push_back({file, read_config_file(file)});
  ConfigReport report = parse_config_texts(texts, options);
  report.path = path;  // named in messages even when only fragments exist
  return report;
}

}  // namespace

ConfigReport load_config_report(const std::string& path, const ParseOptions& options) {
  return read_and_parse(path, config_files(path), options);
}

ConfigReport load_trusted_config_report(const std::string& path, const ParseOptions& options) {
  const std::vector<std::string> files = config_files(path);
  for (const std::string& file : files)
    check_config_file_trusted(file);
  return read_and_parse(path, files, options);
}

Config load_config(const std::string& path, const ParseOptions& options) {
  return valid_config(load_config_report(path, options));
}

DeviceConfig load_device_config(const std::string& path, std::string_view instance,
                                const ParseOptions& options) {
  return select_device(load_trusted_config_report(path, options), instance);
}

}  // namespace vramswap::config
