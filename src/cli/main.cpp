// vramswap: shows the VRAM swap devices (status) and the GPUs that could
// hold them (probe); as root, asks a daemon to release its VRAM to the spill
// area or restore it (release, restore), and takes VRAM swap out of the way
// of a hibernation and back (hibernate prepare|resume). See vramswap(8).
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "cli/command_line.hpp"
#include "cli/elastic_command.hpp"
#include "cli/hibernate_command.hpp"
#include "cli/probe_command.hpp"
#include "cli/status_command.hpp"
#include "common/startup_error.hpp"
#include "config/config.hpp"

int main(int argc, char** argv) {
  using namespace vramswap;
  try {
    const cli::CommandLine command_line =
        cli::parse_command_line(argc, argv, VRAMSWAP_DEFAULT_CONFIG);
    // The status library reads the runtime directory from the environment.
    if (!command_line.runtime_dir.empty()) {
      setenv("VRAMSWAP_RUNTIME_DIR", command_line.runtime_dir.c_str(), 1);
    }
    switch (command_line.command) {
      case cli::Command::help:
        std::fputs(cli::usage_text(), stdout);
        return exit_code::ok;
      case cli::Command::version:
        std::printf("vramswap %s\n", VRAMSWAP_VERSION);
        return exit_code::ok;
      case cli::Command::status:
        return cli::run_status(command_line.config_path, command_line.json);
      case cli::Command::probe:
        return cli::run_probe(command_line.config_path, command_line.json);
      case cli::Command::release:
      case cli::Command::restore:
        return cli::run_control(command_line.instance, command_line.request);
      case cli::Command::hibernate:
        return cli::run_hibernate(command_line.hibernate_step, command_line.config_path);
    }
    return exit_code::software;
  } catch (const StartupError& e) {
    std::fprintf(stderr, "vramswap: %s\n", e.what());
    return e.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vramswap: internal error: %s\n", e.what());
    return exit_code::software;
  }
}
