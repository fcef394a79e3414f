#include "cli/command_line.hpp"

#include <getopt.h>

#include <cstdlib>
#include <string_view>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"

namespace vramswap::cli {

const char* usage_text() {
  return "Usage: vramswap [status|probe] [--json] [--config FILE] [--runtime-dir DIR]\n"
         "       vramswap release NAME [SIZE|all] | restore NAME [--runtime-dir DIR]\n"
         "       vramswap hibernate prepare|resume [--config FILE] [--runtime-dir DIR]\n"
         "Shows the VRAM swap devices and the GPUs that could hold them, and moves a\n"
         "device's VRAM to its spill area and back (see vramswap(8)).\n"
         "\n"
         "Commands:\n"
         "  status                 every configured or running device: state, GPU, size,\n"
         "                         swap, I/O and health, or why it does not run (default)\n"
         "  probe                  the GPUs, their free VRAM and the size that size = auto\n"
         "                         would take, and what each configured device would get\n"
         "  release NAME [SIZE|all]\n"
         "                         (root) move SIZE (2G, 512M; default all) of NAME's\n"
         "                         VRAM to its spill area and give it back to the GPU\n"
         "  restore NAME           (root) bring NAME's spilled blocks back to VRAM\n"
         "  hibernate prepare|resume\n"
         "                         (root; run by vramswap-hibernate.service and\n"
         "                         vramswap-hibernate-resume.service) swap off every VRAM\n"
         "                         swap device before a hibernation, or refuse it; swap\n"
         "                         them on again after\n"
         "\n"
         "Options:\n"
         "  -j, --json             print a JSON document instead of text\n"
         "  -c, --config FILE      configuration file (default $VRAMSWAP_CONFIG or\n"
         "                         /etc/vramswap.conf)\n"
         "  -r, --runtime-dir DIR  where the daemons publish their status and control\n"
         "                         sockets (default $VRAMSWAP_RUNTIME_DIR or\n"
         "                         /run/vramswap)\n"
         "  -h, --help             show this help\n"
         "  -V, --version          show the version\n"
         "\n"
         "Exit status of status: 0 all serving and healthy, 1 something needs attention,\n"
         "3 not running (and nothing wrong). Of probe: 0, 1 a configured device would not\n"
         "start, 69 no NVIDIA driver or GPU. Of release and restore: 0 done, 1 the daemon\n"
         "refused or failed (its line says why) or did not answer, 3 not running, 77 not\n"
         "root. Of hibernate: 0 done, 1 refused or failed (its line says why), 77 not\n"
         "root. 64: bad command line.\n";
}

namespace {

// release NAME [SIZE|all], restore NAME: fills `result`, returns how many of
// the `count` words after the command it took.
int parse_control_arguments(int count, char** words, CommandLine& result) {
  const bool release = result.command == Command::release;
  const char* command = release ? "release" : "restore";
  if (count < 1 || !*words[0]) {
    throw StartupError(exit_code::usage, std::string(command) +
                                             " needs the instance's name (vramswap " + command +
                                             (release ? " NAME [SIZE|all]" : " NAME") + ")");
  }
  result.instance = words[0];
  if (!release) {
    result.request = {status::ControlRequest::Verb::restore};
    return 1;
  }
  result.request = {status::ControlRequest::Verb::release};
  if (count < 2 || std::string_view(words[1]) == "all") return count < 2 ? 1 : 2;
  const std::optional<uint64_t> bytes = parse_byte_size(words[1]);
  if (!bytes || *bytes == 0 || *bytes == status::ControlRequest::all_bytes) {
    throw StartupError(exit_code::usage, std::string("\"") + words[1] +
                                             "\" is not a size to release; write it like 2G or "
                                             "512M, or all");
  }
  result.request.bytes = *bytes;
  return 2;
}

}  // namespace

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
  // 0, not 1: glibc then forgets everything of an earlier parse (the
  // permutation of non-options included), which the unit tests, parsing
  // many command lines in one process, depend on.
  optind = 0;
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
    int arguments = 0;  // the command's own, after its word
    if (word == "status") {
      result.command = Command::status;
    } else if (word == "probe") {
      result.command = Command::probe;
    } else if (word == "release" || word == "restore") {
      result.command = word == "release" ? Command::release : Command::restore;
      arguments = parse_control_arguments(argc - optind - 1, argv + optind + 1, result);
    } else if (word == "hibernate") {
      result.command = Command::hibernate;
      const std::string_view step = optind + 1 < argc ? argv[optind + 1] : "";
      if (step != "prepare" && step != "resume") {
        throw StartupError(exit_code::usage,
                           "hibernate needs prepare or resume (vramswap hibernate "
                           "prepare|resume); the vramswap-hibernate units run them");
      }
      result.hibernate_step = step == "prepare" ? HibernateStep::prepare : HibernateStep::resume;
      arguments = 1;
    } else if (word == "help") {
      help = true;
    } else {
      throw StartupError(
          exit_code::usage,
          "unknown command \"" + std::string(word) +
              "\"; the commands are status, probe, release, restore and hibernate (see "
              "vramswap --help)");
    }
    if (optind + 1 + arguments < argc) {
      throw StartupError(exit_code::usage, std::string("unexpected argument \"") +
                                               argv[optind + 1 + arguments] +
                                               "\"; see vramswap --help");
    }
  }
  if (help)
    result.command = Command::help;
  else if (version)
    result.command = Command::version;
  if (result.json && (result.command == Command::release || result.command == Command::restore ||
                      result.command == Command::hibernate)) {
    throw StartupError(exit_code::usage,
                       "--json is for status and probe; release, restore and hibernate print "
                       "lines");
  }
  if (result.config_path.empty()) {
    throw StartupError(exit_code::usage,
                       "the configuration file name is empty; see vramswap --help");
  }
  return result;
}

}  // namespace vramswap::cli
