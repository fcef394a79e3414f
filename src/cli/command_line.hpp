#pragma once

#include <string>

#include "cli/hibernate_command.hpp"
#include "status/control_protocol.hpp"

namespace vramswap::cli {

enum class Command { status, probe, release, restore, hibernate, help, version };

struct CommandLine {
  Command command = Command::status;  // `vramswap` alone is `vramswap status`
  bool json = false;
  std::string config_path;  // --config, else $VRAMSWAP_CONFIG, else the built-in default
  std::string runtime_dir;  // --runtime-dir; empty: $VRAMSWAP_RUNTIME_DIR or /run/vramswap
  // release and restore: the instance, and what to ask its daemon.
  std::string instance;
  status::ControlRequest request;
  // hibernate: prepare or resume.
  HibernateStep hibernate_step = HibernateStep::prepare;
};

// Options may come before or after the command. Throws
// StartupError(exit_code::usage) with a one-line message for anything else.
// `default_config` is the configuration file the units use.
CommandLine parse_command_line(int argc, char** argv, const std::string& default_config);

const char* usage_text();

}  // namespace vramswap::cli
