#pragma once

// What vramswap-generator writes for /etc/vramswap.conf, as data: the unit
// files and symlinks for each usable device, and the lines to log for the
// others. Pure: no file system access, so tests compare exact output.
//
// For a device NAME (see vramswap-generator(8) for the reasoning):
//  - vramswap@NAME.service is wanted by multi-user.target and by
//    sys-bus-pci-drivers-nvidia.device, the NVIDIA driver's arrival (udev
//    rule 60-vramswap.rules), so it starts once the driver is there, however
//    late in the boot that is;
//  - with attach = yes and swap = no, dev-vramswap-NAME.swap activates the
//    daemon's device: wanted by dev-vramswap-NAME.device (it starts when the
//    device appears), bound to and ordered after the service (so swapoff runs
//    before the daemon stops), and preceded by vramswap-mkswap@NAME.service,
//    which writes a fresh swap signature each time the device appears;
//  - with swap = yes the daemon runs swapon itself, with attach = no there is
//    no kernel device: the service alone;
//  - a device whose section has errors (or the file has), and a device whose
//    daemon runs (its status file is in the runtime directory) although no
//    section names it any more, gets a stop-only dev-vramswap-NAME.swap:
//    nothing starts it, but a swap already on is turned off before its
//    daemon stops, so that a typo and a daemon-reload never leave a running
//    device without a stop path (vramswap-generator(8)).

#include <string>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"

namespace vramswap::generator {

struct Settings {
  std::string config_path;    // SourcePath= and messages
  std::string template_unit;  // installed vramswap@.service, target of the .wants links
};

struct OutputEntry {
  enum class Kind { file, symlink };
  Kind kind = Kind::file;
  std::string path;     // relative to the output directory
  std::string content;  // the file's text, or the link's target
  bool operator==(const OutputEntry&) const = default;
};

struct LogLine {
  LogLevel level = LogLevel::error;
  std::string text;
  bool operator==(const LogLine&) const = default;
};

// Everything written for one device, in a fixed order.
std::vector<OutputEntry> units_for_device(const config::DeviceConfig& device,
                                          const Settings& settings);

struct DevicePlan {
  std::string name;
  std::vector<OutputEntry> entries;
  bool operator==(const DevicePlan&) const = default;
};

struct Plan {
  // The devices set up, in file order, then the stop-only units of running
  // devices no section names.
  std::vector<DevicePlan> devices;
  std::vector<LogLine> log;  // why some are not set up
};

// How long a swap unit's swapoff may run (systemd time span).
inline constexpr const char* swapoff_timeout = "10min";

// At most this many configuration errors are logged per run (then a count of
// the rest and one line on what they cost): the kernel lets a writer put ten
// lines into /dev/kmsg in a burst and drops the rest.
inline constexpr size_t max_logged_errors = 6;

// `running`: device names whose daemon runs now (from their status files).
Plan plan_units(const config::ConfigReport& report, const Settings& settings,
                const std::vector<std::string>& running = {});

// The plan for a configuration that cannot be read at all (`why` is the
// one-line StartupError message): nothing set up but the stop path of the
// `running` devices, and why logged.
Plan plan_unreadable(const std::string& why, const std::vector<std::string>& running = {});

}  // namespace vramswap::generator
