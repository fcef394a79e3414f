#pragma once

// vramswap-generator's work, callable from tests: read the configuration,
// write the units of every usable device, log why the others are left out.

#include <functional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "generator/units.hpp"

namespace vramswap::generator {

struct Invocation {
  std::string output_dir;   // systemd's normal generator directory (argv[1])
  std::string config_path;  // /etc/vramswap.conf, or $VRAMSWAP_CONFIG
  std::string template_unit;
  bool in_initrd = false;  // $SYSTEMD_IN_INITRD=1: nothing to do there
  // Where running daemons keep NAME.json (/run/vramswap, or
  // $VRAMSWAP_RUNTIME_DIR): their devices keep a stop path whatever the
  // configuration says now.
  std::string runtime_dir;
};

// The device names with a status file in `runtime_dir`, sorted; none when
// the directory is missing or unreadable.
std::vector<std::string> running_devices(const std::string& runtime_dir);

// The exit status. 0 also when the configuration is broken or missing: the
// reason is logged, the boot goes on without the broken devices, and a
// failed generator would only add a second, vaguer message. 71 (os_error)
// when units could not be written (their device is then left out whole).
using LogSink = std::function<void(LogLevel, const std::string&)>;
int run(const Invocation& invocation, const LogSink& log);

}  // namespace vramswap::generator
