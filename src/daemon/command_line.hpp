#pragma once

#include <string>

namespace vramswap::daemon {

struct CommandLine {
  std::string config_path;  // default: /etc/vramswap.conf
  std::string instance;     // empty: the only [device.NAME] of the file
  // --record-exit: run by systemd after the daemon exited (ExecStopPost=),
  // to record how a daemon that died while serving ended.
  bool record_exit = false;
  bool help = false;
  bool version = false;
};

// Throws StartupError(exit_code::usage) with the problem and a pointer to --help.
CommandLine parse_command_line(int argc, char** argv);
const char* usage_text();

}  // namespace vramswap::daemon
