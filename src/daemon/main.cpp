// vramswapd: serves an NVIDIA GPU's VRAM as a block device for swap.
#include <cstdio>
#include <exception>

#include "common/log.hpp"
#include "common/startup_error.hpp"
#include "daemon/command_line.hpp"
#include "daemon/daemon.hpp"
#include "daemon/previous_run.hpp"
#include "daemon/signals.hpp"
#include "kernel/hardening.hpp"

int main(int argc, char** argv) {
  using namespace vramswap;
  log_init("vramswapd", "");
  try {
    const daemon::CommandLine command_line = daemon::parse_command_line(argc, argv);
    if (command_line.help) {
      std::fputs(daemon::usage_text(), stdout);
      return exit_code::ok;
    }
    if (command_line.version) {
      // The second line is read by the packages' maintainer scripts: they
      // restart a running daemon into a new version only if it hands its
      // device over on "systemctl restart" (vramswapd(8), RESTART).
      std::printf("vramswapd %s\nfeatures: restart-handover\n", VRAMSWAP_VERSION);
      return exit_code::ok;
    }
    if (command_line.record_exit) return daemon::record_exit(command_line.instance);
    // Before any thread exists, so that every thread inherits the mask and
    // the small stack (the daemon locks every stack page in RAM).
    daemon::block_signals();
    kernel::limit_thread_stacks();
    return daemon::run(command_line);
  } catch (const StartupError& e) {
    log_error("%s", e.what());
    return e.exit_status();
  } catch (const std::exception& e) {
    log_error("internal error: %s", e.what());
    return exit_code::software;
  }
}
