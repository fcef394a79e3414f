#pragma once

// /etc/vramswap.conf: a [global] section of defaults and one [device.NAME]
// section per daemon instance (vramswap@NAME.service). See vramswap.conf(5).
//
// Fragments: after the main file come the *.conf files of its drop-in
// directories, sorted by file name, as systemd's own tools read theirs. For
// /etc/vramswap.conf those are /etc/vramswap.conf.d, /run/vramswap.conf.d and
// /usr/lib/vramswap.conf.d, where a name in an earlier directory hides the
// same name in a later one; for ROOT/etc/vramswap.conf the same under ROOT
// (a system image; tests); for any other FILE (--config) FILE.d alone. A
// section may appear in several files: its keys add up, and a key set again
// in a later file overrides the earlier value. Within one file a repeated key
// or section stays an error.
//
// Two ways in:
//  - parse_config_report()/load_config_report() never fail on content: they
//    return every error, and per device whether it is usable, so that the
//    generator can still set up the devices whose sections are fine;
//  - parse_config()/load_config() and select_device()/load_device_config()
//    throw StartupError(exit_code::config, "<file>:<line>: ...") on the first
//    error that matters, for the daemon and for `vramswap` commands.
//
// An error inside a [device.NAME] section (with a valid NAME) breaks only that
// device. Any other error (in [global], before the first section, in an
// unknown or misnamed section) breaks every device: [global] feeds them all,
// and a misspelt section may well have been meant as [global].

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/types.hpp"

namespace vramswap::config {

inline constexpr const char* default_config_path = "/etc/vramswap.conf";

// Built-in defaults, for the man page and for messages.
inline constexpr unsigned max_default_connections = 16;
inline constexpr unsigned max_connections = 64;
inline constexpr unsigned max_nbd_index = 1023;
inline constexpr int default_priority = 1000;  // above zram's usual 100: VRAM before zram and disk
// timeout = auto: with one connection the kernel then never fails a slow
// request (it only warns); with several it gives up on a connection after
// this long and moves its requests to another one, which is also what it does
// when told 0 (its block layer's own 30 s timer).
inline constexpr unsigned auto_timeout_several_connections_s = 30;
inline constexpr unsigned max_timeout_s = 86400;
// A worker that just served requests keeps polling its sockets this long
// before it sleeps: the next request of a burst then skips a wake-up (a few
// microseconds of latency each), for a bounded amount of spinning.
inline constexpr unsigned default_busy_poll_us = 50;
inline constexpr unsigned max_busy_poll_us = 10000;

struct ParseOptions {
  // Online CPUs, for the default of `connections`; below 1: ask the system
  // (sysconf(_SC_NPROCESSORS_ONLN)).
  long online_cpus = -1;
};

// The per-request timeout handed to the kernel: `timeout`, or for auto 0 with
// one connection and auto_timeout_several_connections_s with more.
unsigned effective_timeout_s(const DeviceConfig& device);

// `connections` when the file does not say: one per online CPU, 1 to 16.
unsigned default_connections(long online_cpus);

// The configuration a device gets from built-in defaults alone.
DeviceConfig default_device_config(const ParseOptions& options = {});

// One error: `message` is the whole line the user sees, "<file>:<line>: ...".
struct ConfigError {
  int line = 0;  // 0: not about one line (the file as a whole)
  std::string message;
  int source = 0;  // the file: an index into ConfigReport::files
};

struct DeviceResult {
  std::string name;
  int line = 0;    // line of its (first) [device.NAME] header
  int source = 0;  // and its file, an index into ConfigReport::files
  // Present when neither this device's section nor the file as a whole has
  // an error: the device can be started as configured.
  std::optional<DeviceConfig> config;
  // Errors about this device alone, in line order (file-wide errors are in
  // ConfigReport::file_errors).
  std::vector<ConfigError> errors;
};

struct ConfigReport {
  std::string path;                      // the main file
  std::vector<std::string> files;        // every file read, in the order applied
  std::vector<ConfigError> file_errors;  // break every device, in file and line order
  std::vector<DeviceResult> devices;     // in order of their first header
  // What a device that sets nothing itself gets: built-in defaults with the
  // valid keys of [global] applied (`vramswap probe` sizes GPUs with it).
  DeviceConfig defaults;

  bool ok() const;
  // The file a KeyOrigin, DeviceConfig or ConfigError names.
  const std::string& file(int source) const { return files.at(size_t(source)); }
  // Every error, file-wide and per device, in file and line order.
  std::vector<ConfigError> all_errors() const;
  const DeviceResult* find(std::string_view name) const;
  // What stops this device: the file-wide errors, then its own, in line order.
  std::vector<ConfigError> errors_for(const DeviceResult& device) const;
};

struct Config {
  std::string path;
  std::vector<DeviceConfig> devices;  // in file order
};

// One file's text; `path` only names it in messages.
struct ConfigText {
  std::string path;
  std::string text;
};

// The main file's text, then the fragments', in the order they apply. Never
// throws for content.
ConfigReport parse_config_texts(const std::vector<ConfigText>& texts,
                                const ParseOptions& options = {});
// A single file.
ConfigReport parse_config_report(std::string_view text, std::string_view path,
                                 const ParseOptions& options = {});

// Throws StartupError(exit_code::config) with the first error in the file.
Config parse_config(std::string_view text, std::string_view path, const ParseOptions& options = {});
// The devices of `report`, or StartupError(exit_code::config) with its first error.
Config valid_config(ConfigReport report);

// The fragments of the configuration `path`, in the order they apply (see
// above): *.conf files, none whose name starts with '.', none masked (a link
// to /dev/null). Missing directories are no error; an unreadable one is a
// StartupError naming it.
std::vector<std::string> config_fragments(const std::string& path);

// Reads the file: missing, unreadable, not a regular file or absurdly large
// are StartupErrors that say what to do. Content errors as above.
std::string read_config_file(const std::string& path);
// The main file and its fragments. A missing main file is an error only when
// there are no fragments either.
ConfigReport load_config_report(const std::string& path, const ParseOptions& options = {});
// The same, after checking that only root can change any of the files
// (check_config_file_trusted): what the daemon and the generator act on.
ConfigReport load_trusted_config_report(const std::string& path, const ParseOptions& options = {});
Config load_config(const std::string& path, const ParseOptions& options = {});

// The device named `instance`; a missing one is a StartupError listing the
// configured names.
const DeviceConfig& find_device(const Config& config, std::string_view instance);

// The configuration of `instance` if it can be started: throws the first
// file-wide error, else the device's first error, else "no such device"
// (listing the configured names). Errors in other devices' sections do not
// stop this one.
DeviceConfig select_device(const ConfigReport& report, std::string_view instance);

// Where `key` of `device` was set, "<file>:<line>", for messages about a
// value that only a check outside the parser can refuse; the device's section
// header when the key has its built-in default.
std::string key_place(const ConfigReport& report, const DeviceConfig& device, std::string_view key);

// The daemon's way in: load_trusted_config_report(), then select `instance`.
DeviceConfig load_device_config(const std::string& path, std::string_view instance,
                                const ParseOptions& options = {});

}  // namespace vramswap::config
