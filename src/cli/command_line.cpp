#include "cli/command_line.hpp"

#include <getopt.h>

#include <cstdlib>
#include <string_view>

#include "common/startup_error.hpp"

namespace vramswap::cli {

const char* usage_text() {
  return "Usage: vramswap [status|probe] [--json] [--config FILE] [--runtime-dir DIR]\n"
         "Shows the VRAM swap devices and the GPUs that could hold them (see vramswap(8)).\n"
         "\n"
         "Commands:\n"
         "  status                 every configured or running device: state, GPU, size,\n"
         "                         swap, I/O and health, or why it does not run (default)\n"
         "  probe                  the GPUs, their free VRAM and the size that size = auto\n"
         "                         would take, and what each configured device would get\n"
         "\n"
         "Options:\n"
         "  -j, --json             print a JSON document instead of text\n"
         "  -c, --config FILE      configuration file (default $VRAMSWAP_CONFIG or\n"
         "                         /etc/vramswap.conf)\n"
         "  -r, --runtime-dir DIR  where the daemons publish their status (default\n"
         "                         $VRAMSWAP_RUNTIME_DIR or /run/vramswap)\n"
         "  -h, --help             show this help\n"
         "  -V, --version          show the version\n"
         "\n"
         "Exit status of status: 0 all serving and healthy, 1 something needs attention,\n"
         "3 not running (and nothing wrong). Of probe: 0, 1 a configured device would not\n"
         "start, 69 no NVIDIA driver or GPU. 64: bad command line.\n";
}

CommandLine parse_command_line(int argc, char** argv, const std::string& default_config) {
  CommandLine result;
  const char* from_environment = std::getenv("VRAMSWAP_CONFIG");
  result.config_path = from_environment && *from_environment ? from_environment : default_config;
  static const option options[] = {{"json", no_argument, nullptr, 'j'},
                                   {"config", required_argument, nullptr, 'c'},
                                   {"runtime-dir", required_argument, nullptr, 'r'},
                                   {"help", no_argument, nullptr, 'h'},
                                   {"version", no_argument, nullptr, 'V'},
                                   {nullptr, 0, nullptr, 0}};
  bool help = false, version = false;
  opterr = 0;
  optind = 1;
  for (;;) {
    const int c = getopt_long(argc, argv, "jc:r:hV", options, nullptr);
    if (c == -1) break;
    switch (c) {
      case 'j':
        result.json = true;
        break;
      case 'c':
        result.config_path = optarg;
        break;
      case 'r':
        result.runtime_dir = optarg;
        break;
      case 'h':
        help = true;
        break;
      case 'V':
        version = true;
        break;
      default: {
        const std::string bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        const bool needs_value = c == ':' || (c == '?' && (optopt == 'c' || optopt == 'r'));
        throw StartupError(exit_code::usage, (needs_value ? "option " + bad + " needs a value"
                                                          : "unknown option " + bad) +
                                                 "; see vramswap --help");
      }
    }
  }
  if (optind < argc) {
    const std::string_view word = argv[optind];
    if (word == "status") {
      result.command = Command::status;
    } else if (word == "probe") {
      result.command = Command::probe;
    } else if (word == "help") {
      help = true;
    } else {
      throw StartupError(exit_code::usage, "unknown command \"" + std::string(word) +
                                               "\"; the commands are status and probe (see "
                                               "vramswap --help)");
    }
    if (optind + 1 < argc) {
      throw StartupError(exit_code::usage, std::string("unexpected argument \"") +
                                               argv[optind + 1] + "\"; see vramswap --help");
    }
  }
  if (help)
    result.command = Command::help;
  else if (version)
    result.command = Command::version;
  if (result.config_path.empty()) {
    throw StartupError(exit_code::usage,
                       "the configuration file name is empty; see vramswap --help");
  }
  return result;
}

}  // namespace vramswap::cli
