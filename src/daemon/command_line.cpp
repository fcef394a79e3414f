#include "daemon/command_line.hpp"

#include <getopt.h>

#include "common/startup_error.hpp"
#include "config/config.hpp"

namespace vramswap::daemon {

const char* usage_text() {
  return "Usage: vramswapd [--config FILE] [--instance NAME]\n"
         "       vramswapd --record-exit --instance NAME\n"
         "Serves VRAM of an NVIDIA GPU as a block device for swap (see vramswapd(8)).\n"
         "\n"
         "  -c, --config FILE    configuration file (default /etc/vramswap.conf)\n"
         "  -i, --instance NAME  the [device.NAME] section to serve (default: the only one)\n"
         "      --record-exit    after the daemon of --instance exited (systemd's\n"
         "                       ExecStopPost=): record how it ended, if it died\n"
         "  -h, --help           show this help\n"
         "  -V, --version        show the version\n";
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine result;
  result.config_path = config::default_config_path;
  static const option options[] = {{"config", required_argument, nullptr, 'c'},
                                   {"instance", required_argument, nullptr, 'i'},
                                   {"record-exit", no_argument, nullptr, 'R'},
                                   {"help", no_argument, nullptr, 'h'},
                                   {"version", no_argument, nullptr, 'V'},
                                   {nullptr, 0, nullptr, 0}};
  opterr = 0;
  optind = 1;
  for (;;) {
    const int c = getopt_long(argc, argv, "c:i:hV", options, nullptr);
    if (c == -1) break;
    switch (c) {
      case 'c': result.config_path = optarg; break;
      case 'i': result.instance = optarg; break;
      case 'R': result.record_exit = true; break;
      case 'h': result.help = true; break;
      case 'V': result.version = true; break;
      default: {
        const std::string bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        throw StartupError(exit_code::usage,
                           "unknown or incomplete option " + bad + "; see vramswapd --help");
      }
    }
  }
  if (optind < argc) {
    throw StartupError(exit_code::usage, std::string("unexpected argument ") + argv[optind] +
                                             "; see vramswapd --help");
  }
  if (result.record_exit && result.instance.empty()) {
    throw StartupError(exit_code::usage, "--record-exit needs --instance NAME");
  }
  return result;
}

}  // namespace vramswap::daemon
